// AVX2 path: byte-table popcount on 256-bit vectors (4 output channels per vector).
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2")
#include <immintrin.h>

namespace avx2_impl {

struct V {
  using T = __m256i;
  static constexpr int lanes = 4;
  static inline T zero() { return _mm256_setzero_si256(); }
  static inline T load(const uint64_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
  static inline T broadcast(uint64_t a) { return _mm256_set1_epi64x((long long)a); }
  static inline T bxor(T a, T b) { return _mm256_xor_si256(a, b); }
  static inline T band(T a, T b) { return _mm256_and_si256(a, b); }
  static inline T add8(T a, T b) { return _mm256_add_epi8(a, b); }
  static inline T nibble_table() {
    return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  }
  static inline T low_nibble_mask() { return _mm256_set1_epi8(0x0f); }
  static inline T popcount_bytes(T v, T lut, T low4) {
    const T lo = _mm256_and_si256(v, low4);
    const T hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
  }
  // C[0..L) += or -= (the 8 byte counts of each 64-bit lane, summed) << shift.
  static inline void accumulate(int64_t* c, T acc, int shift, bool negative) {
    const T sums = _mm256_sll_epi64(_mm256_sad_epu8(acc, _mm256_setzero_si256()),
                                    _mm_cvtsi32_si128(shift));
    const T old = _mm256_loadu_si256((const __m256i*)c);
    _mm256_storeu_si256((__m256i*)c, negative ? _mm256_sub_epi64(old, sums)
                                              : _mm256_add_epi64(old, sums));
  }
};

#define HWQ_LUT_NS avx2_impl
}  // namespace avx2_impl
#include "micro_lut.h"
#undef HWQ_LUT_NS

namespace avx2_impl {
// x < 0 as in the generic packer: an ordered compare, so -0.0 and NaN give bit 0 (+1).
static void pack_sign_f32(const float* src, int64_t pixels, int64_t pixel_stride, int64_t nc,
                          uint64_t* dst, int64_t dst_stride) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t p = 0; p < pixels; ++p) {
    const float* s = src + p * pixel_stride;
    uint64_t word = 0;
    int64_t c = 0;
    for (; c + 8 <= nc; c += 8)
      word |= static_cast<uint64_t>(static_cast<unsigned>(_mm256_movemask_ps(
                  _mm256_cmp_ps(_mm256_loadu_ps(s + c), zero, _CMP_LT_OQ)))) << c;
    for (; c < nc; ++c) word |= static_cast<uint64_t>(s[c] < 0.0f) << c;
    dst[p * dst_stride] = word;
  }
}
// 6 independent (xor, byte-table popcount, byte add) chains per iteration, as micro_lut.h does
// per vector, on register operands; byte counts folded every 31 iterations (vpsadbw).
static int64_t peak(int64_t iters) {
  const __m256i lut = V::nibble_table(), low4 = V::low_nibble_mask(), zero = V::zero();
  const __m256i k0 = V::broadcast(0x9E3779B97F4A7C15ull), k1 = V::broadcast(0x3C6EF372FE94F82Aull),
                k2 = V::broadcast(0xDAA66D2C7DDF743Full);
  __m256i b0 = V::broadcast(0x0123456789abcdefull), b1 = V::broadcast(0x7edcba9876543210ull);
  __m256i acc[6], total = zero;
  for (int64_t it = 0; it < iters;) {
    for (int i = 0; i < 6; ++i) acc[i] = zero;
    const int64_t end = iters - it > 31 ? it + 31 : iters;
    for (; it < end; ++it) {
      __asm__ volatile("" : "+x"(b0), "+x"(b1));
      acc[0] = V::add8(acc[0], V::popcount_bytes(V::bxor(b0, k0), lut, low4));
      acc[1] = V::add8(acc[1], V::popcount_bytes(V::bxor(b0, k1), lut, low4));
      acc[2] = V::add8(acc[2], V::popcount_bytes(V::bxor(b0, k2), lut, low4));
      acc[3] = V::add8(acc[3], V::popcount_bytes(V::bxor(b1, k0), lut, low4));
      acc[4] = V::add8(acc[4], V::popcount_bytes(V::bxor(b1, k1), lut, low4));
      acc[5] = V::add8(acc[5], V::popcount_bytes(V::bxor(b1, k2), lut, low4));
    }
    for (int i = 0; i < 6; ++i) total = _mm256_add_epi64(total, _mm256_sad_epu8(acc[i], zero));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256((__m256i*)lanes, total);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
}  // namespace avx2_impl

#define HWQ_EPI_NS avx2_impl
#include "epilogue.h"
#undef HWQ_EPI_NS

#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  // 2 rows x 1 panel (2 vectors): 4 accumulators, 2 weight vectors, 2 constants and temporaries
  // fit the 16 registers; larger tiles spill accumulators inside the loop.
  static const KernelTable t = {"avx2", 2, 1, avx2_impl::micro<true, 2, 2>,
                                avx2_impl::micro<false, 2, 2>,
                                avx2_impl::epilogue_int, avx2_impl::epilogue_float, avx2_impl::epilogue_sign,
                                avx2_impl::pack_sign_f32, avx2_impl::peak, 6 * 256};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

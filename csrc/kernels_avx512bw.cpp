// AVX-512BW path (AVX-512 CPUs without VPOPCNTDQ, e.g. Skylake-SP / Cascade Lake): byte-table
// popcount on 512-bit vectors, one vector = one panel of 8 output channels.
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl")
#include <immintrin.h>

namespace avx512bw_impl {

struct V {
  using T = __m512i;
  static constexpr int lanes = 8;
  static inline T zero() { return _mm512_setzero_si512(); }
  static inline T load(const uint64_t* p) { return _mm512_loadu_si512((const void*)p); }
  static inline T broadcast(uint64_t a) { return _mm512_set1_epi64((long long)a); }
  static inline T bxor(T a, T b) { return _mm512_xor_si512(a, b); }
  static inline T band(T a, T b) { return _mm512_and_si512(a, b); }
  static inline T add8(T a, T b) { return _mm512_add_epi8(a, b); }
  static inline T nibble_table() {
    // vpshufb looks up within each 128-bit lane, so the 16-entry table is repeated 4 times.
    alignas(64) static const uint8_t table[64] = {
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};
    return _mm512_load_si512((const void*)table);
  }
  static inline T low_nibble_mask() { return _mm512_set1_epi8(0x0f); }
  static inline T popcount_bytes(T v, T lut, T low4) {
    const T lo = _mm512_and_si512(v, low4);
    const T hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo), _mm512_shuffle_epi8(lut, hi));
  }
  // C[0..L) += or -= (the 8 byte counts of each 64-bit lane, summed) << shift.
  static inline void accumulate(int64_t* c, T acc, int shift, bool negative) {
    const T sums = _mm512_sll_epi64(_mm512_sad_epu8(acc, _mm512_setzero_si512()),
                                    _mm_cvtsi32_si128(shift));
    const T old = _mm512_loadu_si512((const void*)c);
    _mm512_storeu_si512((void*)c, negative ? _mm512_sub_epi64(old, sums)
                                           : _mm512_add_epi64(old, sums));
  }
};

#define HWQ_LUT_NS avx512bw_impl
}  // namespace avx512bw_impl
#include "micro_lut.h"
#undef HWQ_LUT_NS

namespace avx512bw_impl {
// x < 0 as in the generic packer: an ordered compare, so -0.0 and NaN give bit 0 (+1).
static void pack_sign_f32(const float* src, int64_t pixels, int64_t pixel_stride, int64_t nc,
                          uint64_t* dst, int64_t dst_stride) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = 0; p < pixels; ++p) {
    const float* s = src + p * pixel_stride;
    uint64_t word = 0;
    int64_t c = 0;
    for (; c + 16 <= nc; c += 16)
      word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(s + c), zero, _CMP_LT_OQ)) << c;
    if (c < nc) {
      const __mmask16 m = static_cast<__mmask16>((1u << (nc - c)) - 1);
      word |= static_cast<uint64_t>(
                  _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, s + c), zero, _CMP_LT_OQ)) << c;
    }
    dst[p * dst_stride] = word;
  }
}
}  // namespace avx512bw_impl

#define HWQ_EPI_NS avx512bw_impl
#include "epilogue.h"
#undef HWQ_EPI_NS

#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_avx512bw() {
#if defined(__x86_64__) && defined(__GNUC__)
  // 4 rows x 2 panels: 8 byte accumulators + 2 weight vectors + 2 constants + temporaries; 4 x 4
  // spills accumulators to the stack inside the loop (checked in the assembly).
  static const KernelTable t = {"avx512bw", 4, 2, avx512bw_impl::micro<true, 4, 2>,
                                avx512bw_impl::micro<false, 4, 2>,
                                avx512bw_impl::epilogue_int, avx512bw_impl::epilogue_float, avx512bw_impl::epilogue_sign,
                                avx512bw_impl::pack_sign_f32};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

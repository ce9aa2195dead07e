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
  static inline void add_byte_sums(int64_t* s, T acc) {
    const T sums = _mm256_sad_epu8(acc, _mm256_setzero_si256());
    _mm256_store_si256((__m256i*)s, _mm256_add_epi64(_mm256_load_si256((const __m256i*)s), sums));
  }
};

#define HWQ_LUT_NS avx2_impl
}  // namespace avx2_impl
#include "micro_lut.h"
#undef HWQ_LUT_NS

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
                                avx2_impl::epilogue_int, avx2_impl::epilogue_float, avx2_impl::epilogue_sign};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

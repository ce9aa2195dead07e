// AVX-512 VPOPCNTDQ path (Ice Lake and later, Zen 4): xor/and + vpopcntq + add per 512 bits, the
// fastest binary arithmetic on these CPUs (336 binary MAC/cycle/core measured on a Zen 4 EPYC by
// scripts/bench_kernels.py's register-resident popcount_peak; docs/kernels.md).
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq")
#include <immintrin.h>

namespace vpopcnt_impl {

// MR rows x NV panels; each panel is one 512-bit vector of 8 output channels (64-bit lanes).
template <bool XOR, int MR, int NV>
static void micro(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                  int64_t* C, int64_t ldc, int64_t coef) {
  __m512i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; ++k) {
    __m512i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512((const void*)(B + v * ldb + k * 8));
    for (int r = 0; r < MR; ++r) {
      const __m512i a = _mm512_set1_epi64((long long)A[r * lda + k]);
      for (int v = 0; v < NV; ++v) {
        const __m512i t = XOR ? _mm512_xor_si512(a, b[v]) : _mm512_and_si512(a, b[v]);
        acc[r][v] = _mm512_add_epi64(acc[r][v], _mm512_popcnt_epi64(t));
      }
    }
  }
  // coef is 1 (binary) or +/-2^(i+j) (bit-serial): one vector multiply-add per accumulator.
  const __m512i cv = _mm512_set1_epi64((long long)coef);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      int64_t* c = C + r * ldc + v * 8;
      const __m512i add = coef == 1 ? acc[r][v] : _mm512_mullo_epi64(acc[r][v], cv);
      _mm512_storeu_si512((void*)c, _mm512_add_epi64(_mm512_loadu_si512((const void*)c), add));
    }
}

// 16 independent (vpxorq, vpopcntq, vpaddq) chains per iteration on 2 x 8 register operands; the
// empty asm makes the compiler treat b0, b1 as changed each iteration, so nothing is hoisted.
static int64_t peak(int64_t iters) {
  __m512i acc[16], k[8];
  for (int i = 0; i < 8; ++i) k[i] = _mm512_set1_epi64((long long)(0x9E3779B97F4A7C15ull * (i + 1)));
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_si512();
  __m512i b0 = _mm512_set1_epi64(0x0123456789abcdefll), b1 = _mm512_set1_epi64(0x7edcba9876543210ll);
  for (int64_t it = 0; it < iters; ++it) {
    __asm__ volatile("" : "+v"(b0), "+v"(b1));
    for (int i = 0; i < 8; ++i) {
      acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(b0, k[i])));
      acc[8 + i] = _mm512_add_epi64(acc[8 + i], _mm512_popcnt_epi64(_mm512_xor_si512(b1, k[i])));
    }
  }
  __m512i s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_epi64(s, acc[i]);
  return _mm512_reduce_add_epi64(s);
}

}  // namespace vpopcnt_impl


#define HWQ_EPI_NS vpopcnt_impl
#define HWQ_EPI_STREAM512
#include "epilogue.h"
#include "pack_sign_avx512.h"
#undef HWQ_EPI_STREAM512
#undef HWQ_EPI_NS

#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_avx512_vpopcntdq() {
#if defined(__x86_64__) && defined(__GNUC__)
  // 6 rows x 4 panels: 24 accumulators + 4 weight vectors + 1 broadcast of 32 registers.
  static const KernelTable t = {"avx512_vpopcntdq", 6, 4, vpopcnt_impl::micro<true, 6, 4>,
                                vpopcnt_impl::micro<false, 6, 4>,
                                vpopcnt_impl::epilogue_int, vpopcnt_impl::epilogue_float, vpopcnt_impl::epilogue_sign,
                                vpopcnt_impl::pack_sign_f32, vpopcnt_impl::peak, 16 * 512};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

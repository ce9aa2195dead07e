// AVX-512 VPOPCNTDQ path (Ice Lake and later, Zen 4): xor/and + vpopcntq + add per 512 bits, the
// fastest binary arithmetic on these CPUs (336 binary MAC/cycle/core measured on a Zen 4 EPYC by
// scripts/bench_kernels.py's register-resident popcount_peak; docs/kernels.md).
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq")
#include <immintrin.h>

#define HWQ_EPI_NS vpopcnt_impl
#include "fused_store_avx512.h"
#undef HWQ_EPI_NS

namespace vpopcnt_impl {

// The main loop of both micro-kernels: acc[r][v] = sum over k < K of popcount(word(r, k) OP B_v[k]),
// where `rows.at(k)` gives word k of each row (one address computation per k; see the two
// row addressings below). Always inlined, so each kernel's register allocation is its own (GCC
// keeps the 24 accumulators, 4 weight vectors and the broadcast in the 32 vector registers).
// Word 0 is peeled: it sets the accumulators instead of adding to zeros, which saves the 24
// zeroings (GCC copies one zero register 24 times, each a vector move) and the 24 adds of the
// first word: about 14 of about 400 cycles per 6 x 32 tile at K = 9 (csrc/bench/micro_bench.cpp).
template <bool XOR, bool FIRST, int MR, int NV, typename Rows>
static inline __attribute__((always_inline)) void accumulate_word(__m512i (&acc)[MR][NV],
                                                                  const Rows& rows,
                                                                  const uint64_t* B, int64_t ldb,
                                                                  int64_t k) {
  __m512i b[NV];
  for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512((const void*)(B + v * ldb + k * 8));
  const typename Rows::At word = rows.at(k);
  for (int r = 0; r < MR; ++r) {
    const __m512i a = _mm512_set1_epi64((long long)word(r));
    for (int v = 0; v < NV; ++v) {
      const __m512i t = XOR ? _mm512_xor_si512(a, b[v]) : _mm512_and_si512(a, b[v]);
      const __m512i c = _mm512_popcnt_epi64(t);
      acc[r][v] = FIRST ? c : _mm512_add_epi64(acc[r][v], c);
    }
  }
}

template <bool XOR, int MR, int NV, typename Rows>
static inline __attribute__((always_inline)) void accumulate(__m512i (&acc)[MR][NV],
                                                             const Rows& rows, const uint64_t* B,
                                                             int64_t ldb, int64_t K) {
  if (K <= 0) {  // in_channels = 0: no words
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
    return;
  }
  accumulate_word<XOR, true>(acc, rows, B, ldb, 0);
  for (int64_t k = 1; k < K; ++k) accumulate_word<XOR, false>(acc, rows, B, ldb, k);
}

// Word k of row r at A[r * lda + k] (an im2col block).
struct RowsStrided {
  const uint64_t* A;
  int64_t lda;
  struct At {
    const uint64_t* p;
    int64_t lda;
    uint64_t operator()(int r) const { return p[r * lda]; }
  };
  At at(int64_t k) const { return {A + k, lda}; }
};

// Word k of row r at row[r][koff[k]] (windows read in place, isa.h MicroFloatFn).
struct RowsIndirect {
  const uint64_t* const* row;
  const int64_t* koff;
  struct At {
    const uint64_t* const* row;
    int64_t o;
    uint64_t operator()(int r) const { return row[r][o]; }
  };
  At at(int64_t k) const { return {row, koff[k]}; }
};

// MR rows x NV panels; each panel is one 512-bit vector of 8 output channels (64-bit lanes).
template <bool XOR, int MR, int NV>
static void micro(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                  int64_t* C, int64_t ldc, int64_t coef) {
  __m512i acc[MR][NV];
  accumulate<XOR, MR, NV>(acc, RowsStrided{A, lda}, B, ldb, K);
  // coef is 1 (binary) or +/-2^(i+j) (bit-serial): one vector multiply-add per accumulator.
  const __m512i cv = _mm512_set1_epi64((long long)coef);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      int64_t* c = C + r * ldc + v * 8;
      const __m512i add = coef == 1 ? acc[r][v] : _mm512_mullo_epi64(acc[r][v], cv);
      _mm512_storeu_si512((void*)c, _mm512_add_epi64(_mm512_loadu_si512((const void*)c), add));
    }
}

// micro<true, kFusedRows, 4> with the float epilogue fused (isa.h, FusedFloat): the 4 x
// kFusedRows accumulators go from registers to float outputs (fused_store_avx512.h), with no C
// block to zero, add into, write back and read again; non-temporal stores where the row is whole
// and 64-byte aligned, masked where the tile is cut by the last channel.
//
// The activation words are addressed without im2col (isa.h, MicroFloatFn): word k of tile row r is
// A[r][koff[k]], so the driver points each row at its window's corner in the (zero-padded) packed
// input and koff holds the taps' offsets. Per word that is one scalar load of koff[k] and the six
// broadcasts from six row pointers held in general registers; the loop is bound by the 24 vector
// popcounts (about 36 cycles per word), so the extra load costs no measurable time
// (csrc/bench/micro_bench.cpp; docs/kernels.md, "Windows read in place").
// 6 rows x 4 panels: 24 accumulators + 4 weight vectors + 1 broadcast of 32 registers.
constexpr int kFusedRows = 6, kFusedPanels = 4;

template <bool ADD, bool RELU, bool SIGN>
static inline __attribute__((always_inline)) void micro_float_impl(
    const uint64_t* const* A, const int64_t* koff, const uint64_t* B, int64_t ldb, int64_t K,
    const hwq::FusedFloat& f) {
  constexpr int MR = kFusedRows, NV = kFusedPanels;
  const uint32_t colmask = f.cols >= 32 ? 0xffffffffu : (uint32_t{1} << f.cols) - 1;
  // The accumulators start from the first word's counts (no loads: the padding correction is in
  // the offsets, read in the epilogue; starting them at minus it made GCC build them in memory and
  // load them back, a sixth of a call at K = 9).
  __m512i acc[MR][NV];
  // The row pointers as separate scalars, each pinned to a general register by the empty asm:
  // copied as an array, GCC moved them through the stack in vector registers, a store-forwarding
  // stall ahead of the first broadcast.
  const uint64_t* a_row[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    a_row[r] = A[r];
    __asm__("" : "+r"(a_row[r]));
  }
  accumulate<true, MR, NV>(acc, RowsIndirect{a_row, koff}, B, ldb, K);
  // The fields the epilogue needs, read once into registers: its vector stores may alias any
  // memory, so GCC would otherwise load them again after every row.
  const int32_t* off_row[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) off_row[r] = f.offset[r] + f.col;
  float* const out = f.out;
  uint32_t* const signs = f.signs;
  const float* const residual = f.residual;
  const int64_t ldo = f.ldo, n_rows = f.rows;
  const __mmask16 m0 = static_cast<__mmask16>(colmask), m1 = static_cast<__mmask16>(colmask >> 16);
  const bool whole = f.cols >= 32;
  const __m512 scale_h[2] = {_mm512_maskz_loadu_ps(m0, f.scale), _mm512_maskz_loadu_ps(m1, f.scale + 16)};
  const __m512 bias_h[2] = {_mm512_maskz_loadu_ps(m0, f.bias), _mm512_maskz_loadu_ps(m1, f.bias + 16)};
  // Fully unrolled, and no branch on the row count (rows past f.rows get empty masks: a masked
  // load or store with an empty mask touches no memory): a rolled row loop, or an early exit,
  // made GCC keep the accumulators in memory (stored after the products, loaded back per row),
  // a third of a call at K = 9.
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    const bool row = r < n_rows;
    if (SIGN) {  // one 32-bit half of the row's packed output word (isa.h)
      const uint32_t bits =
          fused_sign16(acc[r][0], acc[r][1], off_row[r], scale_h[0], bias_h[0], m0) |
          (uint32_t{fused_sign16(acc[r][2], acc[r][3], off_row[r] + 16, scale_h[1], bias_h[1], m1)}
           << 16);
      if (row) signs[r * ldo] = bits;
      continue;
    }
    float* o = out + r * ldo;
    const float* res = ADD ? residual + r * ldo : nullptr;
    const bool stream = row && whole && (reinterpret_cast<uintptr_t>(o) & 63) == 0;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
      fused_store16<ADD, RELU>(acc[r][2 * h], acc[r][2 * h + 1], off_row[r] + 16 * h, scale_h[h],
                               bias_h[h], ADD ? res + 16 * h : nullptr, o + 16 * h,
                               row ? (h == 0 ? m0 : m1) : 0, stream);
  }
}

}  // namespace vpopcnt_impl

#define HWQ_EPI_NS vpopcnt_impl
#include "fused_rows.h"
#undef HWQ_EPI_NS

namespace vpopcnt_impl {

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
                                vpopcnt_impl::pack_sign_f32, vpopcnt_impl::peak, 16 * 512,
                                vpopcnt_impl::micro_float, vpopcnt_impl::kFusedRows,
                                vpopcnt_impl::kFusedPanels};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

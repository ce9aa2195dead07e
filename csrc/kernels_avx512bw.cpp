// AVX-512BW path (AVX-512 CPUs without VPOPCNTDQ, e.g. Skylake-SP / Cascade Lake): Harley-Seal
// carry-save popcount (vpternlogq) with a byte-table popcount (vpshufb) once per 8 vectors, on
// 512-bit vectors, one vector = one panel of 8 output channels.
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl")
#include <immintrin.h>

#define HWQ_EPI_NS avx512bw_impl
#include "fused_store_avx512.h"
#undef HWQ_EPI_NS

namespace avx512bw_impl {

// popcount of each byte = table[low nibble] + table[high nibble]; vpshufb looks up within each
// 128-bit lane, so the 16-entry table is repeated 4 times.
alignas(64) static const uint8_t kNibblePopcount[64] = {
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

static inline __m512i popcount_bytes(__m512i v, __m512i lut, __m512i low4) {
  const __m512i lo = _mm512_and_si512(v, low4);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo), _mm512_shuffle_epi8(lut, hi));
}

// Carry-save adder of three bit vectors: per bit position, a + b + c = sum + 2 * carry.
// vpternlogq immediates are the truth tables of f(a, b, c) over the bit index 4a + 2b + c:
// 0x96 = a ^ b ^ c, 0xE8 = majority(a, b, c).
static inline void csa(__m512i& carry, __m512i& sum, __m512i a, __m512i b, __m512i c) {
  carry = _mm512_ternarylogic_epi64(a, b, c, 0xE8);
  sum = _mm512_ternarylogic_epi64(a, b, c, 0x96);
}

// C[0..8) += or -= total << shift (the 64-bit lanes are the 8 output channels of a panel).
static inline void add_to_c(int64_t* c, __m512i total, int shift, bool negative) {
  const __m512i t = _mm512_sll_epi64(total, _mm_cvtsi32_si128(shift));
  const __m512i old = _mm512_loadu_si512((const void*)c);
  _mm512_storeu_si512((void*)c, negative ? _mm512_sub_epi64(old, t) : _mm512_add_epi64(old, t));
}

// XOR / AND of the broadcast activation word *a with the 8 weight words at b. The _epi64 forms
// (not _si512) let GCC fold the broadcast into the instruction (vpxorq (a){1to8}): one fused
// operation instead of a separate vpbroadcastq.
static inline __m512i op_words(bool x, const uint64_t* a, const uint64_t* b) {
  const __m512i ai = _mm512_set1_epi64((long long)*a);
  const __m512i bi = _mm512_loadu_si512((const void*)b);
  return x ? _mm512_xor_epi64(bi, ai) : _mm512_and_epi64(bi, ai);
}

// The byte-table kernel (micro_lut.h) on 512-bit vectors, one vector = one panel.
struct V {
  using T = __m512i;
  static constexpr int lanes = 8;
  static inline T zero() { return _mm512_setzero_si512(); }
  static inline T load(const uint64_t* p) { return _mm512_loadu_si512((const void*)p); }
  static inline T broadcast(uint64_t a) { return _mm512_set1_epi64((long long)a); }
  static inline T bxor(T a, T b) { return _mm512_xor_si512(a, b); }
  static inline T band(T a, T b) { return _mm512_and_si512(a, b); }
  static inline T add8(T a, T b) { return _mm512_add_epi8(a, b); }
  static inline T nibble_table() { return _mm512_load_si512((const void*)kNibblePopcount); }
  static inline T low_nibble_mask() { return _mm512_set1_epi8(0x0f); }
  static inline T popcount_bytes(T v, T lut, T low4) {
    return avx512bw_impl::popcount_bytes(v, lut, low4);
  }
  static inline void assign(int64_t* c, T acc) {
    _mm512_storeu_si512((void*)c, _mm512_sad_epu8(acc, _mm512_setzero_si512()));
  }
  static inline void accumulate(int64_t* c, T acc, int shift, bool negative) {
    add_to_c(c, _mm512_sad_epu8(acc, _mm512_setzero_si512()), shift, negative);
  }
};

#define HWQ_LUT_NS avx512bw_impl
}  // namespace avx512bw_impl
#include "micro_lut.h"
#undef HWQ_LUT_NS

namespace avx512bw_impl {

// The byte table per word (micro_lut.h) below this many words: a carry-save block plus the final
// popcounts of ones/twos/fours cost about 56 operations per tile element against 8 per word for
// the table, and timed alone the table was faster at K = 8 (and slower from K = 9). Byte counts
// stay below 8 * K <= 255.
constexpr int64_t kMinHarleySeal = 9;

// Harley-Seal tile: the MicroFn contract (isa.h) for MR rows x NV panels of 8 output channels,
// with coef given as its shift and sign.
//
// Why: the byte-table popcount costs 6 port-0/5 operations per 512-bit vector (and, shift, and,
// 2 vpshufb, add) plus the XOR/AND and the byte add, about 8 per vector, and 512-bit operations
// issue on ports 0 and 5 only on these CPUs. Harley-Seal counts 8 vectors with a tree of 7
// carry-save adders (2 vpternlogq each) and one table popcount of the "eights" vector: per word
// 1 XOR/AND + 14/8 ternlog + 7/8 popcount-and-add, about 3.6 operations instead of 8.
//
// State per tile element (r, v): ones, twos, fours (bit vectors, carried across the whole K) and
// e8, the byte counts of the eights vectors. e8 grows by at most 8 per block of 8 words, so it is
// summed into 64-bit lanes (vpsadbw) every kBlocksPerFlush = 31 blocks (31 * 8 = 248 <= 255).
// The K % 8 words past the last block seed ones/twos/fours with a partial tree (their sum, at
// most 7, needs no eights), so no word is counted with the table alone. At the end:
// total = 8 * sum(e8) + sum(4 * popc(fours) + 2 * popc(twos) + popc(ones)), the second sum in
// bytes (at most 32 + 16 + 8 = 56 per byte).
//
// The rows are given by a row addressing (micro_lut.h: an im2col block or the windows read in
// place), word k of row r at A.at(r, k), written out at each use as in the AVX2 kernel.
template <bool XOR, int MR, int NV, typename Rows>
static inline __attribute__((always_inline)) void harley_seal(
    const Rows& A, const uint64_t* B, int64_t ldb, int64_t K, int64_t* C, int64_t ldc, int shift,
    bool negative) {
  constexpr int64_t kBlocksPerFlush = 31;
  const __m512i lut = _mm512_load_si512((const void*)kNibblePopcount);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i zero = _mm512_setzero_si512();
  const int64_t k8 = K & ~int64_t{7};  // words counted in blocks of 8
  const int n = static_cast<int>(K - k8);
  __m512i ones[MR][NV], twos[MR][NV], fours[MR][NV], e8[MR][NV];
  #pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const uint64_t* b = B + v * ldb + k8 * 8;
      ones[r][v] = twos[r][v] = fours[r][v] = e8[r][v] = zero;
      if (n == 1) {
        ones[r][v] = op_words(XOR, A.at(r, k8), b);
      } else if (n > 1) {  // t0 + t1 + t2 (+ t3 + t4 (+ t5 + t6)), missing words are zero
        const __m512i t2 = n > 2 ? op_words(XOR, A.at(r, k8 + 2), b + 16) : zero;
        csa(twos[r][v], ones[r][v], op_words(XOR, A.at(r, k8), b),
            op_words(XOR, A.at(r, k8 + 1), b + 8), t2);
        if (n > 3) {
          __m512i twos_b;
          const __m512i t4 = n > 4 ? op_words(XOR, A.at(r, k8 + 4), b + 32) : zero;
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k8 + 3), b + 24), t4);
          if (n > 5) {
            __m512i twos_c;
            const __m512i t6 = n > 6 ? op_words(XOR, A.at(r, k8 + 6), b + 48) : zero;
            csa(twos_c, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k8 + 5), b + 40), t6);
            csa(fours[r][v], twos[r][v], twos[r][v], twos_b, twos_c);
          } else {
            fours[r][v] = _mm512_and_si512(twos[r][v], twos_b);
            twos[r][v] = _mm512_xor_si512(twos[r][v], twos_b);
          }
        }
      }
    }

  int64_t k = 0;
  while (true) {
    const int64_t kend = k8 - k > 8 * kBlocksPerFlush ? k + 8 * kBlocksPerFlush : k8;
    for (; k < kend; k += 8) {
      #pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        #pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
          const uint64_t* b = B + v * ldb + k * 8;
          __m512i twos_a, twos_b, fours_a, fours_b, eights;
          csa(twos_a, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k), b),
              op_words(XOR, A.at(r, k + 1), b + 8));
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k + 2), b + 16),
              op_words(XOR, A.at(r, k + 3), b + 24));
          csa(fours_a, twos[r][v], twos[r][v], twos_a, twos_b);
          csa(twos_a, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k + 4), b + 32),
              op_words(XOR, A.at(r, k + 5), b + 40));
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k + 6), b + 48),
              op_words(XOR, A.at(r, k + 7), b + 56));
          csa(fours_b, twos[r][v], twos[r][v], twos_a, twos_b);
          csa(eights, fours[r][v], fours[r][v], fours_a, fours_b);
          e8[r][v] = _mm512_add_epi8(e8[r][v], popcount_bytes(eights, lut, low4));
        }
      }
    }
    if (k == k8) break;  // the last flush is merged with the remainder below
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        add_to_c(C + r * ldc + v * 8, _mm512_slli_epi64(_mm512_sad_epu8(e8[r][v], zero), 3),
                 shift, negative);
        e8[r][v] = zero;
      }
  }

  #pragma GCC unroll 16

  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      // 4 * popc(fours) + 2 * popc(twos) + popc(ones) in bytes, doubling with byte adds.
      __m512i rest = popcount_bytes(fours[r][v], lut, low4);
      rest = _mm512_add_epi8(rest, rest);
      rest = _mm512_add_epi8(rest, popcount_bytes(twos[r][v], lut, low4));
      rest = _mm512_add_epi8(rest, rest);
      rest = _mm512_add_epi8(rest, popcount_bytes(ones[r][v], lut, low4));
      const __m512i total = _mm512_add_epi64(_mm512_slli_epi64(_mm512_sad_epu8(e8[r][v], zero), 3),
                                             _mm512_sad_epu8(rest, zero));
      add_to_c(C + r * ldc + v * 8, total, shift, negative);
    }
}

// The MicroFn: ROWS rows (a multiple of 4) as 4-row Harley-Seal tiles in one call. 4 x NV is the
// register-resident tile; the loop over row tiles inside one call halves or quarters the driver's
// calls, which matter at small K (a 1x1 conv over 480 channels has K = 8 words).
template <bool XOR, int ROWS, int NV>
static void micro(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                  int64_t* C, int64_t ldc, int64_t coef) {
  static_assert(ROWS % 4 == 0, "rows in tiles of 4");
  // coef is +/-2^s (1 for binary): counts are shifted and added to or subtracted from C.
  const bool negative = coef < 0;
  const int shift = __builtin_ctzll(static_cast<uint64_t>(negative ? -coef : coef));
  if (K < kMinHarleySeal) {
    for (int r0 = 0; r0 < ROWS; r0 += 4)
      micro_lut<XOR, 4, NV>(A + r0 * lda, lda, B, ldb, K, C + r0 * ldc, ldc, coef);
    return;
  }
  for (int r0 = 0; r0 < ROWS; r0 += 4)
    harley_seal<XOR, 4, NV>(RowsStrided{A + r0 * lda, lda}, B, ldb, K, C + r0 * ldc, ldc, shift,
                            negative);
}

// The float epilogue fused, with the windows read in place (isa.h: MicroFloatFn, FusedFloat), as
// the AVX2 kernel does it: kFusedRows rows x kFusedPanels panels per tile. The Harley-Seal state of
// a 4 x 1 element fills the registers, so the counts of the tile go to a C tile on the stack
// (16 rows x 32 channels x 8 bytes = 4 KB, in L1) and the epilogue reads them back in the same
// call. What this saves against the unfused route (the path of Cascade Lake class CPUs,
// AVX-512BW without VPOPCNTDQ): the im2col copy (K words per row, written and read back), the C
// block's zeroing and border-correction pass outside the kernel, and one epilogue call per block;
// the non-temporal stores cover whole 64-byte lines (16 channels) as before.
constexpr int kFusedRows = 16, kFusedPanels = 4, kFusedCols = 8 * kFusedPanels;

template <bool ADD, bool RELU, bool SIGN>
static inline __attribute__((always_inline)) void micro_float_impl(
    const uint64_t* const* A, const int64_t* koff, const uint64_t* B, int64_t ldb, int64_t K,
    const hwq::FusedFloat& f) {
  alignas(64) int64_t C[kFusedRows * kFusedCols];
  const int panels = static_cast<int>((f.cols + 7) / 8);
  // Whole 4-row tiles: the driver's row arrays are padded to kFusedRows (isa.h, FusedFloat).
  const int rows = static_cast<int>((f.rows + 3) & ~int64_t{3});
  // Below kMinHarleySeal words the byte table counts in one flush (K < 31 words) and writes C;
  // Harley-Seal adds to it.
  const bool table = K < kMinHarleySeal;
  if (!table || K == 0) {
    for (int r = 0; r < rows; ++r)
      for (int p = 0; p < panels; ++p)
        _mm512_store_si512((void*)(C + r * kFusedCols + p * 8), _mm512_setzero_si512());
  }
  const RowsIndirect in_place{A, koff};
  for (int p = 0; p < panels; ++p)
    for (int r0 = 0; r0 < rows; r0 += 4) {
      int64_t* c = C + r0 * kFusedCols + p * 8;
      if (table)
        lut_tile<true, 4, 1, RowsIndirect, true>(in_place.from(r0), B + p * ldb, ldb, K, c,
                                                 kFusedCols, 1);
      else
        harley_seal<true, 4, 1>(in_place.from(r0), B + p * ldb, ldb, K, c, kFusedCols, 0, false);
    }
  // Per row, 16 channels at a time (fused_store_avx512.h); columns past f.cols masked off.
  const uint32_t colmask = f.cols >= 32 ? 0xffffffffu : (uint32_t{1} << f.cols) - 1;
  const __mmask16 mh[2] = {static_cast<__mmask16>(colmask), static_cast<__mmask16>(colmask >> 16)};
  const __m512 scale_h[2] = {_mm512_maskz_loadu_ps(mh[0], f.scale),
                             _mm512_maskz_loadu_ps(mh[1], f.scale + 16)};
  const __m512 bias_h[2] = {_mm512_maskz_loadu_ps(mh[0], f.bias),
                            _mm512_maskz_loadu_ps(mh[1], f.bias + 16)};
  const bool whole = f.cols >= 32;
  for (int64_t r = 0; r < f.rows; ++r) {
    const int64_t* c = C + r * kFusedCols;
    const int32_t* off = f.offset[r] + f.col;
    if (SIGN) {  // one 32-bit half of the row's packed output word (isa.h)
      uint32_t bits = 0;
      for (int h = 0; h < 2 && h * 16 < f.cols; ++h)
        bits |= uint32_t{fused_sign16(_mm512_load_si512((const void*)(c + 16 * h)),
                                      _mm512_load_si512((const void*)(c + 16 * h + 8)),
                                      off + 16 * h, scale_h[h], bias_h[h], mh[h])}
                << (16 * h);
      f.signs[r * f.ldo] = bits;
      continue;
    }
    float* o = f.out + r * f.ldo;
    const float* res = ADD ? f.residual + r * f.ldo : nullptr;
    const bool stream = whole && (reinterpret_cast<uintptr_t>(o) & 63) == 0;
    for (int h = 0; h < 2 && h * 16 < f.cols; ++h)
      fused_store16<ADD, RELU>(_mm512_load_si512((const void*)(c + 16 * h)),
                               _mm512_load_si512((const void*)(c + 16 * h + 8)), off + 16 * h,
                               scale_h[h], bias_h[h], ADD ? res + 16 * h : nullptr, o + 16 * h,
                               mh[h], stream);
  }
}

}  // namespace avx512bw_impl

#define HWQ_EPI_NS avx512bw_impl
#include "fused_rows.h"
#undef HWQ_EPI_NS

namespace avx512bw_impl {

// The Harley-Seal block of harley_seal() on register operands: 2 independent states (ones,
// twos, fours, byte counts), each counting 8 vectors per iteration (xor, 7 carry-save adders, the
// table popcount of the eights), byte counts folded into 64-bit lanes every 31 iterations. The
// empty asm keeps the compiler from hoisting the xors of the unchanged b0, b1.
static int64_t peak(int64_t iters) {
  const __m512i lut = _mm512_load_si512((const void*)kNibblePopcount);
  const __m512i low4 = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512();
  __m512i k[8];
  for (int i = 0; i < 8; ++i) k[i] = _mm512_set1_epi64((long long)(0x9E3779B97F4A7C15ull * (i + 1)));
  __m512i b[2] = {_mm512_set1_epi64(0x0123456789abcdefll), _mm512_set1_epi64(0x7edcba9876543210ll)};
  __m512i ones[2], twos[2], fours[2], e8[2], total = zero;
  for (int s = 0; s < 2; ++s) ones[s] = twos[s] = fours[s] = e8[s] = zero;
  for (int64_t it = 0; it < iters;) {
    const int64_t end = iters - it > 31 ? it + 31 : iters;
    for (; it < end; ++it) {
      __asm__ volatile("" : "+v"(b[0]), "+v"(b[1]));
      for (int s = 0; s < 2; ++s) {
        __m512i twos_a, twos_b, fours_a, fours_b, eights;
        csa(twos_a, ones[s], ones[s], _mm512_xor_si512(b[s], k[0]), _mm512_xor_si512(b[s], k[1]));
        csa(twos_b, ones[s], ones[s], _mm512_xor_si512(b[s], k[2]), _mm512_xor_si512(b[s], k[3]));
        csa(fours_a, twos[s], twos[s], twos_a, twos_b);
        csa(twos_a, ones[s], ones[s], _mm512_xor_si512(b[s], k[4]), _mm512_xor_si512(b[s], k[5]));
        csa(twos_b, ones[s], ones[s], _mm512_xor_si512(b[s], k[6]), _mm512_xor_si512(b[s], k[7]));
        csa(fours_b, twos[s], twos[s], twos_a, twos_b);
        csa(eights, fours[s], fours[s], fours_a, fours_b);
        e8[s] = _mm512_add_epi8(e8[s], popcount_bytes(eights, lut, low4));
      }
    }
    for (int s = 0; s < 2; ++s) {
      total = _mm512_add_epi64(total, _mm512_sad_epu8(e8[s], zero));
      e8[s] = zero;
    }
  }
  for (int s = 0; s < 2; ++s)
    total = _mm512_add_epi64(total, _mm512_add_epi64(_mm512_sad_epu8(ones[s], zero),
                                                     _mm512_sad_epu8(twos[s], zero)));
  return _mm512_reduce_add_epi64(total);
}

}  // namespace avx512bw_impl


#define HWQ_EPI_NS avx512bw_impl
#define HWQ_EPI_STREAM512
#include "epilogue.h"
#include "pack_sign_avx512.h"
#undef HWQ_EPI_STREAM512
#undef HWQ_EPI_NS

#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_avx512bw() {
#if defined(__x86_64__) && defined(__GNUC__)
  // 16 rows x 1 panel per call, as four 4 x 1 register tiles: 16 state vectors (ones, twos,
  // fours, byte counts) + 8 weight vectors + 2 constants + temporaries fill the 32 registers with
  // no stack traffic in the block loop but a few reloads (objdump). Timed alone on 48 x 32 blocks
  // like the driver's (docs/kernels.md), 4 x 1 beats 4 x 2, 2 x 2, 3 x 2 and 1 x 4 from K = 36 up
  // (1 x 4 and 2 x 4 lose when their panels leave L1, 6 x 1 and 8 x 1 tiles spill the state);
  // 16 rows per call rather than 4 or 8 were fastest in the conv (fewer calls at small K: the
  // 1x1 and W2A2 layers), at the price of up to 15 zero rows computed in an image's last block.
  static const KernelTable t = {"avx512bw", 16, 1, avx512bw_impl::micro<true, 16, 1>,
                                avx512bw_impl::micro<false, 16, 1>, avx512bw_impl::epilogue_int,
                                avx512bw_impl::epilogue_float, avx512bw_impl::epilogue_sign,
                                avx512bw_impl::pack_sign_f32, avx512bw_impl::peak, 2 * 8 * 512,
                                avx512bw_impl::micro_float, avx512bw_impl::kFusedRows,
                                avx512bw_impl::kFusedPanels};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

// AVX2 path (any AVX2 CPU without AVX-512): Harley-Seal carry-save popcount on 256-bit vectors
// (4 output channels per vector), with the byte-table popcount (vpshufb) once per 8 vectors; the
// byte table per word for short rows. Mula, Kurz and Lemire, "Faster Population Counts Using AVX2
// Instructions", The Computer Journal 61(1), 2018 (arXiv:1611.07612).
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
  // C[0..L) = the 8 byte counts of each 64-bit lane, summed.
  static inline void assign(int64_t* c, T acc) {
    _mm256_storeu_si256((__m256i*)c, _mm256_sad_epu8(acc, _mm256_setzero_si256()));
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

// Carry-save adder of three bit vectors: per bit position, a + b + c = sum + 2 * carry. Without
// AVX-512's vpternlogq this is 5 operations, as in Mula et al.: u = a ^ b,
// carry = (a & b) | (u & c), sum = u ^ c.
static inline void csa(__m256i& carry, __m256i& sum, __m256i a, __m256i b, __m256i c) {
  const __m256i u = _mm256_xor_si256(a, b);
  carry = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u, c));
  sum = _mm256_xor_si256(u, c);
}

// XOR / AND of the broadcast activation word *a with the 4 weight words at b.
static inline __m256i op_words(bool x, const uint64_t* a, const uint64_t* b) {
  const __m256i ai = _mm256_set1_epi64x((long long)*a);
  const __m256i bi = _mm256_loadu_si256((const __m256i*)b);
  return x ? _mm256_xor_si256(bi, ai) : _mm256_and_si256(bi, ai);
}

// The byte table per word (micro_lut.h) below this many words: a carry-save block plus the final
// popcounts of ones / twos / fours (about 30 operations per tile element) cost more than the
// table saves on short rows. Timed with csrc/bench/micro_bench.cpp on a Zen 4 core (driver blocks
// of 48 x 32, binary MAC per cycle, table -> Harley-Seal): K = 9 105 -> 85, 18 113 -> 106,
// 24 115 -> 109, 27 116 -> 117, 36 114 -> 122, 72 117 -> 127, 144 118 -> 132.
constexpr int64_t kMinHarleySeal = 27;

// Harley-Seal tile of MR rows x NV vectors: the MicroFn contract (isa.h) with coef given as its
// shift and sign, as the avx512bw kernel does it (kernels_avx512bw.cpp has the derivation).
//
// Why: the byte table costs 8 operations per 256-bit word (xor/and, and, shift, and, 2 vpshufb,
// 2 adds), 3 of them on the shuffle/shift ports. Harley-Seal counts 8 words with 7 carry-save
// adders (5 logic operations each here) and one table popcount of the "eights": per word 1
// xor/and + 35/8 logic + 7/8 popcount-and-add, about 6.25 operations, nearly all plain logic,
// which issues on every vector port.
//
// State per tile element: ones, twos, fours (bit vectors carried across the whole K) and e8, the
// byte counts of the eights, summed into 64-bit lanes (vpsadbw) every 31 blocks (31 * 8 = 248
// <= 255). The K % 8 words past the last block seed ones / twos / fours with a partial tree. At
// the end: total = 8 * sum(e8) + sum(4 * popc(fours) + 2 * popc(twos) + popc(ones)).
// AVX2 has 16 vector registers: 2 tile elements (8 state vectors, the table, the nibble mask and
// the temporaries of two interleaved blocks) nearly fit (GCC keeps a few in the stack), 4 would
// spill the whole state. Of the 2-element tiles, 2 rows x 1 vector (one weight load for both
// rows) measured 1-5% faster than 1 row x 2 vectors, and 1 x 1 was slower (two loads per word).
// The rows are given by a row addressing (micro_lut.h: an im2col block or the windows in place),
// word k of row r at A.at(r, k) (written out at each use: through a lambda, GCC kept the state in
// memory and lost 15-20% at K >= 27).
template <bool XOR, int MR, int NV, typename Rows>
static inline __attribute__((always_inline)) void harley_seal(
    const Rows& A, const uint64_t* B, int64_t ldb, int64_t K, int64_t* C,
    int64_t ldc, int shift, bool negative) {
  constexpr int64_t kBlocksPerFlush = 31;
  constexpr int L = V::lanes;
  const __m256i lut = V::nibble_table(), low4 = V::low_nibble_mask(), zero = V::zero();
  const int64_t k8 = K & ~int64_t{7};  // words counted in blocks of 8
  const int n = static_cast<int>(K - k8);
  // Vector v covers lanes (v * L) % 8 .. of panel v * L / 8.
  auto bcol = [&](int v) { return B + (v * L / 8) * ldb + (v * L) % 8; };
  __m256i ones[MR][NV], twos[MR][NV], fours[MR][NV], e8[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      const uint64_t* b = bcol(v) + k8 * 8;
      ones[r][v] = twos[r][v] = fours[r][v] = e8[r][v] = zero;
      if (n == 1) {
        ones[r][v] = op_words(XOR, A.at(r, k8), b);
      } else if (n > 1) {  // t0 + t1 + t2 (+ t3 + t4 (+ t5 + t6)), missing words are zero
        const __m256i t2 = n > 2 ? op_words(XOR, A.at(r, k8 + 2), b + 16) : zero;
        csa(twos[r][v], ones[r][v], op_words(XOR, A.at(r, k8), b),
            op_words(XOR, A.at(r, k8 + 1), b + 8), t2);
        if (n > 3) {
          __m256i twos_b;
          const __m256i t4 = n > 4 ? op_words(XOR, A.at(r, k8 + 4), b + 32) : zero;
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k8 + 3), b + 24), t4);
          if (n > 5) {
            __m256i twos_c;
            const __m256i t6 = n > 6 ? op_words(XOR, A.at(r, k8 + 6), b + 48) : zero;
            csa(twos_c, ones[r][v], ones[r][v], op_words(XOR, A.at(r, k8 + 5), b + 40), t6);
            csa(fours[r][v], twos[r][v], twos[r][v], twos_b, twos_c);
          } else {
            fours[r][v] = _mm256_and_si256(twos[r][v], twos_b);
            twos[r][v] = _mm256_xor_si256(twos[r][v], twos_b);
          }
        }
      }
    }

  int64_t k = 0;
  while (true) {
    const int64_t kend = k8 - k > 8 * kBlocksPerFlush ? k + 8 * kBlocksPerFlush : k8;
    for (; k < kend; k += 8) {
      for (int r = 0; r < MR; ++r) {
        for (int v = 0; v < NV; ++v) {
          const uint64_t* b = bcol(v) + k * 8;
          __m256i twos_a, twos_b, fours_a, fours_b, eights;
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
          e8[r][v] = V::add8(e8[r][v], V::popcount_bytes(eights, lut, low4));
        }
      }
    }
    if (k == k8) break;  // the last flush is merged with the remainder below
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) {
        const __m256i t = _mm256_slli_epi64(_mm256_sad_epu8(e8[r][v], zero), 3);
        int64_t* c = C + r * ldc + v * L;
        const __m256i s = _mm256_sll_epi64(t, _mm_cvtsi32_si128(shift));
        const __m256i old = _mm256_loadu_si256((const __m256i*)c);
        _mm256_storeu_si256((__m256i*)c, negative ? _mm256_sub_epi64(old, s)
                                                  : _mm256_add_epi64(old, s));
        e8[r][v] = zero;
      }
  }

  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      // 4 * popc(fours) + 2 * popc(twos) + popc(ones) in bytes (at most 56), doubling with adds.
      __m256i rest = V::popcount_bytes(fours[r][v], lut, low4);
      rest = V::add8(rest, rest);
      rest = V::add8(rest, V::popcount_bytes(twos[r][v], lut, low4));
      rest = V::add8(rest, rest);
      rest = V::add8(rest, V::popcount_bytes(ones[r][v], lut, low4));
      const __m256i total = _mm256_add_epi64(_mm256_slli_epi64(_mm256_sad_epu8(e8[r][v], zero), 3),
                                             _mm256_sad_epu8(rest, zero));
      int64_t* c = C + r * ldc + v * L;
      const __m256i s = _mm256_sll_epi64(total, _mm_cvtsi32_si128(shift));
      const __m256i old = _mm256_loadu_si256((const __m256i*)c);
      _mm256_storeu_si256((__m256i*)c, negative ? _mm256_sub_epi64(old, s)
                                                : _mm256_add_epi64(old, s));
    }
}

// The MicroFn: ROWS rows x 1 panel in one call (so the driver makes few calls at small K), as
// 2-row x 1-vector Harley-Seal tiles, two per panel; below kMinHarleySeal words, the byte-table
// kernel on 2-row x 1-panel tiles.
template <bool XOR, int ROWS>
static void micro(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                  int64_t* C, int64_t ldc, int64_t coef) {
  static_assert(ROWS % 2 == 0, "rows in tiles of 2");
  if (K < kMinHarleySeal) {
    for (int r0 = 0; r0 < ROWS; r0 += 2)
      micro_lut<XOR, 2, 2>(A + r0 * lda, lda, B, ldb, K, C + r0 * ldc, ldc, coef);
    return;
  }
  // coef is +/-2^s (1 for binary): counts are shifted and added to or subtracted from C.
  const bool negative = coef < 0;
  const int shift = __builtin_ctzll(static_cast<uint64_t>(negative ? -coef : coef));
  for (int r0 = 0; r0 < ROWS; r0 += 2)
    for (int v0 = 0; v0 < 2; ++v0)  // the two halves (4 channels each) of the panel
      harley_seal<XOR, 2, 1>(RowsStrided{A + r0 * lda, lda}, B + v0 * V::lanes, ldb, K,
                             C + r0 * ldc + v0 * V::lanes, ldc, shift, negative);
}

// The float epilogue fused, with the windows read in place (isa.h: MicroFloatFn, FusedFloat):
// kFusedRows rows x kFusedPanels panels per call. Its 16 registers do not hold the sums of a whole
// tile (the Harley-Seal state of one 2 x 4-channel element fills them; keeping sums across
// panels spilled, docs/kernels.md), so the counts go to a C tile on the stack (4 KB, in L1) and
// the epilogue reads them back in the same call. What this saves against the unfused route: the
// im2col copy (K words per row, written and read back), the C block's zeroing and border
// correction pass outside the kernel, one epilogue call per block, and the non-temporal stores
// now cover whole 64-byte lines (32 channels per row) instead of the 8 channels of a panel.
constexpr int kFusedRows = 16, kFusedPanels = 4, kFusedCols = 8 * kFusedPanels;

template <bool ADD, bool RELU, bool SIGN>
static inline __attribute__((always_inline)) void micro_float_impl(
    const uint64_t* const* A, const int64_t* koff, const uint64_t* B, int64_t ldb, int64_t K,
    const hwq::FusedFloat& f) {
  alignas(32) int64_t C[kFusedRows * kFusedCols];
  const int panels = static_cast<int>((f.cols + 7) / 8);
  const int rows = static_cast<int>((f.rows + 1) & ~int64_t{1});  // whole 2-row tiles
  // Below kMinHarleySeal words the byte table counts in one flush (31 words), which writes C.
  const bool table = K < kMinHarleySeal;
  if (!table || K == 0) {
    const __m256i zero = V::zero();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < 8 * panels; c += V::lanes)
        _mm256_store_si256((__m256i*)(C + r * kFusedCols + c), zero);
  }
  const RowsIndirect in_place{A, koff};
  for (int p = 0; p < panels; ++p)
    for (int r0 = 0; r0 < rows; r0 += 2) {
      int64_t* c = C + r0 * kFusedCols + p * 8;
      if (table) {
        lut_tile<true, 2, 2, RowsIndirect, true>(in_place.from(r0), B + p * ldb, ldb, K, c,
                                                 kFusedCols, 1);
      } else {
        for (int v0 = 0; v0 < 2; ++v0)  // the two halves (4 channels each) of the panel
          harley_seal<true, 2, 1>(in_place.from(r0), B + p * ldb + v0 * V::lanes, ldb, K,
                                  c + v0 * V::lanes, kFusedCols, 0, false);
      }
    }
  // s = offset - 2 * S in int32 (modulo 2^32), float(s) * scale + bias, + residual, ReLU as
  // max(+0, v) (vmaxps returns its second operand for NaN and for two zeros: v < 0 ? 0 : v bit
  // for bit), the same operations in the same order as the scalar tail and epilogue.h.
  const __m256 zero_ps = _mm256_setzero_ps();
  for (int64_t r = 0; r < f.rows; ++r) {
    const int64_t* c = C + r * kFusedCols;
    const int32_t* off = f.offset[r] + f.col;
    float* o = SIGN ? nullptr : f.out + r * f.ldo;
    const float* res = ADD ? f.residual + r * f.ldo : nullptr;
    const bool stream = (reinterpret_cast<uintptr_t>(o) & 31) == 0;
    uint32_t bits = 0;  // SIGN: one 32-bit half of the row's packed output word (isa.h)
    int64_t j = 0;
    for (; j + 8 <= f.cols; j += 8) {
      // int64 counts -> int32: dwords 0 and 2 of each 128-bit lane of both, then the qwords
      // in order (c0 c1 | c4 c5 | c2 c3 | c6 c7 -> c0 .. c7)
      const __m256 lo = _mm256_castsi256_ps(_mm256_load_si256((const __m256i*)(c + j)));
      const __m256 hi = _mm256_castsi256_ps(_mm256_load_si256((const __m256i*)(c + j + 4)));
      const __m256i x =
          _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8);
      const __m256i s =
          _mm256_sub_epi32(_mm256_loadu_si256((const __m256i*)(off + j)), _mm256_add_epi32(x, x));
      __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(f.scale + j)),
                               _mm256_loadu_ps(f.bias + j));
      if (SIGN) {  // v < 0, ordered: NaN and -0.0 give 0
        bits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero_ps, _CMP_LT_OQ)))
                << j;
        continue;
      }
      if (ADD) v = _mm256_add_ps(v, _mm256_loadu_ps(res + j));
      if (RELU) v = _mm256_max_ps(zero_ps, v);
      if (stream)
        _mm256_stream_ps(o + j, v);
      else
        _mm256_storeu_ps(o + j, v);
    }
    for (; j < f.cols; ++j) {
      const int32_t s = static_cast<int32_t>(static_cast<uint32_t>(off[j]) -
                                             2u * static_cast<uint32_t>(c[j]));
      float v = static_cast<float>(s) * f.scale[j] + f.bias[j];
      if (SIGN) {
        bits |= static_cast<uint32_t>(v < 0.0f) << j;
        continue;
      }
      if (ADD) v = v + res[j];
      o[j] = RELU && v < 0.0f ? 0.0f : v;
    }
    if (SIGN) f.signs[r * f.ldo] = bits;
  }
}

}  // namespace avx2_impl

#define HWQ_EPI_NS avx2_impl
#include "fused_rows.h"
#undef HWQ_EPI_NS

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

// The Harley-Seal block of harley_seal() on register operands: 2 independent states (ones,
// twos, fours, byte counts, as the 1 x 2 tile), each counting 8 vectors per iteration (xor, 7
// carry-save adders, the table popcount of the eights), byte counts folded into 64-bit lanes
// every 31 iterations. The empty asm keeps the compiler from hoisting the xors of the unchanged
// b0, b1.
static int64_t peak(int64_t iters) {
  const __m256i lut = V::nibble_table(), low4 = V::low_nibble_mask(), zero = V::zero();
  __m256i k[8];
  for (int i = 0; i < 8; ++i) k[i] = V::broadcast(0x9E3779B97F4A7C15ull * (i + 1));
  __m256i b[2] = {V::broadcast(0x0123456789abcdefull), V::broadcast(0x7edcba9876543210ull)};
  __m256i ones[2], twos[2], fours[2], e8[2], total = zero;
  for (int s = 0; s < 2; ++s) ones[s] = twos[s] = fours[s] = e8[s] = zero;
  for (int64_t it = 0; it < iters;) {
    const int64_t end = iters - it > 31 ? it + 31 : iters;
    for (; it < end; ++it) {
      __asm__ volatile("" : "+x"(b[0]), "+x"(b[1]));
      for (int s = 0; s < 2; ++s) {
        __m256i twos_a, twos_b, fours_a, fours_b, eights;
        csa(twos_a, ones[s], ones[s], V::bxor(b[s], k[0]), V::bxor(b[s], k[1]));
        csa(twos_b, ones[s], ones[s], V::bxor(b[s], k[2]), V::bxor(b[s], k[3]));
        csa(fours_a, twos[s], twos[s], twos_a, twos_b);
        csa(twos_a, ones[s], ones[s], V::bxor(b[s], k[4]), V::bxor(b[s], k[5]));
        csa(twos_b, ones[s], ones[s], V::bxor(b[s], k[6]), V::bxor(b[s], k[7]));
        csa(fours_b, twos[s], twos[s], twos_a, twos_b);
        csa(eights, fours[s], fours[s], fours_a, fours_b);
        e8[s] = V::add8(e8[s], V::popcount_bytes(eights, lut, low4));
      }
    }
    for (int s = 0; s < 2; ++s) {
      total = _mm256_add_epi64(total, _mm256_sad_epu8(e8[s], zero));
      e8[s] = zero;
    }
  }
  for (int s = 0; s < 2; ++s)
    total = _mm256_add_epi64(total, _mm256_add_epi64(_mm256_sad_epu8(ones[s], zero),
                                                     _mm256_sad_epu8(twos[s], zero)));
  alignas(32) int64_t lanes[4];
  _mm256_store_si256((__m256i*)lanes, total);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
}  // namespace avx2_impl

#define HWQ_EPI_NS avx2_impl
#define HWQ_EPI_STREAM256
#include "epilogue.h"
#undef HWQ_EPI_STREAM256
#undef HWQ_EPI_NS

#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  // 16 rows x 1 panel per call, as 2-row x half-panel Harley-Seal tiles (2 x 1-panel byte-table
  // tiles below kMinHarleySeal words). 16 rows per call rather than 2 (the byte-table kernel's
  // tile, what the driver called before): the table itself went from 101 to 106 binary MAC per
  // cycle at K = 9 and from 85 to 94 at K = 4 (fewer calls).
  static const KernelTable t = {"avx2", 16, 1, avx2_impl::micro<true, 16>,
                                avx2_impl::micro<false, 16>,
                                avx2_impl::epilogue_int, avx2_impl::epilogue_float, avx2_impl::epilogue_sign,
                                avx2_impl::pack_sign_f32, avx2_impl::peak, 2 * 8 * 256,
                                avx2_impl::micro_float, avx2_impl::kFusedRows,
                                avx2_impl::kFusedPanels};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

// AVX-512BW path (AVX-512 CPUs without VPOPCNTDQ, e.g. Skylake-SP / Cascade Lake): Harley-Seal
// carry-save popcount (vpternlogq) with a byte-table popcount (vpshufb) once per 8 vectors, on
// 512-bit vectors, one vector = one panel of 8 output channels.
#include "isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl")
#include <immintrin.h>

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

// Byte-table popcount of every word (the previous kernel), for K < kMinHarleySeal words: a
// carry-save block plus the final popcounts of ones/twos/fours cost about 56 operations per tile
// element against 8 per word for the table, and timed alone the table was faster at K = 8 (and
// slower from K = 9). Byte counts stay below 8 * K <= 255.
constexpr int64_t kMinHarleySeal = 9;
template <bool XOR, int MR, int NV>
static void micro_short(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                        int64_t* C, int64_t ldc, int shift, bool negative) {
  const __m512i lut = _mm512_load_si512((const void*)kNibblePopcount);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512i bytes[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) bytes[r][v] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v)
        bytes[r][v] = _mm512_add_epi8(
            bytes[r][v],
            popcount_bytes(op_words(XOR, A + r * lda + k, B + v * ldb + k * 8), lut, low4));
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      add_to_c(C + r * ldc + v * 8, _mm512_sad_epu8(bytes[r][v], _mm512_setzero_si512()), shift,
               negative);
}

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
template <bool XOR, int MR, int NV>
static inline __attribute__((always_inline)) void harley_seal(
    const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K, int64_t* C,
    int64_t ldc, int shift, bool negative) {
  constexpr int64_t kBlocksPerFlush = 31;
  const __m512i lut = _mm512_load_si512((const void*)kNibblePopcount);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i zero = _mm512_setzero_si512();
  const int64_t k8 = K & ~int64_t{7};  // words counted in blocks of 8
  const int n = static_cast<int>(K - k8);
  __m512i ones[MR][NV], twos[MR][NV], fours[MR][NV], e8[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      const uint64_t* a = A + r * lda + k8;
      const uint64_t* b = B + v * ldb + k8 * 8;
      ones[r][v] = twos[r][v] = fours[r][v] = e8[r][v] = zero;
      if (n == 1) {
        ones[r][v] = op_words(XOR, a, b);
      } else if (n > 1) {  // t0 + t1 + t2 (+ t3 + t4 (+ t5 + t6)), missing words are zero
        const __m512i t2 = n > 2 ? op_words(XOR, a + 2, b + 16) : zero;
        csa(twos[r][v], ones[r][v], op_words(XOR, a, b), op_words(XOR, a + 1, b + 8), t2);
        if (n > 3) {
          __m512i twos_b;
          const __m512i t4 = n > 4 ? op_words(XOR, a + 4, b + 32) : zero;
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, a + 3, b + 24), t4);
          if (n > 5) {
            __m512i twos_c;
            const __m512i t6 = n > 6 ? op_words(XOR, a + 6, b + 48) : zero;
            csa(twos_c, ones[r][v], ones[r][v], op_words(XOR, a + 5, b + 40), t6);
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
      for (int r = 0; r < MR; ++r) {
        const uint64_t* a = A + r * lda + k;
        for (int v = 0; v < NV; ++v) {
          const uint64_t* b = B + v * ldb + k * 8;
          __m512i twos_a, twos_b, fours_a, fours_b, eights;
          csa(twos_a, ones[r][v], ones[r][v], op_words(XOR, a, b), op_words(XOR, a + 1, b + 8));
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, a + 2, b + 16),
              op_words(XOR, a + 3, b + 24));
          csa(fours_a, twos[r][v], twos[r][v], twos_a, twos_b);
          csa(twos_a, ones[r][v], ones[r][v], op_words(XOR, a + 4, b + 32),
              op_words(XOR, a + 5, b + 40));
          csa(twos_b, ones[r][v], ones[r][v], op_words(XOR, a + 6, b + 48),
              op_words(XOR, a + 7, b + 56));
          csa(fours_b, twos[r][v], twos[r][v], twos_a, twos_b);
          csa(eights, fours[r][v], fours[r][v], fours_a, fours_b);
          e8[r][v] = _mm512_add_epi8(e8[r][v], popcount_bytes(eights, lut, low4));
        }
      }
    }
    if (k == k8) break;  // the last flush is merged with the remainder below
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) {
        add_to_c(C + r * ldc + v * 8, _mm512_slli_epi64(_mm512_sad_epu8(e8[r][v], zero), 3),
                 shift, negative);
        e8[r][v] = zero;
      }
  }

  for (int r = 0; r < MR; ++r)
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
      micro_short<XOR, 4, NV>(A + r0 * lda, lda, B, ldb, K, C + r0 * ldc, ldc, shift, negative);
    return;
  }
  for (int r0 = 0; r0 < ROWS; r0 += 4)
    harley_seal<XOR, 4, NV>(A + r0 * lda, lda, B, ldb, K, C + r0 * ldc, ldc, shift, negative);
}

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
                                avx512bw_impl::pack_sign_f32, avx512bw_impl::peak, 2 * 8 * 512, nullptr, 0, 0};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq

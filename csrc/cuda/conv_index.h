// Index arithmetic of the CUDA implicit-GEMM kernel (conv.cu), kept in host+device functions so a
// host program can run exactly this code against the pure-torch reference without a GPU
// (tests/kernels/test_cuda_emulation.py builds csrc/cuda/emulate.cpp, which includes this file).
//
// GEMM view of one group g of a convolution:
//   rows    m = (n, oh, ow) output pixels, M = N * OH * OW;
//   columns o = output channels of the group, og of them;
//   depth   k = 64-bit words of the packed im2col row: k = tap * Cwg + cw, K = KH * KW * Cwg,
//           tap = kh * KW + kw; each word holds 64 input channels (tail bits are zero in both operands).
// Out-of-image taps and k >= K read as zero words (zero-fill, no memory access).
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define HWQ_HD __host__ __device__ __forceinline__
#else
#define HWQ_HD inline
#endif

namespace hwq_cuda {

constexpr int kChunkWords = 8;  // 64-bit words of K per pipeline stage: 512 bits = 2 mma k-steps
constexpr int kStages = 4;      // cp.async pipeline depth
constexpr int kThreads = 256;   // threads per block (8 warps)

// Shared memory of a block with a BM x BN tile: kStages stages of (A tile, then B tile), each tile
// rows x 8 words; after the stages the per-row info of the binary epilogue (valid-tap mask u64,
// popc(a) i32, K_valid i32 per row).
HWQ_HD constexpr int smem_a_bytes(int bm) { return bm * kChunkWords * 8; }
HWQ_HD constexpr int smem_stage_bytes(int bm, int bn) { return (bm + bn) * kChunkWords * 8; }
HWQ_HD constexpr int smem_row_info_offset(int bm, int bn) {
  return kStages * smem_stage_bytes(bm, bn);
}
HWQ_HD constexpr int smem_bytes(int bm, int bn) { return smem_row_info_offset(bm, bn) + bm * 16; }

// Which shared-memory words each thread copies per stage (cp.async loader). One pass of the 256
// threads covers 32 tile rows x 8 words, so a tile of `rows` rows takes rows / 32 passes.
HWQ_HD constexpr int load_passes(int rows) { return rows / (kThreads / kChunkWords); }
// A: thread tid copies word a_load_slot(tid) of tile rows a_load_row(tid, q), q < load_passes(BM):
// 8 neighbouring threads read one pixel's 8 contiguous words.
HWQ_HD constexpr int a_load_slot(int tid) { return tid & 7; }
HWQ_HD constexpr int a_load_row(int tid, int q) { return (tid >> 3) + 32 * q; }
// B: thread tid copies lane tid & 7 (output channel within an 8-channel panel) of word
// b_load_slot(tid) of panel (tid >> 6) + 4q, q < load_passes(BN), so that a warp reads 256
// contiguous bytes of the (..., K, 8) panel layout (8 lanes x 4 words).
HWQ_HD constexpr int b_load_slot(int tid) { return (tid >> 3) & 7; }
HWQ_HD constexpr int b_load_row(int tid, int q) { return ((tid >> 6) + 4 * q) * 8 + (tid & 7); }

// Shared-memory byte offset of word `word` (0..7) of tile row `row` in a stage tile of `rows` rows.
// The stage holds two k-steps of 256 bits; each is rows x 32 bytes. The two 16-byte halves of a row
// are swapped on rows 4..7 of every 8 (XOR swizzle), so that ldmatrix's 8 row reads of one 8x8 matrix
// (8 rows x 16 bytes) hit 8 distinct 16-byte bank groups: conflict-free.
HWQ_HD int tile_offset(int rows, int row, int word) {
  const int kstep = word >> 2, half = (word >> 1) & 1, sub = word & 1;
  return kstep * rows * 32 + row * 32 + ((half ^ ((row >> 2) & 1)) << 4) + (sub << 3);
}

// ldmatrix.x4 row address (byte offset in the stage) that lane `lane` supplies for the A fragment of
// the 16-row m-tile starting at tile row row0, k-step ks: matrices 0..3 = (rows 0-7, bits 0-127),
// (rows 8-15, bits 0-127), (rows 0-7, bits 128-255), (rows 8-15, bits 128-255), which are exactly the
// mma's a0..a3 (lane l of matrix q receives row l/4, 32-bit word l%4 of that 8 x 128-bit matrix).
HWQ_HD int ldsm_a_offset(int rows, int ks, int row0, int lane) {
  const int row = row0 + (lane & 15), half = lane >> 4;
  return ks * rows * 32 + row * 32 + ((half ^ ((row >> 2) & 1)) << 4);
}
// The same for B, two 8-column n-tiles at once (columns col0..col0+15): matrices 0..3 = b0, b1 of
// n-tile col0 and b0, b1 of n-tile col0 + 8.
HWQ_HD int ldsm_b_offset(int rows, int ks, int col0, int lane) {
  const int row = col0 + (lane & 7) + ((lane >> 4) << 3), half = (lane >> 3) & 1;
  return ks * rows * 32 + row * 32 + ((half ^ ((row >> 2) & 1)) << 4);
}
// Tile row / column of accumulator element e (0..3) of an m16n8 tile for lane `lane`:
// d0, d1 at row lane/4, columns 2*(lane%4) + 0/1; d2, d3 eight rows below.
HWQ_HD int acc_row(int lane, int e) { return (lane >> 2) + ((e >> 1) << 3); }
HWQ_HD int acc_col(int lane, int e) { return ((lane & 3) << 1) + (e & 1); }

// Float epilogue of one sum: float(s) (round to nearest), times scale[oc], plus bias[oc], each step
// rounded on its own (no FMA), as the CPU kernels. The host version needs -ffp-contract=off.
HWQ_HD float epilogue_float(int32_t s, const float* scale, const float* bias, int64_t oc) {
  float y = static_cast<float>(s);
#if defined(__CUDA_ARCH__)
  if (scale != nullptr) y = __fmul_rn(y, scale[oc]);
  if (bias != nullptr) y = __fadd_rn(y, bias[oc]);
#else
  if (scale != nullptr) y = y * scale[oc];
  if (bias != nullptr) y = y + bias[oc];
#endif
  return y;
}

// The output pixel of GEMM row m, as the top-left input coordinate of its window and its image.
struct RowOrigin {
  int64_t n;   // image
  int64_t ih0, iw0;  // input row / column of tap (0, 0), may be negative (padding)
};

HWQ_HD RowOrigin row_origin(int64_t m, int64_t oh, int64_t ow, int stride_h, int stride_w, int pad_h,
                            int pad_w) {
  RowOrigin r;
  const int64_t ohw = oh * ow;
  r.n = m / ohw;
  const int64_t rem = m - r.n * ohw, y = rem / ow, x = rem - y * ow;
  r.ih0 = y * stride_h - pad_h;
  r.iw0 = x * stride_w - pad_w;
  return r;
}

// Word k of a packed im2col row: which tap (as an input offset) and which word of the pixel's
// channels. 32-bit division: K = KH*KW*Cwg < 2^31 (the binding checks). valid = false for k >= K.
struct TapWord {
  bool valid;
  int cw, dy, dx;
};
HWQ_HD TapWord tap_word(int64_t k, int64_t K, int64_t cwg, int kw, int dil_h, int dil_w) {
  TapWord t;
  t.valid = k < K;
  const int kk = t.valid ? static_cast<int>(k) : 0, c = static_cast<int>(cwg);
  const int tap = kk / c;
  t.cw = kk - tap * c;
  const int ky = tap / kw;
  t.dy = ky * dil_h;
  t.dx = (tap - ky * kw) * dil_w;
  return t;
}

// Where word t of GEMM row `r` (its origin) lives in the packed activations (plane_offset selects
// group g and plane i): the word index into x, or -1 when the word is a zero (out-of-image tap or
// k >= K).
HWQ_HD int64_t a_word_index(const RowOrigin& r, const TapWord& t, int64_t h, int64_t w,
                            int64_t pixel_words, int64_t plane_offset) {
  const int64_t ih = r.ih0 + t.dy, iw = r.iw0 + t.dx;
  if (!t.valid || ih < 0 || ih >= h || iw < 0 || iw >= w) return -1;
  return ((r.n * h + ih) * w + iw) * pixel_words + plane_offset + t.cw;
}

// Word k of output channel o (in the group) of weight plane j: index into the packed weights
// (G, pw, np, K, 8), or -1 for a zero (o >= og or k >= K).
HWQ_HD int64_t b_word_index(int64_t g, int j, int pw, int64_t np, int64_t o, int64_t og, int64_t k,
                            int64_t K) {
  if (o >= og || k >= K) return -1;
  return (((g * pw + j) * np + (o >> 3)) * K + k) * 8 + (o & 7);
}

// Bitmask of the taps of row r that fall inside the image (bit tap = kh * KW + kw; KH*KW <= 64).
HWQ_HD uint64_t valid_taps(const RowOrigin& r, int kh, int kw, int dil_h, int dil_w, int64_t h,
                           int64_t w) {
  uint64_t mask = 0;
  for (int a = 0; a < kh; ++a)
    for (int b = 0; b < kw; ++b) {
      const int64_t ih = r.ih0 + a * dil_h, iw = r.iw0 + b * dil_w;
      if (ih >= 0 && ih < h && iw >= 0 && iw < w) mask |= uint64_t{1} << (a * kw + b);
    }
  return mask;
}

// Bit-serial plane pairs, in the order the kernel accumulates them (Horner's scheme, one int32
// accumulator): pairs (i, j) sorted by s = i + j descending. Before pair p the accumulator is
// negated back if pair p-1 was a sign-plane pair, shifted left by s(p-1) - s(p) (0 or 1), and
// negated if pair p is a sign-plane pair (j = pw - 1, coefficient -2^(i+j)): the tensor cores only
// add popcounts, so subtracting P is done as -(-acc + P). After the last pair it is negated back if
// needed. All steps wrap mod 2^32, and the final sum fits in int32 (the binding checks the bound),
// so the result is exact even where a partial sum would not fit.
struct PairList {
  int count;
  int8_t i[64], j[64], shift[64], neg[64];
};

HWQ_HD PairList make_pairs(int pa, int pw, bool binary) {
  PairList p;
  p.count = 0;
  if (binary) {
    p.i[0] = 0; p.j[0] = 0; p.shift[0] = 0; p.neg[0] = 0;
    p.count = 1;
    return p;
  }
  int prev_s = pa + pw - 2;
  for (int s = pa + pw - 2; s >= 0; --s)
    for (int i = 0; i < pa; ++i) {
      const int j = s - i;
      if (j < 0 || j >= pw) continue;
      p.i[p.count] = static_cast<int8_t>(i);
      p.j[p.count] = static_cast<int8_t>(j);
      p.shift[p.count] = static_cast<int8_t>(prev_s - s);
      p.neg[p.count] = static_cast<int8_t>(j == pw - 1);
      prev_s = s;
      ++p.count;
    }
  return p;
}

// Accumulator steps of the scheme above, on the int32 bits (unsigned arithmetic: wraps, no UB).
HWQ_HD int32_t acc_negate(int32_t v) { return static_cast<int32_t>(0u - static_cast<uint32_t>(v)); }
HWQ_HD int32_t acc_shift(int32_t v, int s) {
  return static_cast<int32_t>(static_cast<uint32_t>(v) << s);
}
// Before pair p (p > 0): undo the previous pair's negation, shift, apply this pair's negation.
HWQ_HD int32_t acc_enter_pair(int32_t v, const PairList& pl, int p) {
  if (p > 0) {
    if (pl.neg[p - 1]) v = acc_negate(v);
    v = acc_shift(v, pl.shift[p]);
  }
  return pl.neg[p] ? acc_negate(v) : v;
}
HWQ_HD int32_t acc_finish(int32_t v, const PairList& pl) {
  return pl.neg[pl.count - 1] ? acc_negate(v) : v;
}

// Binary (+/-1, bit 1 = -1) sum over the taps inside the image, from the AND count:
//   sum (1 - 2a)(1 - 2w) = K_valid - 2 popc(a) - 2 popc(w) + 4 popc(a AND w),
// K_valid = C/G * (valid taps); popc(a) = `row_pop` (out-of-image words are zero, so this is over
// valid taps already); popc(w) over the valid taps = `w_valid_pop`. Wraps mod 2^32 like the kernel.
HWQ_HD int32_t binary_sum(int32_t and_count, int32_t k_valid, int32_t row_pop, int32_t w_valid_pop) {
  const uint32_t s = static_cast<uint32_t>(k_valid) - 2u * static_cast<uint32_t>(row_pop) -
                     2u * static_cast<uint32_t>(w_valid_pop) + 4u * static_cast<uint32_t>(and_count);
  return static_cast<int32_t>(s);
}

// popc(w) of one output channel over the taps in `valid` (a valid_taps mask): the total, stored at
// wpop_row[taps], minus the out-of-image taps' popcounts (usually none: interior pixels).
HWQ_HD int32_t weight_valid_pop(const int32_t* wpop_row, int taps, uint64_t valid) {
  const uint64_t all = taps == 64 ? ~uint64_t{0} : (uint64_t{1} << taps) - 1;
  int32_t s = wpop_row[taps];
  for (uint64_t out = ~valid & all; out != 0; out &= out - 1) {
    int t = 0;
    while (((out >> t) & 1) == 0) ++t;  // lowest set bit (the loop runs only on border pixels)
    s -= wpop_row[t];
  }
  return s;
}

}  // namespace hwq_cuda

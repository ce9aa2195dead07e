// Index arithmetic of the sm_90a (Hopper, wgmma) kernel, conv_sm90.cu, as host+device functions so
// that csrc/cuda/emulate_sm90.cpp runs exactly this code on the CPU against the reference
// (tests/kernels/test_cuda_emulation.py). The GEMM view is conv_index.h's: rows = output pixels,
// columns = output channels of a group, depth = 64-bit words of the packed im2col row.
//
// A block (two warpgroups, 256 threads) computes kBM x BN outputs; warpgroup wg owns rows
// 64 wg .. 64 wg + 63 and all BN columns (one wgmma.m64nBNk256 per k-step and plane pair).
// Per pipeline stage it holds, for one chunk of kChunkWords words of K, ALL activation planes
// (pa tiles of kBM rows) and ALL weight planes (pw tiles of BN rows): every plane pair (i, j) of a
// bit-serial product is a binary GEMM on the same stage, so each operand word is fetched from
// memory once however many pairs use it ("one pass over the tiles").
//
// Tile layout in shared memory, K-major as wgmma needs for .b1 operands (PTX ISA, "Shared Memory
// Matrix Layout" and "Matrix Descriptor" of the asynchronous warpgroup-level MMA): a tile row holds
// the 64 bytes (512 bits) of one pixel / channel for the stage, as four 16-byte chunks. Two layouts:
//   kSwizzle64:  rows of 64 bytes one after another (8-row atoms of 512 bytes), 16-byte chunk c of
//                row r at r * 64 + ((c ^ ((r >> 1) & 3)) * 16) (the 64-byte swizzle: address bits
//                4-5 XOR bits 7-8); descriptor swizzle mode 2, SBO = 512 (next 8-row group), LBO
//                unused; the second k-step starts 32 bytes further.
//   kInterleave: no swizzle; "core matrices" of 8 rows x 16 bytes stored contiguously (128 bytes),
//                chunk c of row r at c * rows * 16 + (r / 8) * 128 + (r % 8) * 16; descriptor
//                swizzle mode 0, LBO = rows * 16 (next core matrix along K), SBO = 128 (next 8-row
//                group); the second k-step starts 2 * rows * 16 bytes further.
// The kernel is built for both and gpu_check.sh checks both; the swizzled one is the default (its
// loader reads a pixel's 64 contiguous bytes with 4 neighbouring threads, conflict-free).
#pragma once
#include <stdint.h>

#include "conv_index.h"

namespace hwq_cuda {
namespace sm90 {

constexpr int kThreads = 256;   // two warpgroups
constexpr int kBM = 128;        // output pixels per block (64 per warpgroup)
constexpr int kChunkWords = 8;  // words of K per stage: 512 bits = two wgmma k-steps of 256
constexpr int kRowBytes = 64;   // bytes of one tile row per stage
constexpr int kStages = 6;      // cp.async pipeline depth (kStages - 2 stages in flight)
constexpr int kMaxPairs = 4;    // plane pairs (pa * pw) the kernel takes; more: the sm_80 kernel
constexpr int kEpiPad = 8;      // int32 padding per row of the epilogue staging tile (no conflicts)

enum Layout : int { kSwizzle64 = 0, kInterleave = 1 };

// Output channels per block for NACC accumulator sets: the accumulators of one thread are
// NACC * BN / 2 int32 registers, kept at <= 128.
HWQ_HD constexpr int block_n(int nacc) { return nacc == 1 ? 256 : nacc == 2 ? 128 : 64; }

// Byte offset of 16-byte chunk c (0..3) of row r in a tile of `rows` rows (tile base 512-aligned).
HWQ_HD int tile16_offset(int layout, int rows, int r, int c) {
  if (layout == kSwizzle64) {
    const int lin = r * kRowBytes + c * 16;
    return lin ^ (((lin >> 7) & 3) << 4);
  }
  return c * rows * 16 + (r >> 3) * 128 + (r & 7) * 16;
}

// Shared-memory matrix descriptor (PTX ISA, wgmma "Matrix Descriptor Format"): bits 0-13 start
// address >> 4, 16-29 leading-dimension byte offset >> 4, 32-45 stride-dimension byte offset >> 4,
// 49-51 base offset (0: tiles are 512-byte aligned), 62-63 swizzle (0 none, 1 128B, 2 64B, 3 32B).
// `addr`: shared-memory address of row 0 of the operand (a warpgroup's 64 rows or the B tile) inside
// a tile of `rows` rows; ks: k-step 0 or 1 of the stage.
HWQ_HD uint64_t make_desc(uint32_t addr, int layout, int rows, int ks) {
  uint32_t start, lbo, sbo;
  uint64_t swizzle;
  if (layout == kSwizzle64) {
    start = addr + ks * 32;
    lbo = 16;  // unused with a swizzle whose width covers the k-step
    sbo = 8 * kRowBytes;
    swizzle = 2;
  } else {
    start = addr + ks * 2 * rows * 16;
    lbo = rows * 16;
    sbo = 128;
    swizzle = 0;
  }
  return static_cast<uint64_t>((start >> 4) & 0x3FFF) |
         (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (swizzle << 62);
}

// Shared-memory tile rows of the row-r-th operand row that the descriptor points at, for 16-byte
// chunk c (0, 1) of the 256-bit k-step: the address a wgmma reads (the host emulator's model of
// the hardware, from the PTX ISA's layouts; the swizzle applies to the address bits).
HWQ_HD uint32_t desc_address(uint64_t desc, int r, int c) {
  const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
  const uint32_t lbo = static_cast<uint32_t>((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
  const int swizzle = static_cast<int>(desc >> 62);
  if (swizzle == 0) return start + (r >> 3) * sbo + c * lbo + (r & 7) * 16;
  // swizzled K-major: rows of `width` bytes in 8-row atoms; 16-byte chunk bits XOR the row bits.
  const uint32_t width = swizzle == 1 ? 128 : swizzle == 2 ? 64 : 32;
  const uint32_t a = start + (r >> 3) * sbo + (r & 7) * width + c * 16;
  const uint32_t mask = swizzle == 1 ? 7 : swizzle == 2 ? 3 : 1;
  return a ^ (((a >> 7) & mask) << 4);
}

// wgmma m64nN accumulator fragment (PTX ISA, "Register Fragments" of wgmma .s32 D): register i of
// lane `lane` in warp `warp` (0..3) of the warpgroup holds row 16 warp + lane / 4 + 8 ((i / 2) % 2),
// column 8 (i / 4) + 2 (lane % 4) + i % 2.
HWQ_HD int wg_acc_row(int warp, int lane, int i) { return 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1); }
HWQ_HD int wg_acc_col(int lane, int i) { return 8 * (i >> 2) + 2 * (lane & 3) + (i & 1); }

// cp.async loader: one 16-byte chunk (two words) per thread and pass; a pass covers 64 tile rows.
//   kSwizzle64: 4 neighbouring threads copy the 4 chunks of one row (a pixel's 64 contiguous bytes);
//   kInterleave: 8 neighbouring threads copy one chunk of 8 neighbouring rows (one core matrix).
// Both: each quarter-warp writes 128 contiguous shared-memory bytes (no bank conflicts).
HWQ_HD constexpr int load_row(int layout, int tid, int q) {
  return layout == kSwizzle64 ? (tid >> 2) + 64 * q : (tid & 63) + 64 * q;
}
HWQ_HD constexpr int load_chunk(int layout, int tid) {
  return layout == kSwizzle64 ? (tid & 3) : (tid >> 6);
}

// Shared memory of a block: kStages stages of [pa A tiles of kBM rows][pw B tiles of BN rows];
// the epilogue reuses the start as a kBM x (BN + kEpiPad) int32 staging tile; after both, the
// per-row data of the binary epilogue (valid-tap mask u64, popc(a) i32, K_valid i32).
HWQ_HD constexpr int stage_bytes(int pa, int pw, int bn) { return (pa * kBM + pw * bn) * kRowBytes; }
HWQ_HD constexpr int epi_bytes(int bn) { return kBM * (bn + kEpiPad) * 4; }
HWQ_HD constexpr int row_info_offset(int pa, int pw, int bn) {
  return kStages * stage_bytes(pa, pw, bn) > epi_bytes(bn) ? kStages * stage_bytes(pa, pw, bn)
                                                            : epi_bytes(bn);
}
HWQ_HD constexpr int smem_bytes(int pa, int pw, int bn) { return row_info_offset(pa, pw, bn) + kBM * 16; }

// Weights repacked K-major for the B tiles (a pre-pass, conv_sm90.cu): (G, pw, OGP, KP) words,
// OGP = og rounded up to BN, KP = K rounded up to kChunkWords; zero past og and K, so the main
// loop reads whole 64-byte rows without bounds checks.
HWQ_HD constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The plane pairs of a product and the accumulator set each goes to. Pair (i, j) contributes
// c_ij popc(a_i AND w_j), c_ij = 2^(i+j), negated for j = pw - 1 (the sign plane of the signed
// weights; pw = 1 means w in {-1, 0}). Pairs with equal c_ij share an accumulator set; the sets
// are combined once at the end: sum = sum_c coef[c] * acc[c], wrapping mod 2^32 (exact, as the
// final sum fits in int32: the binding checks the bound). Binary: one pair, one set, coefficient 1
// (binary_sum turns the AND count into the +/-1 sum).
struct PairSets {
  int count;            // plane pairs
  int nsets;            // accumulator sets (1..4)
  int8_t i[kMaxPairs], j[kMaxPairs], set[kMaxPairs];
  int32_t coef[kMaxPairs];
};

HWQ_HD constexpr int32_t pair_coef(int pw, int i, int j) {
  return (j == pw - 1 ? -1 : 1) * (int32_t{1} << (i + j));
}
// Accumulator set of pair (i, j): sets are numbered in order of first use, pairs taken i-major.
HWQ_HD constexpr int pair_set(int pa, int pw, bool binary, int i, int j) {
  if (binary) return 0;
  int32_t coefs[kMaxPairs * 4] = {};
  int n = 0;
  for (int a = 0; a < pa; ++a)
    for (int b = 0; b < pw; ++b) {
      const int32_t c = pair_coef(pw, a, b);
      int s = 0;
      while (s < n && coefs[s] != c) ++s;
      if (s == n) coefs[n++] = c;
      if (a == i && b == j) return s;
    }
  return -1;
}
HWQ_HD constexpr int num_sets(int pa, int pw, bool binary) {
  int n = 0;
  for (int a = 0; a < (binary ? 1 : pa); ++a)
    for (int b = 0; b < (binary ? 1 : pw); ++b)
      if (pair_set(pa, pw, binary, a, b) + 1 > n) n = pair_set(pa, pw, binary, a, b) + 1;
  return n;
}

// false when the product has more than kMaxPairs pairs (the sm_80 kernel takes those).
HWQ_HD bool make_pair_sets(int pa, int pw, bool binary, PairSets& p) {
  p.count = 0;
  p.nsets = 0;
  if (binary) {
    p.count = p.nsets = 1;
    p.i[0] = p.j[0] = p.set[0] = 0;
    p.coef[0] = 1;
    return true;
  }
  if (pa * pw > kMaxPairs) return false;
  for (int i = 0; i < pa; ++i)
    for (int j = 0; j < pw; ++j) {
      const int s = pair_set(pa, pw, false, i, j);
      p.coef[s] = pair_coef(pw, i, j);
      if (s + 1 > p.nsets) p.nsets = s + 1;
      p.i[p.count] = static_cast<int8_t>(i);
      p.j[p.count] = static_cast<int8_t>(j);
      p.set[p.count] = static_cast<int8_t>(s);
      ++p.count;
    }
  return true;
}

// Byte offset of warpgroup wg's 64 rows inside an A tile of kBM rows.
HWQ_HD constexpr int wg_a_offset(int layout, int wg) {
  return layout == kSwizzle64 ? wg * 64 * kRowBytes : wg * 8 * 128;
}

// sum_c coef[c] * acc[c] mod 2^32 (unsigned arithmetic: no overflow UB).
HWQ_HD int32_t combine_sets(const int32_t* acc, const PairSets& p) {
  uint32_t s = 0;
  for (int c = 0; c < p.nsets; ++c)
    s += static_cast<uint32_t>(p.coef[c]) * static_cast<uint32_t>(acc[c]);
  return static_cast<int32_t>(s);
}

// Binary: popc(a) of the GEMM row with origin r (its in-image taps in `mask`, a valid_taps mask)
// from the per-pixel popcounts ppop (N, H, W, G) of the pixel-popcount pre-pass: the sum over the
// in-image taps (out-of-image taps are zero words, as in the tiles).
HWQ_HD int32_t row_popcount(const int32_t* ppop, const RowOrigin& r, uint64_t mask, int kw,
                            int dil_h, int dil_w, int64_t w, int64_t h, int64_t groups, int64_t g) {
  int32_t s = 0;
  for (uint64_t rest = mask; rest != 0; rest &= rest - 1) {
    int t = 0;
    while (((rest >> t) & 1) == 0) ++t;  // lowest set tap
    const int64_t ih = r.ih0 + (t / kw) * dil_h, iw = r.iw0 + (t % kw) * dil_w;
    s += ppop[((r.n * h + ih) * w + iw) * groups + g];
  }
  return s;
}

// Epilogue copy-out: thread tid handles 4 neighbouring columns, 4 * (tid % (BN / 4)) .. + 3, of
// rows tid / (BN / 4) + pass * (kThreads * 4 / BN): a warp writes whole runs of a row (16-byte
// stores where the output row alignment allows), and 16 neighbouring lanes cover 64 columns (one
// packed-sign word's worth, OR-reduced with shuffles).
HWQ_HD constexpr int epi_col(int bn, int tid) { return 4 * (tid % (bn / 4)); }
HWQ_HD constexpr int epi_row(int bn, int tid, int pass) {
  return tid / (bn / 4) + pass * (kThreads * 4 / bn);
}
HWQ_HD constexpr int epi_passes(int bn) { return kBM / (kThreads * 4 / bn); }

}  // namespace sm90
}  // namespace hwq_cuda

// Host emulation of the CUDA conv kernel (conv.cu) for tests without a GPU
// (tests/kernels/test_cuda_emulation.py compiles this with g++ and calls it through ctypes).
//
// It runs the kernel's data flow block by block and lane by lane with the kernel's own index
// functions (conv_index.h): loader addresses and zero fill, the swizzled shared-memory tile, the
// ldmatrix row addresses, the Horner plane-pair order, the per-row popcounts and the epilogue. The
// two PTX instructions are emulated from their definitions in the PTX ISA:
//   ldmatrix.x4 .b16: lane l of matrix q gets 32-bit word l%4 of the row whose address lane 8q+l/4
//     supplied;
//   mma.m16n8k256 .b1 .and.popc: d[r][c] += popc(A[r] AND B[c]) over 256 bits, A row r word kw
//     (32 bits) in lane (r%8)*4 + kw%4, register (r/8) + 2*(kw/4); B column c word kw in lane
//     c*4 + kw%4, register kw/4; d[r][c] in lane (r%8)*4 + c/2, register 2*(r/8) + c%2.
// What it cannot show: races, cp.async ordering, and whether the hardware matches the PTX text.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "conv_index.h"

using namespace hwq_cuda;

namespace {

uint32_t load32(const std::vector<uint8_t>& s, int off) {
  uint32_t v;
  memcpy(&v, s.data() + off, 4);
  return v;
}

uint64_t load64(const std::vector<uint8_t>& s, int off) {
  uint64_t v;
  memcpy(&v, s.data() + off, 8);
  return v;
}

void ldmatrix_x4(const std::vector<uint8_t>& smem, const int addr[32], uint32_t regs[32][4]) {
  for (int q = 0; q < 4; ++q)
    for (int l = 0; l < 32; ++l) regs[l][q] = load32(smem, addr[8 * q + l / 4] + 4 * (l % 4));
}

void mma_and_popc(int32_t d[32][4], const uint32_t a[32][4], const uint32_t b[32][2]) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) {
      uint32_t sum = 0;
      for (int kw = 0; kw < 8; ++kw) {
        const uint32_t av = a[(r % 8) * 4 + kw % 4][(r / 8) + 2 * (kw / 4)];
        const uint32_t bv = b[c * 4 + kw % 4][kw / 4];
        sum += static_cast<uint32_t>(__builtin_popcount(av & bv));
      }
      int32_t& dst = d[(r % 8) * 4 + c / 2][2 * (r / 8) + c % 2];
      dst = static_cast<int32_t>(static_cast<uint32_t>(dst) + sum);
    }
}

}  // namespace

// Returns 0 on success; out: int32 (N, OH, OW, O). bm/bn/warps_m/warps_n: the tile configuration.
extern "C" int hwq_emulate_conv(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h,
                                int64_t w_in, int64_t in_channels, int64_t out_channels,
                                int64_t groups, int kh, int kw, int stride_h, int stride_w,
                                int pad_h, int pad_w, int dil_h, int dil_w, int pa, int pw,
                                int binary, int bm, int bn, int warps_m, int warps_n,
                                int32_t* out) {
  const int64_t oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1;
  const int64_t ow = (w_in + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1;
  const int64_t M = n * oh * ow, og = out_channels / groups, cg = in_channels / groups;
  const int64_t cwg = (cg + 63) / 64, taps = static_cast<int64_t>(kh) * kw, K = taps * cwg;
  const int64_t np = ((og + 7) / 8 + 3) / 4 * 4, nchunks = (K + kChunkWords - 1) / kChunkWords;
  const int64_t pixel_words = groups * pa * cwg;
  const int WM = bm / warps_m, WN = bn / warps_n, MT = WM / 16, NT = WN / 8;
  if (WM % 16 || WN % 16 || bm % 32 || bn % 32) return 1;
  const PairList pairs = make_pairs(pa, pw, binary != 0);
  const int64_t total = static_cast<int64_t>(pairs.count) * nchunks;

  // weight_popcount_kernel
  std::vector<int32_t> wpop(groups * og * (taps + 1), 0);
  if (binary)
    for (int64_t idx = 0; idx < groups * og; ++idx) {
      const int64_t g = idx / og, o = idx - g * og;
      const uint64_t* row = w + ((g * np + (o >> 3)) * K) * 8 + (o & 7);
      int32_t tot = 0;
      for (int t = 0; t < taps; ++t) {
        int32_t s = 0;
        for (int64_t cw = 0; cw < cwg; ++cw) s += __builtin_popcountll(row[(t * cwg + cw) * 8]);
        wpop[idx * (taps + 1) + t] = s;
        tot += s;
      }
      wpop[idx * (taps + 1) + taps] = tot;
    }

  const int warps = warps_m * warps_n;
  std::vector<int32_t> acc;
  std::vector<uint8_t> sA(bm * kChunkWords * 8), sB(bn * kChunkWords * 8);
  std::vector<RowOrigin> origin(bm);
  std::vector<int32_t> row_pop(bm);
  auto A = [&](int wp, int mt, int nt) { return &acc[(((wp * MT + mt) * NT + nt) * 32) * 4]; };

  for (int64_t g = 0; g < groups; ++g)
    for (int64_t m0 = 0; m0 < M; m0 += bm)
      for (int64_t o0 = 0; o0 < og; o0 += bn) {
        for (int r = 0; r < bm; ++r) {
          if (m0 + r < M) {
            origin[r] = row_origin(m0 + r, oh, ow, stride_h, stride_w, pad_h, pad_w);
          } else {
            origin[r].n = 0;
            origin[r].ih0 = -(int64_t{1} << 40);
            origin[r].iw0 = 0;
          }
          row_pop[r] = 0;
        }
        acc.assign(static_cast<size_t>(warps) * MT * NT * 32 * 4, 0);
        for (int64_t it = 0; it < total; ++it) {
          const int64_t pair = it / nchunks, chunk = it - pair * nchunks;
          const int ai = pairs.i[pair], bj = pairs.j[pair];
          const int64_t plane_offset = (g * pa + ai) * cwg;
          for (int r = 0; r < bm; ++r)
            for (int slot = 0; slot < kChunkWords; ++slot) {
              const TapWord tw = tap_word(chunk * kChunkWords + slot, K, cwg, kw, dil_h, dil_w);
              const int64_t idx = a_word_index(origin[r], tw, h, w_in, pixel_words, plane_offset);
              const uint64_t v = idx >= 0 ? x[idx] : 0;
              memcpy(sA.data() + tile_offset(bm, r, slot), &v, 8);
            }
          for (int r = 0; r < bn; ++r)
            for (int slot = 0; slot < kChunkWords; ++slot) {
              const int64_t idx = b_word_index(g, bj, pw, np, o0 + r, og,
                                               chunk * kChunkWords + slot, K);
              const uint64_t v = idx >= 0 ? w[idx] : 0;
              memcpy(sB.data() + tile_offset(bn, r, slot), &v, 8);
            }
          if (!binary && chunk == 0)
            for (int32_t& v : acc) v = acc_enter_pair(v, pairs, static_cast<int>(pair));
          for (int wp = 0; wp < warps; ++wp) {
            const int wm = wp / warps_n, wn = wp % warps_n;
            for (int ks = 0; ks < 2; ++ks) {
              std::vector<uint32_t> af(MT * 32 * 4), bf(NT * 32 * 2);
              int addr[32];
              uint32_t regs[32][4];
              for (int mt = 0; mt < MT; ++mt) {
                for (int l = 0; l < 32; ++l) addr[l] = ldsm_a_offset(bm, ks, wm * WM + mt * 16, l);
                ldmatrix_x4(sA, addr, regs);
                memcpy(&af[mt * 128], regs, sizeof(regs));
              }
              for (int p2 = 0; p2 < NT / 2; ++p2) {
                for (int l = 0; l < 32; ++l) addr[l] = ldsm_b_offset(bn, ks, wn * WN + p2 * 16, l);
                ldmatrix_x4(sB, addr, regs);
                for (int l = 0; l < 32; ++l) {
                  bf[((2 * p2) * 32 + l) * 2 + 0] = regs[l][0];
                  bf[((2 * p2) * 32 + l) * 2 + 1] = regs[l][1];
                  bf[((2 * p2 + 1) * 32 + l) * 2 + 0] = regs[l][2];
                  bf[((2 * p2 + 1) * 32 + l) * 2 + 1] = regs[l][3];
                }
              }
              for (int mt = 0; mt < MT; ++mt)
                for (int nt = 0; nt < NT; ++nt)
                  mma_and_popc(reinterpret_cast<int32_t(*)[4]>(A(wp, mt, nt)),
                               reinterpret_cast<const uint32_t(*)[4]>(&af[mt * 128]),
                               reinterpret_cast<const uint32_t(*)[2]>(&bf[nt * 64]));
            }
          }
          if (binary)
            for (int r = 0; r < bm; ++r)
              for (int wd = 0; wd < kChunkWords; ++wd)
                row_pop[r] += __builtin_popcountll(load64(sA, tile_offset(bm, r, wd)));
        }
        if (!binary && total > 0)
          for (int32_t& v : acc) v = acc_finish(v, pairs);
        // epilogue (int32 mode)
        for (int wp = 0; wp < warps; ++wp) {
          const int wm = wp / warps_n, wn = wp % warps_n;
          for (int mt = 0; mt < MT; ++mt)
            for (int nt = 0; nt < NT; ++nt)
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  const int row = wm * WM + mt * 16 + acc_row(l, e);
                  const int col = wn * WN + nt * 8 + acc_col(l, e);
                  const int64_t m = m0 + row, o = o0 + col;
                  if (m >= M || o >= og) continue;
                  int32_t s = A(wp, mt, nt)[l * 4 + e];
                  if (binary) {
                    const RowOrigin r = row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w);
                    const uint64_t mask = valid_taps(r, kh, kw, dil_h, dil_w, h, w_in);
                    const int32_t kv = static_cast<int32_t>(cg * __builtin_popcountll(mask));
                    const int32_t wv = weight_valid_pop(&wpop[(g * og + o) * (taps + 1)],
                                                        static_cast<int>(taps), mask);
                    s = binary_sum(s, kv, row_pop[row], wv);
                  }
                  out[m * out_channels + g * og + o] = s;
                }
        }
      }
  return 0;
}

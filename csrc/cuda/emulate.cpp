// Host emulation of the CUDA conv kernel (conv.cu) for tests without a GPU
// (tests/kernels/test_cuda_emulation.py compiles this with g++ -ffp-contract=off and calls it
// through ctypes).
//
// It runs the kernel block by block (blockIdx.x, blockIdx.y as conv2d_packed launches them), and
// inside a block thread by thread, warp by warp and lane by lane, with the kernel's own index
// functions and constants (conv_index.h): the shared-memory layout (one byte array: kStages stages
// of A and B tiles, then the per-row info), the per-thread cp.async loader mapping (which thread
// copies which word, with zero fill), the stage ring of the pipeline, the ldmatrix row addresses of
// every warp, the Horner plane-pair order, the per-row popcounts of threads tid < BM, and the full
// epilogue of all three output modes (int32, float scale/bias, packed signs with the quad OR and
// the per-word atomicOr). It also checks what a wrong index would silently break on a GPU:
//   - every 8-byte word of a stage's A and B tiles is written by exactly one thread's copy, and
//     all copies land inside that stage (shared memory is poisoned before each block, so a word
//     nobody copies would give wrong sums even without this check);
//   - the stage a load goes to holds no data still to be read, the stage read holds the data of
//     this iteration, and cp.async.wait_group leaves that stage's copy group complete;
//   - every int32 / float output element is written at most once (the tests poison the output, so
//     an element written by nobody fails the comparison).
// The two PTX instructions are emulated from their definitions in the PTX ISA:
//   ldmatrix.x4 .b16: lane l of matrix q gets 32-bit word l%4 of the row whose address lane 8q+l/4
//     supplied;
//   mma.m16n8k256 .b1 .and.popc: d[r][c] += popc(A[r] AND B[c]) over 256 bits, A row r word kw
//     (32 bits) in lane (r%8)*4 + kw%4, register (r/8) + 2*(kw/4); B column c word kw in lane
//     c*4 + kw%4, register kw/4; d[r][c] in lane (r%8)*4 + c/2, register 2*(r/8) + c%2.
// What it cannot show: races, cp.async timing, and whether the hardware matches the PTX text.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "conv_index.h"

using namespace hwq_cuda;

namespace {

enum EmuError : int {
  kOk = 0,
  kBadConfig = 1,
  kTileCoverage = 2,    // a tile word copied by no thread or by several, or a copy outside its stage
  kPipeline = 3,        // a load into a stage still to be read, or a read of a stage not loaded
  kOutputTwice = 4,     // an output element written twice
  kBadOutMode = 5,
  kOutOfBounds = 6,     // a packed-sign word past the end of its row
};

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

// addr: byte offsets into smem that lanes 0..31 supply.
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

// Returns 0 on success, else an EmuError. bm/bn/warps_m/warps_n: the tile configuration (conv.cu
// kConfigs). out_mode 0: int32 (N, OH, OW, O); 1: float32 (N, OH, OW, O); 2: uint64
// (N, OH, OW, words(O)), zero-filled by the caller. scale / bias: per output channel or null.
extern "C" int hwq_emulate_conv(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h,
                                int64_t w_in, int64_t in_channels, int64_t out_channels,
                                int64_t groups, int kh, int kw, int stride_h, int stride_w,
                                int pad_h, int pad_w, int dil_h, int dil_w, int pa, int pw,
                                int binary, int bm, int bn, int warps_m, int warps_n,
                                const float* scale, const float* bias, int out_mode, void* out) {
  if (out_mode < 0 || out_mode > 2) return kBadOutMode;
  const int64_t oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1;
  const int64_t ow = (w_in + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1;
  const int64_t M = n * oh * ow, og = out_channels / groups, cg = in_channels / groups;
  const int64_t cwg = (cg + 63) / 64, taps = static_cast<int64_t>(kh) * kw, K = taps * cwg;
  const int64_t np = ((og + 7) / 8 + 3) / 4 * 4, nchunks = (K + kChunkWords - 1) / kChunkWords;
  const int64_t pixel_words = groups * pa * cwg, cwo = (out_channels + 63) / 64;
  const int WM = bm / warps_m, WN = bn / warps_n, MT = WM / 16, NT = WN / 8;
  // The kernel's static_asserts.
  if (warps_m * warps_n * 32 != kThreads || WM % 16 || WN % 16 || bm % 32 || bn % 32 ||
      bm > kThreads || load_passes(bm) * (kThreads / kChunkWords) != bm ||
      load_passes(bn) * (kThreads / kChunkWords) != bn)
    return kBadConfig;
  if (M == 0 || out_channels == 0) return kOk;
  const PairList pairs = make_pairs(pa, pw, binary != 0);
  const int64_t total = static_cast<int64_t>(pairs.count) * nchunks;
  const int taps_i = static_cast<int>(taps);

  // weight_popcount_kernel, thread idx = (g, o)
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

  // conv2d_packed's grid
  const int blocks_per_group = static_cast<int>((og + bn - 1) / bn);
  const int64_t grid_x = (M + bm - 1) / bm, grid_y = static_cast<int64_t>(blocks_per_group) * groups;

  const int kA = smem_a_bytes(bm), kStage = smem_stage_bytes(bm, bn);
  const int row_info = smem_row_info_offset(bm, bn);
  const int AQ = load_passes(bm), BQ = load_passes(bn);
  const int warps = warps_m * warps_n;
  std::vector<uint8_t> smem(smem_bytes(bm, bn));
  std::vector<int> copies(kStage / 8);
  std::vector<RowOrigin> origin(static_cast<size_t>(kThreads) * AQ);
  std::vector<int32_t> my_row_pop(kThreads);
  std::vector<int32_t> acc(static_cast<size_t>(warps) * MT * NT * 32 * 4);
  auto ACC = [&](int wp, int mt, int nt) { return &acc[(((wp * MT + mt) * NT + nt) * 32) * 4]; };
  std::vector<uint8_t> written;
  if (out_mode != 2) written.assign(static_cast<size_t>(M * out_channels), 0);

  for (int64_t by = 0; by < grid_y; ++by)
    for (int64_t bx = 0; bx < grid_x; ++bx) {
      const int64_t m0 = bx * bm, g = by / blocks_per_group;
      const int64_t o0 = (by % blocks_per_group) * static_cast<int64_t>(bn);
      memset(smem.data(), 0xA5, smem.size());  // uninitialized shared memory
      const int64_t row_mask_off = row_info, row_pop_off = row_info + 8 * bm;
      const int64_t row_kvalid_off = row_pop_off + 4 * bm;

      // loader state per thread
      for (int tid = 0; tid < kThreads; ++tid)
        for (int q = 0; q < AQ; ++q) {
          const int64_t m = m0 + a_load_row(tid, q);
          RowOrigin& o = origin[tid * AQ + q];
          if (m < M) {
            o = row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w);
          } else {
            o.n = 0;
            o.ih0 = -(int64_t{1} << 40);
            o.iw0 = 0;
          }
        }

      // One stage of copies by all threads (cp.async: the copy lands when its group completes;
      // here at once, which the pipeline checks below make equivalent).
      auto load_stage = [&](int64_t it, int stage) -> bool {
        const int64_t pair = it / nchunks, chunk = it - pair * nchunks;
        const int ai = pairs.i[pair], bj = pairs.j[pair];
        const int sa = stage * kStage, sb = sa + kA;
        const int64_t plane_offset = (g * pa + ai) * cwg;
        for (int& c : copies) c = 0;
        auto copy8 = [&](int dst, const uint64_t* src, bool valid) -> bool {
          if (dst < sa || dst + 8 > sa + kStage || (dst - sa) % 8 != 0) return false;
          const uint64_t v = valid ? *src : 0;
          memcpy(smem.data() + dst, &v, 8);
          ++copies[(dst - sa) / 8];
          return true;
        };
        for (int tid = 0; tid < kThreads; ++tid) {
          const int slot = a_load_slot(tid);
          const TapWord tw = tap_word(chunk * kChunkWords + slot, K, cwg, kw, dil_h, dil_w);
          for (int q = 0; q < AQ; ++q) {
            const int row = a_load_row(tid, q);
            const int64_t idx =
                a_word_index(origin[tid * AQ + q], tw, h, w_in, pixel_words, plane_offset);
            if (!copy8(sa + tile_offset(bm, row, slot), idx >= 0 ? x + idx : x, idx >= 0))
              return false;
          }
          const int b_slot = b_load_slot(tid);
          const int64_t kb = chunk * kChunkWords + b_slot;
          for (int q = 0; q < BQ; ++q) {
            const int row = b_load_row(tid, q);
            const int64_t idx = b_word_index(g, bj, pw, np, o0 + row, og, kb, K);
            if (!copy8(sb + tile_offset(bn, row, b_slot), idx >= 0 ? w + idx : w, idx >= 0))
              return false;
          }
        }
        for (int c : copies)
          if (c != 1) return false;
        return true;
      };

      // per-row data of the binary epilogue (threads tid < BM)
      for (int tid = 0; tid < kThreads; ++tid) my_row_pop[tid] = 0;
      if (binary)
        for (int tid = 0; tid < bm; ++tid) {
          const int64_t m = m0 + tid;
          uint64_t mask = 0;
          if (m < M) {
            const RowOrigin r = row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w);
            mask = valid_taps(r, kh, kw, dil_h, dil_w, h, w_in);
          }
          const int32_t kv = static_cast<int32_t>(cg * __builtin_popcountll(mask));
          memcpy(smem.data() + row_mask_off + 8 * tid, &mask, 8);
          memcpy(smem.data() + row_kvalid_off + 4 * tid, &kv, 4);
        }

      for (int32_t& v : acc) v = 0;
      // Pipeline bookkeeping: which iteration's data each stage holds (-1: none), copy groups.
      std::vector<int64_t> holds(kStages, -1);
      int64_t committed = 0;  // cp.async groups committed (one per prologue step / iteration)
      std::vector<int64_t> group_of_stage(kStages, -1);
      for (int s = 0; s < kStages - 1; ++s) {
        if (s < total) {
          if (holds[s] >= 0) return kPipeline;
          if (!load_stage(s, s)) return kTileCoverage;
          holds[s] = s;
          group_of_stage[s] = committed;
        }
        ++committed;
      }
      for (int64_t it = 0; it < total; ++it) {
        // cp.async.wait_group<kStages - 2>: all but the newest kStages - 2 groups are complete.
        const int64_t complete = committed - (kStages - 2);
        const int cur = static_cast<int>(it % kStages);
        if (holds[cur] != it || group_of_stage[cur] >= complete) return kPipeline;
        // __syncthreads(): every thread finished iteration it - 1, so its stage may be refilled.
        if (it > 0) holds[(it - 1) % kStages] = -1;
        {
          const int64_t next = it + kStages - 1;
          if (next < total) {
            const int st = static_cast<int>(next % kStages);
            if (holds[st] >= 0) return kPipeline;  // still to be read
            if (!load_stage(next, st)) return kTileCoverage;
            holds[st] = next;
            group_of_stage[st] = committed;
          }
          ++committed;
        }
        if (!binary) {
          const int64_t pair = it / nchunks;
          if (it == pair * nchunks)
            for (int32_t& v : acc) v = acc_enter_pair(v, pairs, static_cast<int>(pair));
        }
        const int stage_off = cur * kStage;
        const int sa = stage_off, sb = sa + kA;
        for (int wp = 0; wp < warps; ++wp) {
          const int wm = wp / warps_n, wn = wp % warps_n;  // as conv.cu: warp / WARPS_N, % WARPS_N
          for (int ks = 0; ks < 2; ++ks) {
            std::vector<uint32_t> af(MT * 32 * 4), bf(NT * 32 * 2);
            int addr[32];
            uint32_t regs[32][4];
            for (int mt = 0; mt < MT; ++mt) {
              for (int l = 0; l < 32; ++l) addr[l] = sa + ldsm_a_offset(bm, ks, wm * WM + mt * 16, l);
              ldmatrix_x4(smem, addr, regs);
              memcpy(&af[mt * 128], regs, sizeof(regs));
            }
            for (int p2 = 0; p2 < NT / 2; ++p2) {
              for (int l = 0; l < 32; ++l) addr[l] = sb + ldsm_b_offset(bn, ks, wn * WN + p2 * 16, l);
              ldmatrix_x4(smem, addr, regs);
              for (int l = 0; l < 32; ++l) {
                bf[((2 * p2) * 32 + l) * 2 + 0] = regs[l][0];
                bf[((2 * p2) * 32 + l) * 2 + 1] = regs[l][1];
                bf[((2 * p2 + 1) * 32 + l) * 2 + 0] = regs[l][2];
                bf[((2 * p2 + 1) * 32 + l) * 2 + 1] = regs[l][3];
              }
            }
            for (int mt = 0; mt < MT; ++mt)
              for (int nt = 0; nt < NT; ++nt)
                mma_and_popc(reinterpret_cast<int32_t(*)[4]>(ACC(wp, mt, nt)),
                             reinterpret_cast<const uint32_t(*)[4]>(&af[mt * 128]),
                             reinterpret_cast<const uint32_t(*)[2]>(&bf[nt * 64]));
          }
        }
        if (binary)
          for (int tid = 0; tid < bm; ++tid)
            for (int wd = 0; wd < kChunkWords; ++wd)
              my_row_pop[tid] += __builtin_popcountll(load64(smem, stage_off + tile_offset(bm, tid, wd)));
      }
      if (!binary && total > 0)
        for (int32_t& v : acc) v = acc_finish(v, pairs);
      if (binary)
        for (int tid = 0; tid < bm; ++tid)
          memcpy(smem.data() + row_pop_off + 4 * tid, &my_row_pop[tid], 4);

      // ---- epilogue, per warp and lane as conv.cu ----
      const int64_t col_base = g * og + o0;
      for (int wp = 0; wp < warps; ++wp) {
        const int wm = wp / warps_n, wn = wp % warps_n;
        const int64_t word_base = (col_base + wn * WN) >> 6;
        for (int mt = 0; mt < MT; ++mt)
          for (int hr = 0; hr < 2; ++hr) {
            uint64_t lo[32], hi[32];
            bool ok[32];
            int64_t mrow[32];
            for (int lane = 0; lane < 32; ++lane) {
              const int row = wm * WM + mt * 16 + acc_row(lane, hr * 2);
              const int64_t m = m0 + row;
              const bool row_ok = m < M;
              uint64_t bits_lo = 0, bits_hi = 0;
              for (int nt = 0; nt < NT; ++nt)
                for (int e = 0; e < 2; ++e) {
                  const int col = wn * WN + nt * 8 + acc_col(lane, e);
                  const int64_t o = o0 + col;
                  if (!row_ok || o >= og) continue;
                  int32_t s = ACC(wp, mt, nt)[lane * 4 + hr * 2 + e];
                  const int64_t oc = col_base + col;
                  if (binary) {
                    uint64_t mask;
                    int32_t kv, rp;
                    memcpy(&mask, smem.data() + row_mask_off + 8 * row, 8);
                    memcpy(&kv, smem.data() + row_kvalid_off + 4 * row, 4);
                    memcpy(&rp, smem.data() + row_pop_off + 4 * row, 4);
                    const int32_t wv = weight_valid_pop(&wpop[(g * og + o) * (taps + 1)], taps_i, mask);
                    s = binary_sum(s, kv, rp, wv);
                  }
                  if (out_mode == 0) {
                    if (written[m * out_channels + oc]++) return kOutputTwice;
                    static_cast<int32_t*>(out)[m * out_channels + oc] = s;
                  } else {
                    const float y = epilogue_float(s, scale, bias, oc);
                    if (out_mode == 1) {
                      if (written[m * out_channels + oc]++) return kOutputTwice;
                      static_cast<float*>(out)[m * out_channels + oc] = y;
                    } else if (y < 0.0f) {
                      const int64_t wd = (oc >> 6) - word_base;
                      if (wd == 0) bits_lo |= uint64_t{1} << (oc & 63);
                      else bits_hi |= uint64_t{1} << (oc & 63);
                    }
                  }
                }
              lo[lane] = bits_lo;
              hi[lane] = bits_hi;
              ok[lane] = row_ok;
              mrow[lane] = m;
            }
            if (out_mode == 2) {
              // __shfl_xor_sync 1 then 2: every lane of a quad ends with the OR of the quad.
              uint64_t lo2[32], hi2[32];
              for (int lane = 0; lane < 32; ++lane) {
                lo2[lane] = lo[lane] | lo[lane ^ 1];
                hi2[lane] = hi[lane] | hi[lane ^ 1];
              }
              for (int lane = 0; lane < 32; ++lane) {
                lo[lane] = lo2[lane] | lo2[lane ^ 2];
                hi[lane] = hi2[lane] | hi2[lane ^ 2];
              }
              for (int lane = 0; lane < 32; ++lane) {
                if ((lane & 3) != 0 || !ok[lane]) continue;
                uint64_t* o = static_cast<uint64_t*>(out) + mrow[lane] * cwo;
                if ((lo[lane] && (word_base < 0 || word_base >= cwo)) ||
                    (hi[lane] && (word_base + 1 < 0 || word_base + 1 >= cwo)))
                  return kOutOfBounds;
                if (lo[lane]) o[word_base] |= lo[lane];  // atomicOr
                if (hi[lane]) o[word_base + 1] |= hi[lane];
              }
            }
          }
      }
    }
  return kOk;
}

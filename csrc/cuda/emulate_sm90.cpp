// Host emulation of the sm_90a wgmma kernel (conv_sm90.cu) for tests without a GPU
// (tests/kernels/test_cuda_emulation.py compiles this with emulate.cpp, g++ -ffp-contract=off).
//
// Runs the kernel's data flow block by block and thread by thread with the kernel's own index
// functions (wgmma_index.h, conv_index.h):
//   - the K-major weight copy of the pre-pass (repack_weights_kernel) and the weight popcounts;
//   - the shared-memory layout (one byte array, poisoned per block): sm90::kStages stages of all pa
//     activation tiles and all pw weight tiles, the epilogue staging tile over them, the row info;
//   - every thread's 16-byte (or 2 x 8-byte) cp.async copies per stage with zero fill, checking
//     that every word of a stage's tiles is written by exactly one copy and inside its stage;
//   - the stage ring: a load may only go to a stage whose wgmmas have completed (wgmma.wait_group 1
//     at the end of the previous iteration, then the barrier) and the stage read holds this
//     iteration's chunk, its copy group complete (cp.async.wait_group sm90::kStages - 3);
//   - each warpgroup's wgmma.m64nNk256 .b1 .and.popc per k-step and plane pair, reading shared
//     memory only through the matrix descriptors the kernel builds (make_desc), decoded from the
//     PTX ISA's descriptor and layout definitions (desc_address), into the accumulator registers
//     of the pair's set as the PTX ISA's fragment figure places them (the kernel's epilogue then
//     reads them back with its own wg_acc_row / wg_acc_col);
//   - the per-pixel popcounts of the binary pre-pass and their per-row sums, the set combination, the staging of fragments in
//     shared memory, and the copy-out with its binary correction, float scale / bias (no FMA) and
//     packed signs OR-reduced over 16 lanes with one atomicOr per word.
// What it cannot show: races, timing, and whether the hardware matches the PTX text (the swizzle
// of the descriptor in particular: scripts/gpu_check.sh checks both tile layouts on a GPU).
#include <stdint.h>
#include <string.h>

#include <vector>

#include "wgmma_index.h"

using namespace hwq_cuda;
using namespace hwq_cuda::sm90;

namespace {

enum EmuError : int {
  kOk = 0,
  kBadConfig = 1,
  kTileCoverage = 2,
  kPipeline = 3,
  kOutputTwice = 4,
  kBadOutMode = 5,
  kOutOfBounds = 6,
  kDescriptor = 7,  // a descriptor address outside the stage's tile it should read
};

}  // namespace

// layout: 0 swizzled (kSwizzle64), 1 unswizzled (kInterleave). vec16: 1 as the kernel decides
// (16-byte A copies when cwg is even), 0 forces the 8-byte copies. Other arguments as
// hwq_emulate_conv (emulate.cpp).
extern "C" int hwq_emulate_conv_sm90(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h,
                                     int64_t w_in, int64_t in_channels, int64_t out_channels,
                                     int64_t groups, int kh, int kw, int stride_h, int stride_w,
                                     int pad_h, int pad_w, int dil_h, int dil_w, int pa, int pw,
                                     int binary, int layout, int vec16_allowed, const float* scale,
                                     const float* bias, int out_mode, void* out) {
  if (out_mode < 0 || out_mode > 2) return kBadOutMode;
  if (layout != kSwizzle64 && layout != kInterleave) return kBadConfig;
  PairSets pairs;
  if (!make_pair_sets(pa, pw, binary != 0, pairs)) return kBadConfig;
  const int PA = binary ? 1 : pa, PW = binary ? 1 : pw;
  const int BN = block_n(pairs.nsets), NACC = pairs.nsets;
  if (num_sets(pa, pw, binary != 0) != NACC) return kBadConfig;
  const int64_t oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1;
  const int64_t ow = (w_in + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1;
  const int64_t M = n * oh * ow, og = out_channels / groups, cg = in_channels / groups;
  const int64_t cwg = (cg + 63) / 64, taps = static_cast<int64_t>(kh) * kw, K = taps * cwg;
  const int64_t KP = round_up(K, sm90::kChunkWords), ogp = round_up(og, BN);
  const int64_t np = ((og + 7) / 8 + 3) / 4 * 4, nchunks = KP / sm90::kChunkWords;
  const int64_t pixel_words = groups * PA * cwg, cwo = (out_channels + 63) / 64;
  const bool vec16 = vec16_allowed && cwg % 2 == 0;
  if (M == 0 || out_channels == 0) return kOk;
  const int taps_i = static_cast<int>(taps);

  // ---- pre-passes ----
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
  // pixel_popcount_kernel (binary): popc of each (pixel, group)'s words
  std::vector<int32_t> ppop(binary ? static_cast<size_t>(n * h * w_in * groups) : 0);
  for (size_t idx = 0; idx < ppop.size(); ++idx) {
    int32_t s = 0;
    for (int64_t c = 0; c < cwg; ++c) s += __builtin_popcountll(x[idx * cwg + c]);
    ppop[idx] = s;
  }
  std::vector<uint64_t> wk(static_cast<size_t>(groups * PW * ogp * KP));
  for (int64_t idx = 0; idx < static_cast<int64_t>(wk.size()); ++idx) {  // repack_weights_kernel
    const int64_t k = idx % KP, row = idx / KP, o = row % ogp, gj = row / ogp;
    const int64_t g = gj / PW;
    const int j = static_cast<int>(gj - g * PW);
    const int64_t src = b_word_index(g, j, PW, np, o, og, k, K);
    wk[idx] = src >= 0 ? w[src] : 0;
  }

  const int blocks_per_group = static_cast<int>((og + BN - 1) / BN);
  const int64_t grid_x = (M + kBM - 1) / kBM, grid_y = static_cast<int64_t>(blocks_per_group) * groups;
  const int sbytes = stage_bytes(PA, PW, BN), b_off = PA * kBM * kRowBytes;
  const int row_info = row_info_offset(PA, PW, BN);
  constexpr int AQ = kBM / 64;
  const int BQ = BN / 64, NR = BN / 2, P = BN + kEpiPad;
  std::vector<uint8_t> smem(smem_bytes(PA, PW, BN));
  std::vector<int> copies(sbytes / 8);
  std::vector<RowOrigin> origin(static_cast<size_t>(sm90::kThreads) * AQ);
  // acc[wg][set][warp][lane][reg]
  std::vector<int32_t> acc(static_cast<size_t>(2) * NACC * 4 * 32 * NR);
  auto ACC = [&](int wg, int set, int warp, int lane) {
    return &acc[((((static_cast<size_t>(wg) * NACC + set) * 4 + warp) * 32 + lane) * NR)];
  };
  std::vector<int32_t> D(static_cast<size_t>(64) * BN);
  std::vector<uint8_t> written;
  if (out_mode != 2) written.assign(static_cast<size_t>(M * out_channels), 0);

  for (int64_t by = 0; by < grid_y; ++by)
    for (int64_t bx = 0; bx < grid_x; ++bx) {
      const int64_t m0 = bx * kBM, g = by / blocks_per_group;
      const int64_t o0 = (by % blocks_per_group) * static_cast<int64_t>(BN);
      memset(smem.data(), 0xA5, smem.size());
      const int row_mask_off = row_info, row_pop_off = row_info + 8 * kBM;
      const int row_kvalid_off = row_pop_off + 4 * kBM;

      for (int tid = 0; tid < sm90::kThreads; ++tid)
        for (int q = 0; q < AQ; ++q) {
          const int64_t m = m0 + load_row(layout, tid, q);
          RowOrigin& o = origin[tid * AQ + q];
          if (m < M) {
            o = row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w);
          } else {
            o.n = 0;
            o.ih0 = -(int64_t{1} << 40);
            o.iw0 = 0;
          }
        }

      auto load_stage = [&](int64_t kc, int stage) -> bool {
        const int base = stage * sbytes;
        for (int& c : copies) c = 0;
        auto copy = [&](int dst, const uint64_t* src, int bytes, bool valid) -> bool {
          if (dst < base || dst + bytes > base + sbytes || (dst - base) % bytes != 0) return false;
          for (int b = 0; b < bytes / 8; ++b) {
            const uint64_t v = valid ? src[b] : 0;
            memcpy(smem.data() + dst + 8 * b, &v, 8);
            ++copies[(dst - base) / 8 + b];
          }
          return true;
        };
        for (int tid = 0; tid < sm90::kThreads; ++tid) {
          const int chunk = load_chunk(layout, tid);
          const int64_t k0 = kc * sm90::kChunkWords + 2 * chunk;
          const TapWord t0 = tap_word(k0, K, cwg, kw, dil_h, dil_w);
          const TapWord t1 = tap_word(k0 + 1, K, cwg, kw, dil_h, dil_w);
          for (int i = 0; i < PA; ++i) {
            const int64_t plane_offset = (g * PA + i) * cwg;
            for (int q = 0; q < AQ; ++q) {
              const int dst = base + i * kBM * kRowBytes +
                              tile16_offset(layout, kBM, load_row(layout, tid, q), chunk);
              const int64_t i0 = a_word_index(origin[tid * AQ + q], t0, h, w_in, pixel_words, plane_offset);
              if (vec16) {
                // the kernel's precondition for one 16-byte copy: the pair is adjacent in memory
                const int64_t i1 = a_word_index(origin[tid * AQ + q], t1, h, w_in, pixel_words, plane_offset);
                if ((i0 >= 0) != (i1 >= 0) || (i0 >= 0 && (i1 != i0 + 1 || i0 % 2 != 0))) return false;
                if (!copy(dst, i0 >= 0 ? x + i0 : x, 16, i0 >= 0)) return false;
              } else {
                const int64_t i1 = a_word_index(origin[tid * AQ + q], t1, h, w_in, pixel_words, plane_offset);
                if (!copy(dst, i0 >= 0 ? x + i0 : x, 8, i0 >= 0)) return false;
                if (!copy(dst + 8, i1 >= 0 ? x + i1 : x, 8, i1 >= 0)) return false;
              }
            }
          }
          for (int j = 0; j < PW; ++j) {
            const uint64_t* src = wk.data() + ((g * PW + j) * ogp + o0) * KP + k0;
            for (int q = 0; q < BQ; ++q) {
              const int row = load_row(layout, tid, q);
              if (!copy(base + b_off + j * BN * kRowBytes + tile16_offset(layout, BN, row, chunk),
                        src + row * KP, 16, true))
                return false;
            }
          }
        }
        for (int c : copies)
          if (c != 1) return false;
        return true;
      };

      if (binary)
        for (int tid = 0; tid < kBM; ++tid) {
          const int64_t m = m0 + tid;
          uint64_t mask = 0;
          if (m < M) {
            const RowOrigin r = row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w);
            mask = valid_taps(r, kh, kw, dil_h, dil_w, h, w_in);
          }
          const int32_t kv = static_cast<int32_t>(cg * __builtin_popcountll(mask));
          const int32_t rp =
              m < M ? row_popcount(ppop.data(), row_origin(m, oh, ow, stride_h, stride_w, pad_h, pad_w),
                                   mask, kw, dil_h, dil_w, w_in, h, groups, g)
                    : 0;
          memcpy(smem.data() + row_mask_off + 8 * tid, &mask, 8);
          memcpy(smem.data() + row_kvalid_off + 4 * tid, &kv, 4);
          memcpy(smem.data() + row_pop_off + 4 * tid, &rp, 4);
        }
      for (int32_t& v : acc) v = 0;

      // stage ring bookkeeping
      std::vector<int64_t> holds(sm90::kStages, -1), group_of(sm90::kStages, -1);
      int64_t committed = 0;
      int64_t wgmma_done_below = 0;  // wgmma groups < this are complete (both warpgroups alike)
      for (int s = 0; s < sm90::kStages - 2; ++s) {
        if (s < nchunks) {
          if (!load_stage(s, s)) return kTileCoverage;
          holds[s] = s;
          group_of[s] = committed;
        }
        ++committed;
      }
      for (int64_t it = 0; it < nchunks; ++it) {
        const int cur = static_cast<int>(it % sm90::kStages);
        // cp.async.wait_group sm90::kStages - 3
        if (holds[cur] != it || group_of[cur] >= committed - (sm90::kStages - 3)) return kPipeline;
        // barrier, then the load of chunk it + sm90::kStages - 2 into the stage of it - 2
        {
          const int64_t next = it + sm90::kStages - 2;
          if (next < nchunks) {
            const int st = static_cast<int>(next % sm90::kStages);
            if (holds[st] >= 0 && holds[st] >= wgmma_done_below) return kPipeline;  // still read
            if (!load_stage(next, st)) return kTileCoverage;
            holds[st] = next;
            group_of[st] = committed;
          }
          ++committed;
        }
        const int sa = cur * sbytes;
        for (int ks = 0; ks < 2; ++ks)
          for (int i = 0; i < PA; ++i)
            for (int j = 0; j < PW; ++j) {
              const int set = pair_set(pa, pw, binary != 0, i, j);
              for (int wg = 0; wg < 2; ++wg) {
                const uint64_t da = make_desc(static_cast<uint32_t>(sa + i * kBM * kRowBytes +
                                                                    wg_a_offset(layout, wg)),
                                              layout, kBM, ks);
                const uint64_t db = make_desc(static_cast<uint32_t>(sa + b_off + j * BN * kRowBytes),
                                              layout, BN, ks);
                // the operand rows must lie in the tile of plane i (A) / j (B) of this stage
                const int a_lo = sa + i * kBM * kRowBytes, a_hi = a_lo + kBM * kRowBytes;
                const int b_lo = sa + b_off + j * BN * kRowBytes, b_hi = b_lo + BN * kRowBytes;
                for (int r = 0; r < 64; ++r)
                  for (int c = 0; c < 2; ++c) {
                    const uint32_t ad = desc_address(da, r, c);
                    if (static_cast<int>(ad) < a_lo || static_cast<int>(ad) + 16 > a_hi) return kDescriptor;
                  }
                for (int nn = 0; nn < BN; ++nn)
                  for (int c = 0; c < 2; ++c) {
                    const uint32_t bd = desc_address(db, nn, c);
                    if (static_cast<int>(bd) < b_lo || static_cast<int>(bd) + 16 > b_hi) return kDescriptor;
                  }
                for (int r = 0; r < 64; ++r)
                  for (int nn = 0; nn < BN; ++nn) {
                    uint32_t s = 0;
                    for (int c = 0; c < 2; ++c) {
                      uint64_t av[2], bv[2];
                      memcpy(av, smem.data() + desc_address(da, r, c), 16);
                      memcpy(bv, smem.data() + desc_address(db, nn, c), 16);
                      s += __builtin_popcountll(av[0] & bv[0]) + __builtin_popcountll(av[1] & bv[1]);
                    }
                    D[r * BN + nn] = static_cast<int32_t>(s);
                  }
                // D element (r, c) -> its register, from the PTX ISA's wgmma .s32 accumulator
                // figure (written here independently of the kernel's wg_acc_row / wg_acc_col):
                // warp r / 16, lane 4 (r % 8) + (c % 8) / 2, register 4 (c / 8) + 2 ((r % 16) / 8)
                // + c % 2.
                for (int r = 0; r < 64; ++r)
                  for (int cc = 0; cc < BN; ++cc) {
                    int32_t* d = ACC(wg, set, r / 16, 4 * (r % 8) + (cc % 8) / 2);
                    const int reg = 4 * (cc / 8) + 2 * ((r % 16) / 8) + cc % 2;
                    d[reg] = static_cast<int32_t>(static_cast<uint32_t>(d[reg]) +
                                                  static_cast<uint32_t>(D[r * BN + cc]));
                  }
              }
            }
        // wgmma.wait_group 1 at the end of iteration it: groups <= it - 1 complete
        wgmma_done_below = it;
      }
      // ---- epilogue 1: sets combined, fragments -> staging tile at the start of shared memory ----
      for (int wg = 0; wg < 2; ++wg)
        for (int warp = 0; warp < 4; ++warp)
          for (int lane = 0; lane < 32; ++lane)
            for (int reg = 0; reg < NR; ++reg) {
              int32_t sets[kMaxPairs];
              for (int c = 0; c < NACC; ++c) sets[c] = ACC(wg, c, warp, lane)[reg];
              const int32_t v = combine_sets(sets, pairs);  // binary: one set, coefficient 1
              const int row = 64 * wg + wg_acc_row(warp, lane, reg), col = wg_acc_col(lane, reg);
              memcpy(smem.data() + 4 * (row * P + col), &v, 4);
            }

      // ---- epilogue 2: copy-out ----
      const int64_t col_base = g * og + o0;
      for (int pass = 0; pass < epi_passes(BN); ++pass)
        for (int warp = 0; warp < sm90::kThreads / 32; ++warp) {
          uint64_t lo[32], hi[32];
          bool ok[32];
          int64_t mrow[32], wbase[32];
          for (int lane = 0; lane < 32; ++lane) {
            const int tid = warp * 32 + lane;
            const int col = epi_col(BN, tid), row = epi_row(BN, tid, pass);
            const int64_t m = m0 + row;
            const bool row_ok = m < M;
            int ncols = 0;
            float sc[4], bi[4];
            for (int e = 0; e < 4; ++e) {
              const int64_t o = o0 + col + e;
              if (o < og) ncols = e + 1;
              sc[e] = (scale != nullptr && o < og) ? scale[col_base + col + e] : 1.0f;
              bi[e] = (bias != nullptr && o < og) ? bias[col_base + col + e] : 0.0f;
            }
            const int64_t oc0 = col_base + col;
            const int64_t word_base = (col_base + (col & ~63)) >> 6;
            int32_t s[4];
            memcpy(s, smem.data() + 4 * (row * P + col), 16);
            if (binary && row_ok) {
              uint64_t mask;
              int32_t kv, rp;
              memcpy(&mask, smem.data() + row_mask_off + 8 * row, 8);
              memcpy(&kv, smem.data() + row_kvalid_off + 4 * row, 4);
              memcpy(&rp, smem.data() + row_pop_off + 4 * row, 4);
              for (int e = 0; e < ncols; ++e)
                s[e] = binary_sum(s[e], kv, rp,
                                  weight_valid_pop(&wpop[(g * og + o0 + col + e) * (taps + 1)],
                                                   taps_i, mask));
            }
            lo[lane] = hi[lane] = 0;
            ok[lane] = row_ok;
            mrow[lane] = m;
            wbase[lane] = word_base;
            if (out_mode == 2) {
              if (row_ok)
                for (int e = 0; e < ncols; ++e) {
                  float y = static_cast<float>(s[e]);
                  if (scale != nullptr) y = y * sc[e];
                  if (bias != nullptr) y = y + bi[e];
                  if (y < 0.0f) {
                    const int64_t oc = oc0 + e;
                    if ((oc >> 6) == word_base) lo[lane] |= uint64_t{1} << (oc & 63);
                    else hi[lane] |= uint64_t{1} << (oc & 63);
                  }
                }
              continue;
            }
            if (!row_ok) continue;
            for (int e = 0; e < ncols; ++e) {
              const int64_t idx = m * out_channels + oc0 + e;
              if (written[idx]++) return kOutputTwice;
              if (out_mode == 0) {
                static_cast<int32_t*>(out)[idx] = s[e];
              } else {
                float y = static_cast<float>(s[e]);
                if (scale != nullptr) y = y * sc[e];
                if (bias != nullptr) y = y + bi[e];
                static_cast<float*>(out)[idx] = y;
              }
            }
          }
          if (out_mode == 2)
            for (int half = 0; half < 2; ++half) {  // shfl_xor 1, 2, 4, 8 within 16 lanes
              uint64_t l = 0, hh = 0;
              for (int k = 0; k < 16; ++k) {
                l |= lo[16 * half + k];
                hh |= hi[16 * half + k];
              }
              const int lead = 16 * half;
              for (int k = 1; k < 16; ++k)  // the group shares one row and one word_base
                if (ok[lead + k] != ok[lead] || mrow[lead + k] != mrow[lead] ||
                    wbase[lead + k] != wbase[lead])
                  return kOutOfBounds;
              if (!ok[lead]) continue;
              uint64_t* o = static_cast<uint64_t*>(out) + mrow[lead] * cwo;
              if ((l && (wbase[lead] < 0 || wbase[lead] >= cwo)) ||
                  (hh && (wbase[lead] + 1 < 0 || wbase[lead] + 1 >= cwo)))
                return kOutOfBounds;
              if (l) o[wbase[lead]] |= l;
              if (hh) o[wbase[lead] + 1] |= hh;
            }
        }
    }
  return kOk;
}

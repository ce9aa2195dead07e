// Binary and bit-serial convolution / linear on 1-bit tensor cores (sm_80+): implicit GEMM, no
// materialized im2col, mma.sync.m16n8k256 .and.popc, fused epilogue.
//
// One block computes a BM x BN tile of one group's GEMM (rows = output pixels, columns = output
// channels, depth = packed im2col words; conv_index.h). Operands stream through shared memory in
// stages of 8 words (512 bits) with cp.async, kStages deep; an out-of-image tap or a k past the end
// is a zero-filled copy (src-size 0), which is exactly the zero the padding semantics need.
//
// Arithmetic (AND only: XOR measured about six times slower on an H200, where it is emulated):
//   binary      sum (1-2a)(1-2w) over valid taps = K_valid - 2 popc(a) - 2 popc(w) + 4 popc(a AND w);
//               popc(a) per row is counted from the shared-memory tiles during the main loop, popc(w)
//               per (channel, tap) by a pre-pass (weight_popcount_kernel) and corrected per row for
//               out-of-image taps in the epilogue.
//   bit-serial  sum_ij c_ij popc(a_i AND w_j), c_ij = +/-2^(i+j), accumulated in one int32 register
//               set by Horner's scheme over plane pairs (make_pairs in conv_index.h).
// Epilogue: int32 sums, float(s) * scale + bias (multiply then add, no FMA: bit-identical to the CPU
// kernels), or the sign bits of the latter packed for a following binary layer (atomicOr per word,
// since a 64-channel word can span blocks and groups).
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>

#include "conv_index.h"
#include "conv_sm90.h"
#include "hwq_cuda.h"

namespace hwq_cuda {
namespace {

constexpr int kMaxDevices = 64;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 8-byte async copy global -> shared; with valid = false nothing is read and 8 zero bytes are written.
__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 8 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// d += popc(A AND B) for a 16 x 8 tile over 256 bits. Fragments (PTX ISA, m16n8k256 .b1):
// a0/a1: rows g / g+8, bits 32*t..32*t+31; a2/a3: the same rows, bits 128 + 32*t..; b0/b1: column g,
// bits 32*t.. and 128 + 32*t..; d0,d1: row g, columns 2t, 2t+1; d2,d3: row g+8 (g = lane/4, t = lane%4).
__device__ __forceinline__ void mma_and_popc(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
  asm("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct Args {
  const uint64_t* x;
  const uint64_t* w;
  int64_t h, w_in, oh, ow, M;            // M = N * OH * OW
  int64_t og, cg, cwg, K, np, out_channels, cwo;
  int64_t pixel_words;                   // G * pa * cwg
  int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, pa, pw, taps;
  int blocks_per_group;                  // ceil(og / BN)
  int64_t nchunks;                       // ceil(K / kChunkWords)
  const float* scale;
  const float* bias;
  void* out;
  const int32_t* wpop;                   // binary: (G * og, taps + 1)
  int out_mode;                          // 0 int32, 1 float, 2 packed signs (uniform branch)
};

template <int BM, int BN>
struct Smem {  // the layout of conv_index.h (smem_*), shared with the host emulation
  static constexpr int kA = smem_a_bytes(BM);
  static constexpr int kStage = smem_stage_bytes(BM, BN);
  static constexpr int kRowInfo = smem_row_info_offset(BM, BN);
  static constexpr int kBytes = smem_bytes(BM, BN);
};

template <int BM, int BN, int WARPS_M, int WARPS_N, int MIN_BLOCKS, bool BINARY>
__global__ void __launch_bounds__(kThreads, MIN_BLOCKS)
    conv_kernel(const Args args, const PairList pairs) {
  static_assert(WARPS_M * WARPS_N * 32 == kThreads, "8 warps");
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int MT = WM / 16, NT = WN / 8;              // mma tiles per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile: multiples of 16");
  static_assert(BM % 32 == 0 && BN % 32 == 0 && BM <= kThreads, "block tile");
  using S = Smem<BM, BN>;

  extern __shared__ __align__(128) unsigned char smem[];
  uint64_t* row_mask = reinterpret_cast<uint64_t*>(smem + S::kRowInfo);
  int32_t* row_pop = reinterpret_cast<int32_t*>(row_mask + BM);
  int32_t* row_kvalid = row_pop + BM;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t g = blockIdx.y / args.blocks_per_group;
  const int64_t o0 = static_cast<int64_t>(blockIdx.y % args.blocks_per_group) * BN;

  // ---- loader state: thread tid copies word a_load_slot(tid) of A rows a_load_row(tid, q) and
  // word b_load_slot(tid) of B rows b_load_row(tid, q) (conv_index.h; every tile word once) ----
  const int slot = a_load_slot(tid);
  constexpr int AQ = load_passes(BM), BQ = load_passes(BN);
  static_assert(AQ * (kThreads / kChunkWords) == BM && BQ * (kThreads / kChunkWords) == BN,
                "loader passes cover the tiles");
  RowOrigin origin[AQ];
#pragma unroll
  for (int q = 0; q < AQ; ++q) {
    const int64_t m = m0 + a_load_row(tid, q);
    if (m < args.M) {
      origin[q] = row_origin(m, args.oh, args.ow, args.stride_h, args.stride_w, args.pad_h, args.pad_w);
    } else {  // past the last row: an origin whose every tap is outside the image (zero words)
      origin[q].n = 0;
      origin[q].ih0 = -(int64_t{1} << 40);
      origin[q].iw0 = 0;
    }
  }
  const int b_slot = b_load_slot(tid);

  auto load_stage = [&](int64_t it, int stage) {
    const int64_t pair = it / args.nchunks, chunk = it - pair * args.nchunks;
    const int ai = pairs.i[pair], bj = pairs.j[pair];
    const uint32_t sa = smem_addr(smem + stage * S::kStage);
    const uint32_t sb = sa + S::kA;
    const int64_t plane_offset = (g * args.pa + ai) * args.cwg;
    const TapWord tw = tap_word(chunk * kChunkWords + slot, args.K, args.cwg, args.kw, args.dil_h,
                                args.dil_w);
#pragma unroll
    for (int q = 0; q < AQ; ++q) {
      const int row = a_load_row(tid, q);
      const int64_t idx = a_word_index(origin[q], tw, args.h, args.w_in, args.pixel_words, plane_offset);
      cp_async8(sa + tile_offset(BM, row, slot), idx >= 0 ? args.x + idx : args.x, idx >= 0);
    }
    const int64_t kb = chunk * kChunkWords + b_slot;
#pragma unroll
    for (int q = 0; q < BQ; ++q) {
      const int row = b_load_row(tid, q);
      const int64_t idx = b_word_index(g, bj, args.pw, args.np, o0 + row, args.og, kb, args.K);
      cp_async8(sb + tile_offset(BN, row, b_slot), idx >= 0 ? args.w + idx : args.w, idx >= 0);
    }
  };

  // ---- per-row data of the binary epilogue ----
  int32_t my_row_pop = 0;  // thread tid < BM: popc(a) of row tid, summed over the stages
  if (BINARY && tid < BM) {
    const int64_t m = m0 + tid;
    uint64_t mask = 0;
    if (m < args.M) {
      const RowOrigin r =
          row_origin(m, args.oh, args.ow, args.stride_h, args.stride_w, args.pad_h, args.pad_w);
      mask = valid_taps(r, args.kh, args.kw, args.dil_h, args.dil_w, args.h, args.w_in);
    }
    row_mask[tid] = mask;
    row_kvalid[tid] = static_cast<int32_t>(args.cg * __popcll(mask));
  }

  int32_t acc[MT][NT][4];
#pragma unroll
  for (int a = 0; a < MT; ++a)
#pragma unroll
    for (int b = 0; b < NT; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0;

  const int64_t total = static_cast<int64_t>(pairs.count) * args.nchunks;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < total) load_stage(s, s);
    cp_async_commit();
  }

  for (int64_t it = 0; it < total; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage it is in shared memory for all; stage it-1 is free to overwrite
    {
      const int64_t next = it + kStages - 1;
      if (next < total) load_stage(next, static_cast<int>(next % kStages));
      cp_async_commit();
    }
    if (!BINARY) {
      const int64_t pair = it / args.nchunks;
      if (it == pair * args.nchunks) {  // first chunk of a plane pair: Horner step
#pragma unroll
        for (int a = 0; a < MT; ++a)
#pragma unroll
          for (int b = 0; b < NT; ++b)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][b][c] = acc_enter_pair(acc[a][b][c], pairs, static_cast<int>(pair));
      }
    }
    const unsigned char* stage = smem + (it % kStages) * S::kStage;
    const uint32_t sa = smem_addr(stage), sb = sa + S::kA;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(sa + ldsm_a_offset(BM, ks, wm * WM + mt * 16, lane), af[mt][0], af[mt][1],
                    af[mt][2], af[mt][3]);
#pragma unroll
      for (int np2 = 0; np2 < NT / 2; ++np2)
        ldmatrix_x4(sb + ldsm_b_offset(BN, ks, wn * WN + np2 * 16, lane), bf[2 * np2][0],
                    bf[2 * np2][1], bf[2 * np2 + 1][0], bf[2 * np2 + 1][1]);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_and_popc(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
    if (BINARY && tid < BM) {  // popc(a) of row tid: its 8 words of this stage
      const uint64_t* words = reinterpret_cast<const uint64_t*>(stage);
#pragma unroll
      for (int wd = 0; wd < kChunkWords; ++wd) my_row_pop += __popcll(words[tile_offset(BM, tid, wd) >> 3]);
    }
  }
  cp_async_wait<0>();
  if (!BINARY && total > 0) {
#pragma unroll
    for (int a = 0; a < MT; ++a)
#pragma unroll
      for (int b = 0; b < NT; ++b)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[a][b][c] = acc_finish(acc[a][b][c], pairs);
  }
  if (BINARY && tid < BM) row_pop[tid] = my_row_pop;
  __syncthreads();

  // ---- epilogue ----
  const int tq = lane & 3;
  const int64_t col_base = g * args.og + o0;  // global output channel of tile column 0
  const int64_t word_base = (col_base + wn * WN) >> 6;  // sign mode: first word this warp touches
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int row = wm * WM + mt * 16 + acc_row(lane, hr * 2);
      const int64_t m = m0 + row;
      const bool row_ok = m < args.M;
      uint64_t bits_lo = 0, bits_hi = 0;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = wn * WN + nt * 8 + acc_col(lane, e);
          const int64_t o = o0 + col;
          if (!row_ok || o >= args.og) continue;
          int32_t s = acc[mt][nt][hr * 2 + e];
          const int64_t oc = col_base + col;
          if (BINARY) {
            const int32_t wv =
                weight_valid_pop(args.wpop + (g * args.og + o) * (args.taps + 1), args.taps, row_mask[row]);
            s = binary_sum(s, row_kvalid[row], row_pop[row], wv);
          }
          if (args.out_mode == 0) {
            static_cast<int32_t*>(args.out)[m * args.out_channels + oc] = s;
          } else {
            const float y = epilogue_float(s, args.scale, args.bias, oc);
            if (args.out_mode == 1) {
              static_cast<float*>(args.out)[m * args.out_channels + oc] = y;
            } else if (y < 0.0f) {  // NaN and 0 give +1 (bit 0), as the CPU
              const int64_t wd = (oc >> 6) - word_base;
              if (wd == 0) bits_lo |= uint64_t{1} << (oc & 63);
              else bits_hi |= uint64_t{1} << (oc & 63);
            }
          }
        }
      if (args.out_mode == 2) {
        // The 4 threads of a quad hold one row's columns: OR them, one atomic per word.
        bits_lo |= __shfl_xor_sync(0xffffffffu, bits_lo, 1);
        bits_lo |= __shfl_xor_sync(0xffffffffu, bits_lo, 2);
        bits_hi |= __shfl_xor_sync(0xffffffffu, bits_hi, 1);
        bits_hi |= __shfl_xor_sync(0xffffffffu, bits_hi, 2);
        if (tq == 0 && row_ok) {
          unsigned long long* out = static_cast<unsigned long long*>(args.out) + m * args.cwo;
          if (bits_lo) atomicOr(out + word_base, static_cast<unsigned long long>(bits_lo));
          if (bits_hi) atomicOr(out + word_base + 1, static_cast<unsigned long long>(bits_hi));
        }
      }
    }
}

// Per (group, output channel): popc of the weight's plane-0 words of each tap, and their total at
// index taps (binary only: one plane).
__global__ void weight_popcount_kernel(const uint64_t* w, int64_t groups, int64_t og, int64_t np,
                                       int64_t K, int64_t cwg, int taps, int32_t* wpop) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= groups * og) return;
  const int64_t g = idx / og, o = idx - g * og;
  const uint64_t* row = w + ((g * np + (o >> 3)) * K) * 8 + (o & 7);
  int32_t total = 0;
  for (int t = 0; t < taps; ++t) {
    int32_t s = 0;
    for (int64_t cw = 0; cw < cwg; ++cw) s += __popcll(row[(t * cwg + cw) * 8]);
    wpop[idx * (taps + 1) + t] = s;
    total += s;
  }
  wpop[idx * (taps + 1) + taps] = total;
}

// ---- tile configurations ----------------------------------------------------------------------

struct Config {
  const char* name;
  int bm, bn;
};
// 0: 128 x 128 block, 2 x 4 warps of 64 x 32, two blocks per SM (64 accumulators per thread);
// 1: 128 x 256 block, 2 x 4 warps of 64 x 64, one block per SM: half the shared-memory traffic per
//    mma and fewer L2 reads per output, for wide layers and big GEMMs.
const Config kConfigs[] = {{"128x128/64x32", 128, 128}, {"128x256/64x64", 128, 256}};
constexpr int kNumConfigs = 2;

template <int BM, int BN, int WARPS_M, int WARPS_N, int MIN_BLOCKS, bool BINARY>
cudaError_t launch_one(const Args& a, const PairList& pairs, dim3 grid, cudaStream_t stream) {
  auto kernel = conv_kernel<BM, BN, WARPS_M, WARPS_N, MIN_BLOCKS, BINARY>;
  const int bytes = Smem<BM, BN>::kBytes;
  // More than 48 KB of dynamic shared memory needs an opt-in, once per device and kernel. Done on
  // the first call only, so that calls during CUDA-graph capture (after a warm-up call) make no
  // driver calls besides the launch.
  static std::atomic<bool> opted_in[kMaxDevices];
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (device >= kMaxDevices || !opted_in[device].load()) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return err;
    if (device < kMaxDevices) opted_in[device].store(true);
  }
  kernel<<<grid, kThreads, bytes, stream>>>(a, pairs);
  return cudaGetLastError();
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int MIN_BLOCKS>
cudaError_t launch_config(const Args& a, const PairList& pairs, bool binary, dim3 grid,
                          cudaStream_t stream) {
  if (binary) return launch_one<BM, BN, WARPS_M, WARPS_N, MIN_BLOCKS, true>(a, pairs, grid, stream);
  return launch_one<BM, BN, WARPS_M, WARPS_N, MIN_BLOCKS, false>(a, pairs, grid, stream);
}

}  // namespace

cudaError_t weight_popcounts(const uint64_t* w, int64_t groups, int64_t og, int64_t np, int64_t K,
                             int64_t cwg, int taps, int32_t* wpop, cudaStream_t stream) {
  const int64_t rows = groups * og;
  weight_popcount_kernel<<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(
      w, groups, og, np, K, cwg, taps, wpop);
  return cudaGetLastError();
}

const char* path_name(int path) {
  switch (path) {
    case 0: return "mma.sync";
    case 1: return "wgmma";
    case 2: return "wgmma-noswizzle";
    default: return "auto";
  }
}

bool wgmma_usable(const ConvParams& p) { return sm90::usable(p); }

int num_configs() { return kNumConfigs; }
const char* config_name(int config) {
  return config >= 0 && config < kNumConfigs ? kConfigs[config].name : "auto";
}

int64_t conv2d_workspace_ints(const ConvParams& p) {
  if (p.path != 0 && sm90::usable(p)) return sm90::workspace_ints(p);
  if (!p.binary) return 0;
  return p.out_channels * (static_cast<int64_t>(p.kh) * p.kw + 1);
}

cudaError_t conv2d_packed(const ConvParams& p, cudaStream_t stream) {
  const int64_t og = p.out_channels / p.groups, cg = p.in_channels / p.groups;
  const int64_t cwg = (cg + 63) / 64, taps = static_cast<int64_t>(p.kh) * p.kw, K = taps * cwg;
  const int64_t M = p.n * p.oh * p.ow;
  if (M == 0 || p.out_channels == 0) return cudaSuccess;
  if (p.path != 0 && sm90::usable(p)) return sm90::conv2d_packed(p, stream);
  if (p.path > 0) return cudaErrorNotSupported;  // wgmma asked for where it cannot run

  int config = p.config;
  if (config < 0 || config >= kNumConfigs) {
    // Auto: the wide tile only where it still gives every SM a couple of blocks (132 SMs on H100/H200).
    const int64_t wide_blocks = (M + 127) / 128 * ((og + 255) / 256) * p.groups;
    config = (og >= 256 && wide_blocks >= 264) ? 1 : 0;
  }
  const int bn = kConfigs[config].bn, bm = kConfigs[config].bm;

  Args a;
  a.x = p.x;
  a.w = p.w;
  a.h = p.h;
  a.w_in = p.w_in;
  a.oh = p.oh;
  a.ow = p.ow;
  a.M = M;
  a.og = og;
  a.cg = cg;
  a.cwg = cwg;
  a.K = K;
  a.np = ((og + 7) / 8 + 3) / 4 * 4;
  a.out_channels = p.out_channels;
  a.cwo = (p.out_channels + 63) / 64;
  a.pixel_words = p.groups * p.pa * cwg;
  a.kh = p.kh;
  a.kw = p.kw;
  a.stride_h = p.stride_h;
  a.stride_w = p.stride_w;
  a.pad_h = p.pad_h;
  a.pad_w = p.pad_w;
  a.dil_h = p.dil_h;
  a.dil_w = p.dil_w;
  a.pa = p.pa;
  a.pw = p.pw;
  a.taps = static_cast<int>(taps);
  a.blocks_per_group = static_cast<int>((og + bn - 1) / bn);
  a.nchunks = (K + kChunkWords - 1) / kChunkWords;
  a.scale = p.scale;
  a.bias = p.bias;
  a.out = p.out;
  a.wpop = p.workspace;
  a.out_mode = p.out_mode;

  const int64_t grid_x = (M + bm - 1) / bm, grid_y = a.blocks_per_group * p.groups;
  if (grid_x > 2147483647LL || grid_y > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));

  if (p.binary) {
    const cudaError_t err =
        weight_popcounts(p.w, p.groups, og, a.np, K, cwg, a.taps, p.workspace, stream);
    if (err != cudaSuccess) return err;
  }
  const PairList pairs = make_pairs(p.pa, p.pw, p.binary);
  if (config == 0) return launch_config<128, 128, 2, 4, 2>(a, pairs, p.binary, grid, stream);
  return launch_config<128, 256, 2, 4, 1>(a, pairs, p.binary, grid, stream);
}

}  // namespace hwq_cuda

// Binary and bit-serial convolution / linear on Hopper's warpgroup tensor cores (sm_90a):
// wgmma.mma_async m64nNk256 .b1 .and.popc with both operands in shared memory (descriptors), a
// 16-byte cp.async pipeline kStages deep, all plane pairs of a bit-serial product on one pass over
// the tiles, and an epilogue staged through shared memory so that each warp writes contiguous runs
// of output rows. Index arithmetic and layouts: wgmma_index.h (shared with the host emulator).
//
// Built for every arch in the extension, but its body exists only in the sm_90a image (wgmma needs
// the "a" target); conv.cu calls it only where the loaded image of this kernel is sm_90 machine code
// (cudaFuncGetAttributes binaryVersion 90) and the product has <= 4 plane pairs, else the sm_80
// mma.sync kernel runs.
//
// Arithmetic as conv.cu: binary sums from the AND count (binary_sum), bit-serial sums as
// sum_c coef[c] * acc[c] over the accumulator sets of make_pair_sets, float epilogue without FMA.
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>

#include "conv_index.h"
#include "conv_sm90.h"
#include "wgmma_index.h"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HWQ_SM90A 1
#include "wgmma_b1.h"
#else
#define HWQ_SM90A 0
#endif

namespace hwq_cuda {
namespace sm90 {
namespace {

constexpr int kMaxDevices = 64;

struct Args {
  const uint64_t* x;     // packed activations (N, H, W, G, pa, cwg)
  const uint64_t* wk;    // weights repacked K-major: (G, pw, OGP, KP)
  int64_t h, w_in, oh, ow, M;
  int64_t og, ogp, cg, cwg, K, KP, out_channels, cwo, pixel_words;
  int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, pa, pw, taps;
  int blocks_per_group;
  int64_t nchunks;       // KP / kChunkWords
  int stage_bytes, row_info;
  bool vec16;            // A words come in aligned pairs: one 16-byte copy instead of two 8-byte
  const float* scale;
  const float* bias;
  void* out;
  const int32_t* wpop;   // binary: (G * og, taps + 1)
  const int32_t* ppop;   // binary: popc of each pixel's words per group, (N, H, W, G)
  int64_t groups;
  int out_mode;
};

#if HWQ_SM90A
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 8 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// cp.async writes shared memory through the generic proxy, wgmma reads it through the async
// proxy: each writer fences before the barrier that publishes the stage.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void acc_fence(int32_t (&d)[N]) {  // keep the compiler off the registers
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}
#endif

template <int BN, int NACC, bool BINARY, int LAYOUT, int PA, int PW>
__global__ void __launch_bounds__(kThreads, 1) conv_sm90_kernel(const Args a, const PairSets pairs) {
#if HWQ_SM90A
  constexpr int NR = BN / 2;  // accumulator registers per set and thread
  extern __shared__ __align__(1024) unsigned char smem[];
  uint64_t* row_mask = reinterpret_cast<uint64_t*>(smem + a.row_info);
  int32_t* row_pop = reinterpret_cast<int32_t*>(row_mask + kBM);
  int32_t* row_kvalid = row_pop + kBM;

  const int tid = threadIdx.x, lane = tid & 31, wg = tid >> 7, warp = (tid >> 5) & 3;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t g = blockIdx.y / a.blocks_per_group;
  const int64_t o0 = static_cast<int64_t>(blockIdx.y % a.blocks_per_group) * BN;
  const int b_off = PA * kBM * kRowBytes;
  static_assert(num_sets(PA, PW, BINARY) == NACC && block_n(NACC) == BN, "sets / tile");

  // ---- loader state (wgmma_index.h: load_row / load_chunk; every tile chunk once) ----
  constexpr int AQ = kBM / 64, BQ = BN / 64;
  const int chunk = load_chunk(LAYOUT, tid);
  RowOrigin origin[AQ];
#pragma unroll
  for (int q = 0; q < AQ; ++q) {
    const int64_t m = m0 + load_row(LAYOUT, tid, q);
    if (m < a.M) {
      origin[q] = row_origin(m, a.oh, a.ow, a.stride_h, a.stride_w, a.pad_h, a.pad_w);
    } else {  // past the last row: every tap outside the image (zero words)
      origin[q].n = 0;
      origin[q].ih0 = -(int64_t{1} << 40);
      origin[q].iw0 = 0;
    }
  }

  auto load_stage = [&](int64_t kc, int stage) {
    const uint32_t base = smem_u32(smem + stage * a.stage_bytes);
    const int64_t k0 = kc * kChunkWords + 2 * chunk;
    const TapWord t0 = tap_word(k0, a.K, a.cwg, a.kw, a.dil_h, a.dil_w);
    const TapWord t1 = tap_word(k0 + 1, a.K, a.cwg, a.kw, a.dil_h, a.dil_w);
    for (int i = 0; i < PA; ++i) {
      const int64_t plane_offset = (g * PA + i) * a.cwg;
#pragma unroll
      for (int q = 0; q < AQ; ++q) {
        const uint32_t dst = base + i * kBM * kRowBytes +
                             tile16_offset(LAYOUT, kBM, load_row(LAYOUT, tid, q), chunk);
        const int64_t i0 = a_word_index(origin[q], t0, a.h, a.w_in, a.pixel_words, plane_offset);
        if (a.vec16) {  // words k0, k0 + 1: same tap, adjacent, 16-byte aligned (cwg even)
          cp_async16(dst, i0 >= 0 ? a.x + i0 : a.x, i0 >= 0);
        } else {
          const int64_t i1 = a_word_index(origin[q], t1, a.h, a.w_in, a.pixel_words, plane_offset);
          cp_async8(dst, i0 >= 0 ? a.x + i0 : a.x, i0 >= 0);
          cp_async8(dst + 8, i1 >= 0 ? a.x + i1 : a.x, i1 >= 0);
        }
      }
    }
    for (int j = 0; j < PW; ++j) {
      const uint64_t* src = a.wk + ((g * PW + j) * a.ogp + o0) * a.KP + k0;
#pragma unroll
      for (int q = 0; q < BQ; ++q) {
        const int row = load_row(LAYOUT, tid, q);
        cp_async16(base + b_off + j * BN * kRowBytes + tile16_offset(LAYOUT, BN, row, chunk),
                   src + row * a.KP, true);
      }
    }
  };

  // ---- per-row data of the binary epilogue ----
  if (BINARY && tid < kBM) {
    const int64_t m = m0 + tid;
    uint64_t mask = 0;
    if (m < a.M) {
      const RowOrigin r = row_origin(m, a.oh, a.ow, a.stride_h, a.stride_w, a.pad_h, a.pad_w);
      mask = valid_taps(r, a.kh, a.kw, a.dil_h, a.dil_w, a.h, a.w_in);
    }
    row_mask[tid] = mask;
    row_kvalid[tid] = static_cast<int32_t>(a.cg * __popcll(mask));
    row_pop[tid] = m < a.M ? row_popcount(a.ppop, row_origin(m, a.oh, a.ow, a.stride_h, a.stride_w,
                                                               a.pad_h, a.pad_w),
                                          mask, a.kw, a.dil_h, a.dil_w, a.w_in, a.h, a.groups, g)
                           : 0;
  }

  int32_t acc[NACC][NR];
#pragma unroll
  for (int c = 0; c < NACC; ++c)
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[c][r] = 0;

  const int64_t total = a.nchunks;
#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (s < total) load_stage(s, s);
    cp_async_commit();
  }
  for (int64_t it = 0; it < total; ++it) {
    cp_async_wait<kStages - 3>();  // this thread's copies of stage `it` have landed
    fence_proxy_async();
    __syncthreads();  // everyone's copies of `it` are visible; every warpgroup finished it - 2
    {
      const int64_t next = it + kStages - 2;
      if (next < total) load_stage(next, static_cast<int>(next % kStages));
      cp_async_commit();
    }
    const int stage = static_cast<int>(it % kStages);
    const uint32_t sa = smem_u32(smem + stage * a.stage_bytes);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 2; ++ks)
#pragma unroll
      for (int i = 0; i < PA; ++i)
#pragma unroll
        for (int j = 0; j < PW; ++j) {
          const uint64_t da = make_desc(sa + i * kBM * kRowBytes + wg_a_offset(LAYOUT, wg), LAYOUT,
                                        kBM, ks);
          const uint64_t db = make_desc(sa + b_off + j * BN * kRowBytes, LAYOUT, BN, ks);
          wgmma_b1<BN>(acc[pair_set(PA, PW, BINARY, i, j)], da, db);
        }
    wgmma_commit();
#pragma unroll
    for (int c = 0; c < NACC; ++c) acc_fence(acc[c]);
    wgmma_wait<1>();  // iteration it - 1 is complete: its stage may be refilled after the barrier
  }
  wgmma_wait<0>();
#pragma unroll
  for (int c = 0; c < NACC; ++c) acc_fence(acc[c]);
  cp_async_wait<0>();
  __syncthreads();  // the stages are free: reuse them as the epilogue staging tile

  // ---- epilogue 1: sets combined, fragments -> shared memory (kBM x (BN + kEpiPad) int32) ----
  int32_t* epi = reinterpret_cast<int32_t*>(smem);
  constexpr int P = BN + kEpiPad;
#pragma unroll
  for (int r = 0; r < NR; r += 2) {
    int32_t v[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      int32_t sets[NACC];
#pragma unroll
      for (int c = 0; c < NACC; ++c) sets[c] = acc[c][r + e];
      v[e] = combine_sets(sets, pairs);  // binary: one set, coefficient 1
    }
    const int row = 64 * wg + wg_acc_row(warp, lane, r), col = wg_acc_col(lane, r);
    *reinterpret_cast<int2*>(epi + row * P + col) = make_int2(v[0], v[1]);
  }
  __syncthreads();

  // ---- epilogue 2: rows of shared memory -> output (binary correction, scale / bias, signs) ----
  const int col = epi_col(BN, tid);
  const int64_t col_base = g * a.og + o0;  // global output channel of tile column 0
  int ncols = 0;                           // valid columns of this thread's 4
  float sc[4], bi[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int64_t o = o0 + col + e;
    if (o < a.og) ncols = e + 1;
    sc[e] = (a.scale != nullptr && o < a.og) ? a.scale[col_base + col + e] : 1.0f;
    bi[e] = (a.bias != nullptr && o < a.og) ? a.bias[col_base + col + e] : 0.0f;
  }
  const int64_t oc0 = col_base + col;
  const bool vec_out = ncols == 4 && (a.out_channels & 3) == 0 && (oc0 & 3) == 0;
  const int64_t word_base = (col_base + (col & ~63)) >> 6;  // sign mode: this 16-lane group's words
  for (int pass = 0; pass < epi_passes(BN); ++pass) {
    const int row = epi_row(BN, tid, pass);
    const int64_t m = m0 + row;
    const bool row_ok = m < a.M;
    const int4 raw = *reinterpret_cast<const int4*>(epi + row * P + col);
    int32_t s[4] = {raw.x, raw.y, raw.z, raw.w};
    if (BINARY && row_ok) {
      const uint64_t mask = row_mask[row];
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (e < ncols)
          s[e] = binary_sum(s[e], row_kvalid[row], row_pop[row],
                            weight_valid_pop(a.wpop + (g * a.og + o0 + col + e) * (a.taps + 1),
                                             a.taps, mask));
    }
    if (a.out_mode == 2) {
      uint64_t lo = 0, hi = 0;
      if (row_ok)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (e >= ncols) continue;
          float y = static_cast<float>(s[e]);
          if (a.scale != nullptr) y = __fmul_rn(y, sc[e]);
          if (a.bias != nullptr) y = __fadd_rn(y, bi[e]);
          if (y < 0.0f) {  // NaN and 0 give bit 0 (+1), as the CPU
            const int64_t oc = oc0 + e;
            if ((oc >> 6) == word_base) lo |= uint64_t{1} << (oc & 63);
            else hi |= uint64_t{1} << (oc & 63);
          }
        }
#pragma unroll
      for (int sh = 1; sh < 16; sh <<= 1) {
        lo |= __shfl_xor_sync(0xffffffffu, lo, sh);
        hi |= __shfl_xor_sync(0xffffffffu, hi, sh);
      }
      if ((lane & 15) == 0 && row_ok) {
        unsigned long long* out = static_cast<unsigned long long*>(a.out) + m * a.cwo;
        if (lo) atomicOr(out + word_base, static_cast<unsigned long long>(lo));
        if (hi) atomicOr(out + word_base + 1, static_cast<unsigned long long>(hi));
      }
      continue;
    }
    if (!row_ok) continue;
    if (a.out_mode == 0) {
      int32_t* out = static_cast<int32_t*>(a.out) + m * a.out_channels + oc0;
      if (vec_out) {
        *reinterpret_cast<int4*>(out) = make_int4(s[0], s[1], s[2], s[3]);
      } else {
        for (int e = 0; e < ncols; ++e) out[e] = s[e];
      }
    } else {
      float y[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        y[e] = static_cast<float>(s[e]);
        if (a.scale != nullptr) y[e] = __fmul_rn(y[e], sc[e]);
        if (a.bias != nullptr) y[e] = __fadd_rn(y[e], bi[e]);
      }
      float* out = static_cast<float*>(a.out) + m * a.out_channels + oc0;
      if (vec_out) {
        *reinterpret_cast<float4*>(out) = make_float4(y[0], y[1], y[2], y[3]);
      } else {
        for (int e = 0; e < ncols; ++e) out[e] = y[e];
      }
    }
  }
#else
  __trap();  // not sm_90a machine code: conv.cu never launches this (binaryVersion check)
#endif
}

// popc of each pixel's plane-0 words per group (binary only): ppop (N, H, W, G). The binary
// epilogue's popc(a) of a GEMM row is the sum over its in-image taps (row_popcount), so the main
// loop has no work besides the copies and the wgmmas.
__global__ void pixel_popcount_kernel(const uint64_t* x, int64_t pixels_groups, int64_t cwg,
                                      int32_t* ppop) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < pixels_groups; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t* src = x + idx * cwg;  // binary: one plane, so (pixel, group) words are contiguous
    int32_t s = 0;
    for (int64_t c = 0; c < cwg; ++c) s += __popcll(src[c]);
    ppop[idx] = s;
  }
}

// Weights (G, pw, np, K, 8) -> K-major (G, pw, OGP, KP), zero past og and K. Thread per output word,
// k fastest (coalesced writes; the reads are 8-word strided, from a small tensor).
__global__ void repack_weights_kernel(const uint64_t* w, int64_t groups, int pw, int64_t og,
                                      int64_t np, int64_t K, int64_t ogp, int64_t KP,
                                      uint64_t* wk) {
  const int64_t total = groups * pw * ogp * KP;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = idx % KP, row = idx / KP, o = row % ogp, gj = row / ogp;
    const int64_t g = gj / pw;
    const int j = static_cast<int>(gj - g * pw);
    const int64_t src = b_word_index(g, j, pw, np, o, og, k, K);
    wk[idx] = src >= 0 ? w[src] : 0;
  }
}

template <int BN, int NACC, bool BINARY, int LAYOUT, int PA, int PW>
cudaError_t launch(const Args& a, const PairSets& pairs, dim3 grid, int smem, cudaStream_t stream) {
  auto kernel = conv_sm90_kernel<BN, NACC, BINARY, LAYOUT, PA, PW>;
  // The dynamic shared-memory limit is raised once per device and kernel (not during a later
  // CUDA-graph capture), to the most any call of this kernel uses.
  static std::atomic<bool> opted_in[kMaxDevices];
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (device >= kMaxDevices || !opted_in[device].load()) {
    int limit = 0;
    err = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err != cudaSuccess) return err;
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
    if (err != cudaSuccess) return err;
    if (device < kMaxDevices) opted_in[device].store(true);
  }
  kernel<<<grid, kThreads, smem, stream>>>(a, pairs);
  return cudaGetLastError();
}

template <int PA, int PW, bool BINARY>
cudaError_t launch_planes(int layout, const Args& a, const PairSets& pairs, dim3 grid, int smem,
                          cudaStream_t stream) {
  constexpr int NACC = num_sets(PA, PW, BINARY), BN = block_n(NACC);
  if (layout == kInterleave)
    return launch<BN, NACC, BINARY, kInterleave, PA, PW>(a, pairs, grid, smem, stream);
  return launch<BN, NACC, BINARY, kSwizzle64, PA, PW>(a, pairs, grid, smem, stream);
}

// Whether this kernel's loaded image is sm_90 machine code on the current device (it is only in
// extensions built with the 90a target, and runs only on compute capability 9.0).
bool image_is_sm90() {
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown, 1 yes, 2 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (device < kMaxDevices && cached[device].load() != 0) return cached[device].load() == 1;
  cudaFuncAttributes attr;
  bool yes = cudaFuncGetAttributes(&attr, conv_sm90_kernel<256, 1, true, kSwizzle64, 1, 1>) ==
                 cudaSuccess &&
             attr.binaryVersion == 90;
  if (!yes) cudaGetLastError();  // clear a "no kernel image" error
  if (device < kMaxDevices) cached[device].store(yes ? 1 : 2);
  return yes;
}

struct Plan {
  bool ok;
  PairSets pairs;
  int bn;
  int64_t og, cg, cwg, K, KP, ogp, M;
};

Plan plan(const ConvParams& p) {
  Plan pl{};
  pl.ok = p.out_mode >= 0 && p.out_mode <= 2 && make_pair_sets(p.pa, p.pw, p.binary, pl.pairs);
  if (!pl.ok) return pl;
  pl.bn = block_n(pl.pairs.nsets);
  pl.og = p.out_channels / p.groups;
  pl.cg = p.in_channels / p.groups;
  pl.cwg = (pl.cg + 63) / 64;
  pl.K = static_cast<int64_t>(p.kh) * p.kw * pl.cwg;
  pl.KP = round_up(pl.K, kChunkWords);
  pl.ogp = round_up(pl.og, pl.bn);
  pl.M = p.n * p.oh * p.ow;
  return pl;
}

}  // namespace

bool usable(const ConvParams& p) {
  if (p.path == 0) return false;
  const Plan pl = plan(p);
  return pl.ok && image_is_sm90();
}

// Workspace (int32 units): [weight popcounts][pixel popcounts] (binary), then the K-major weights,
// each part starting 16-byte aligned.
struct WorkspaceLayout {
  int64_t ppop, wk, total;
};
WorkspaceLayout workspace_layout(const ConvParams& p, const Plan& pl) {
  WorkspaceLayout w;
  const int64_t taps = static_cast<int64_t>(p.kh) * p.kw;
  w.ppop = p.binary ? round_up(p.out_channels * (taps + 1), 4) : 0;
  w.wk = w.ppop + (p.binary ? round_up(p.n * p.h * p.w_in * p.groups, 4) : 0);
  w.total = w.wk + 2 * p.groups * p.pw * pl.ogp * pl.KP;
  return w;
}

int64_t workspace_ints(const ConvParams& p) {
  const Plan pl = plan(p);
  if (!pl.ok) return 0;
  return workspace_layout(p, pl).total;
}

cudaError_t conv2d_packed(const ConvParams& p, cudaStream_t stream) {
  const Plan pl = plan(p);
  if (!pl.ok) return cudaErrorInvalidValue;
  if (pl.M == 0 || p.out_channels == 0) return cudaSuccess;
  const int taps = p.kh * p.kw;
  const WorkspaceLayout wl = workspace_layout(p, pl);
  uint64_t* wk = reinterpret_cast<uint64_t*>(p.workspace + wl.wk);
  int32_t* ppop = p.workspace + wl.ppop;

  Args a;
  a.x = p.x;
  a.wk = wk;
  a.h = p.h;
  a.w_in = p.w_in;
  a.oh = p.oh;
  a.ow = p.ow;
  a.M = pl.M;
  a.og = pl.og;
  a.ogp = pl.ogp;
  a.cg = pl.cg;
  a.cwg = pl.cwg;
  a.K = pl.K;
  a.KP = pl.KP;
  a.out_channels = p.out_channels;
  a.cwo = (p.out_channels + 63) / 64;
  a.pixel_words = p.groups * p.pa * pl.cwg;
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
  a.taps = taps;
  a.blocks_per_group = static_cast<int>((pl.og + pl.bn - 1) / pl.bn);
  a.nchunks = pl.KP / kChunkWords;
  a.stage_bytes = stage_bytes(p.pa, p.pw, pl.bn);
  a.row_info = row_info_offset(p.pa, p.pw, pl.bn);
  a.vec16 = pl.cwg % 2 == 0 && (reinterpret_cast<uintptr_t>(p.x) & 15) == 0;
  a.scale = p.scale;
  a.bias = p.bias;
  a.out = p.out;
  a.wpop = p.workspace;
  a.ppop = ppop;
  a.groups = p.groups;
  a.out_mode = p.out_mode;

  const int64_t grid_x = (pl.M + kBM - 1) / kBM, grid_y = a.blocks_per_group * p.groups;
  if (grid_x > 2147483647LL || grid_y > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));

  // Pre-passes: per-tap weight popcounts (binary) and the K-major weight copy.
  if (p.binary) {
    const cudaError_t err = weight_popcounts(p.w, p.groups, pl.og, ((pl.og + 7) / 8 + 3) / 4 * 4,
                                             pl.K, pl.cwg, taps, p.workspace, stream);
    if (err != cudaSuccess) return err;
    const int64_t pg = p.n * p.h * p.w_in * p.groups;
    const int64_t blocks = (pg + 255) / 256 < 4096 ? (pg + 255) / 256 : 4096;
    pixel_popcount_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p.x, pg, pl.cwg, ppop);
    const cudaError_t err2 = cudaGetLastError();
    if (err2 != cudaSuccess) return err2;
  }
  {
    const int64_t words = p.groups * p.pw * pl.ogp * pl.KP;
    const int64_t blocks = (words + 255) / 256 < 4096 ? (words + 255) / 256 : 4096;
    repack_weights_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        p.w, p.groups, p.pw, pl.og, ((pl.og + 7) / 8 + 3) / 4 * 4, pl.K, pl.ogp, pl.KP, wk);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const int smem = smem_bytes(p.pa, p.pw, pl.bn);
  const int layout = p.path == 2 ? kInterleave : kSwizzle64;
  if (p.binary) return launch_planes<1, 1, true>(layout, a, pl.pairs, grid, smem, stream);
  switch (p.pa * 8 + p.pw) {  // the products with <= kMaxPairs plane pairs (plan() checked)
    case 9: return launch_planes<1, 1, false>(layout, a, pl.pairs, grid, smem, stream);
    case 10: return launch_planes<1, 2, false>(layout, a, pl.pairs, grid, smem, stream);
    case 11: return launch_planes<1, 3, false>(layout, a, pl.pairs, grid, smem, stream);
    case 12: return launch_planes<1, 4, false>(layout, a, pl.pairs, grid, smem, stream);
    case 17: return launch_planes<2, 1, false>(layout, a, pl.pairs, grid, smem, stream);
    case 18: return launch_planes<2, 2, false>(layout, a, pl.pairs, grid, smem, stream);
    case 25: return launch_planes<3, 1, false>(layout, a, pl.pairs, grid, smem, stream);
    case 33: return launch_planes<4, 1, false>(layout, a, pl.pairs, grid, smem, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace sm90
}  // namespace hwq_cuda

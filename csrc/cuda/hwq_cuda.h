// The interface between the torch binding (hwq_cuda.cpp) and the CUDA kernels (*.cu).
//
// Plain C++ and the CUDA runtime only, no torch headers: the .cu files compile in seconds and can be
// checked with nvcc alone (tests/kernels/test_cuda_compile.py). Layouts are those of the CPU kernels
// (csrc/hwq_ops.cpp, hwq/kernels/reference.py), so packed tensors move between devices unchanged:
//   activations (N, H, W, G, P, Cwg) int64, weights (G, P, NP, K, 8) int64, K = KH * KW * Cwg.
#pragma once
#include <stdint.h>

#ifdef HWQ_CUDA_HOST_CHECKS
// The host-check build (host_launch.cpp, tests only) has no CUDA toolkit: error codes are ints.
using cudaError_t = int;
using cudaStream_t = void*;
#else
#include <cuda_runtime.h>
#endif

namespace hwq_cuda {

// Element types the packers read (the binding maps torch dtypes to these).
enum DType : int { kF32 = 0, kF64, kF16, kBF16, kI8, kU8, kI16, kI32, kI64 };

// Strided (N, C, H, W) values -> packed activations (N, H, W, groups, planes, Cwg), every word written.
// binary: one plane, bit 1 where x < 0; else `bits` planes of the integer's low bits.
cudaError_t pack_activations(const void* x, int dtype, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t sn, int64_t sc, int64_t sh, int64_t sw, int bits, bool binary,
                             int64_t groups, uint64_t* out, cudaStream_t stream);

// Strided (O, C/groups, KH, KW) values -> packed weights (G, P, NP, KH*KW*Cwg, 8). `out` must be
// zero-filled by the caller (padding panels stay zero); only the real words are written.
cudaError_t pack_weights(const void* w, int dtype, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                         int64_t s0, int64_t s1, int64_t s2, int64_t s3, int bits, bool binary,
                         int64_t groups, int64_t np, uint64_t* out, cudaStream_t stream);

struct ConvParams {
  const uint64_t* x;   // packed activations (N, H, W, G, pa, cwg), contiguous
  const uint64_t* w;   // packed weights (G, pw, np, K, 8), contiguous
  int64_t n, h, w_in;  // input batch and spatial size
  int64_t oh, ow;      // output spatial size
  int64_t in_channels, out_channels, groups;
  int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int pa, pw;          // bit planes of activations / weights (1 and 1 for binary)
  bool binary;
  const float* scale;  // per output channel or nullptr (= 1)
  const float* bias;   // per output channel or nullptr (= 0)
  int out_mode;        // 0: int32 sums (N, OH, OW, O); 1: float32; 2: packed signs (N, OH, OW, 1, 1, cwo); 3 (float then ReLU) is refused by hwq_cuda.cpp
  void* out;           // int32 / float / uint64 (zero-filled by the caller for out_mode 2)
  int32_t* workspace;  // binary only: G * og * (KH*KW + 1) ints (per-tap weight popcounts)
  int config;          // tile configuration of the sm_80 kernel: -1 auto, else an index into kConfigs (conv.cu)
  int path;            // -1 auto (wgmma where usable), 0 the sm_80 mma.sync kernel, 1 the sm_90a
                       // wgmma kernel (64-byte swizzled tiles), 2 wgmma with unswizzled tiles
};

// Paths (ConvParams::path) and whether the wgmma kernel takes a call on the current device.
constexpr int kNumPaths = 3;
const char* path_name(int path);
bool wgmma_usable(const ConvParams& p);

// Size in int32 of the workspace conv2d_packed needs on the current device (weight popcounts for
// binary; the K-major weight copy of the wgmma path).
int64_t conv2d_workspace_ints(const ConvParams& p);

// Launches the implicit-GEMM kernel (and, for binary, the weight-popcount pre-pass) on `stream`.
// Returns the first CUDA error (argument errors are the binding's job and are checked there).
cudaError_t conv2d_packed(const ConvParams& p, cudaStream_t stream);

// Number of tile configurations (valid values of ConvParams::config are -1 .. count - 1) and a
// human-readable name of one ("128x128/64x32" = block tile / warp tile, in output pixels x channels).
int num_configs();
const char* config_name(int config);

}  // namespace hwq_cuda

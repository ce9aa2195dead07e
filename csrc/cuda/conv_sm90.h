// The sm_90a (wgmma) path of conv2d_packed (conv_sm90.cu), called by conv.cu's dispatcher, and the
// weight-popcount pre-pass that both paths share (conv.cu). No torch headers.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "hwq_cuda.h"

namespace hwq_cuda {

// Per (group, output channel): popc of the weight's plane-0 words of each tap and their total at
// index taps (binary only), into wpop (G * og, taps + 1).
cudaError_t weight_popcounts(const uint64_t* w, int64_t groups, int64_t og, int64_t np, int64_t K,
                             int64_t cwg, int taps, int32_t* wpop, cudaStream_t stream);

namespace sm90 {
// Whether the wgmma kernel takes this call: path != 0, out_mode 0..2, at most 4 plane pairs, and
// the extension's image of the kernel is sm_90 machine code on the current device.
bool usable(const ConvParams& p);
// int32 workspace it needs (weight popcounts, then the K-major weight copy); 0 if it cannot run.
int64_t workspace_ints(const ConvParams& p);
cudaError_t conv2d_packed(const ConvParams& p, cudaStream_t stream);
}  // namespace sm90

}  // namespace hwq_cuda

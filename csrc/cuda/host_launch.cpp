// The kernel side of the HOST build of the CUDA binding (tests only, no GPU, no CUDA toolkit):
// hwq_cuda.cpp compiled with -DHWQ_CUDA_HOST_CHECKS registers its ops as torch.ops.hwq_cuda_host.*
// on CPU tensors, runs every argument check the CUDA build runs, fills ConvParams exactly as it
// does, and calls the functions of hwq_cuda.h, which here run the host emulators of the two conv
// kernels (emulate.cpp: the sm_80 mma.sync kernel; emulate_sm90.cpp: the sm_90a wgmma kernel)
// instead of launching. tests/kernels/test_cuda_args.py drives it: bad calls give the CPU op's
// messages without crashing, and good calls give the CPU op's numbers through the binding.
#ifndef HWQ_CUDA_HOST_CHECKS
#error "host_launch.cpp belongs to the host-check build only (-DHWQ_CUDA_HOST_CHECKS)"
#endif
#include <stdint.h>

#include "hwq_cuda.h"
#include "wgmma_index.h"

extern "C" int hwq_emulate_conv(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h,
                                int64_t w_in, int64_t in_channels, int64_t out_channels,
                                int64_t groups, int kh, int kw, int stride_h, int stride_w,
                                int pad_h, int pad_w, int dil_h, int dil_w, int pa, int pw,
                                int binary, int bm, int bn, int warps_m, int warps_n,
                                const float* scale, const float* bias, int out_mode, void* out);
extern "C" int hwq_emulate_conv_sm90(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h,
                                     int64_t w_in, int64_t in_channels, int64_t out_channels,
                                     int64_t groups, int kh, int kw, int stride_h, int stride_w,
                                     int pad_h, int pad_w, int dil_h, int dil_w, int pa, int pw,
                                     int binary, int layout, int vec16_allowed, const float* scale,
                                     const float* bias, int out_mode, void* out);

namespace hwq_cuda {

namespace {
struct HostConfig {
  const char* name;
  int bm, bn;
};
// conv.cu's kConfigs (2 x 4 warps each).
const HostConfig kHostConfigs[] = {{"128x128/64x32", 128, 128}, {"128x256/64x64", 128, 256}};
}  // namespace

int num_configs() { return 2; }
const char* config_name(int config) {
  return config >= 0 && config < 2 ? kHostConfigs[config].name : "auto";
}
const char* path_name(int path) {
  switch (path) {
    case 0: return "mma.sync";
    case 1: return "wgmma";
    case 2: return "wgmma-noswizzle";
    default: return "auto";
  }
}

// The emulated "device" has the wgmma kernel wherever its plan takes the call.
bool wgmma_usable(const ConvParams& p) {
  sm90::PairSets pairs;
  return p.path != 0 && p.out_mode >= 0 && p.out_mode <= 2 &&
         sm90::make_pair_sets(p.pa, p.pw, p.binary, pairs);
}

int64_t conv2d_workspace_ints(const ConvParams& p) {
  return p.binary ? p.out_channels * (static_cast<int64_t>(p.kh) * p.kw + 1) : 0;
}

cudaError_t pack_activations(const void*, int, int64_t, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int64_t, int64_t, int, bool, int64_t, uint64_t*,
                             cudaStream_t) {
  return 1;  // no packing kernel in the host build (the binding says so)
}
cudaError_t pack_weights(const void*, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int, bool, int64_t, int64_t, uint64_t*, cudaStream_t) {
  return 1;
}

// Emulator error codes come back as the "CUDA error" (the binding reports it by number).
cudaError_t conv2d_packed(const ConvParams& p, cudaStream_t) {
  if (p.n * p.oh * p.ow == 0 || p.out_channels == 0) return 0;
  if (p.path != 0 && wgmma_usable(p))
    return 100 + hwq_emulate_conv_sm90(p.x, p.w, p.n, p.h, p.w_in, p.in_channels, p.out_channels,
                                       p.groups, p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h,
                                       p.pad_w, p.dil_h, p.dil_w, p.pa, p.pw, p.binary,
                                       p.path == 2 ? sm90::kInterleave : sm90::kSwizzle64, 1,
                                       p.scale, p.bias, p.out_mode, p.out) -
           100;
  if (p.path > 0) return 801;  // cudaErrorNotSupported, as conv.cu
  const int64_t og = p.out_channels / p.groups;
  const int64_t M = p.n * p.oh * p.ow;
  int config = p.config;
  if (config < 0 || config >= 2) {  // conv.cu's automatic choice
    const int64_t wide_blocks = (M + 127) / 128 * ((og + 255) / 256) * p.groups;
    config = (og >= 256 && wide_blocks >= 264) ? 1 : 0;
  }
  return hwq_emulate_conv(p.x, p.w, p.n, p.h, p.w_in, p.in_channels, p.out_channels, p.groups,
                          p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
                          p.pa, p.pw, p.binary, kHostConfigs[config].bm, kHostConfigs[config].bn, 2,
                          4, p.scale, p.bias, p.out_mode, p.out);
}

}  // namespace hwq_cuda

// hwq._C_cuda: the CUDA implementations of torch.ops.hwq.pack_activations / pack_weights /
// conv2d_packed (schemas defined by TORCH_LIBRARY(hwq) in csrc/hwq_ops.cpp, or by
// hwq/kernels/cuda.py where hwq._C is not built), plus torch.ops.hwq_cuda.* to choose the tile
// configuration (for tuning and benchmarks; the default picks one per shape).
//
// This file checks arguments exactly as the CPU binding does (same messages, same int32 bound:
// csrc/packed_conv_args.h), all before any allocation or launch, then hands raw pointers to the
// kernels in conv.cu / conv_sm90.cu / pack.cu, which include no torch headers.
//
// Compiled with -DHWQ_CUDA_HOST_CHECKS (tests/kernels/test_cuda_args.py, no GPU or toolkit needed)
// the same code registers torch.ops.hwq_cuda_host.* on CPU tensors and calls host_launch.cpp,
// which runs the host emulators of the conv kernels instead of launching them: every check of this
// file and its whole path to the kernel run in CI.
#include <Python.h>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>
#ifndef HWQ_CUDA_HOST_CHECKS
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "../packed_conv_args.h"
#include "hwq_cuda.h"

namespace {

// Layout constants, words(), padded_panels() and the argument checks shared with the CPU op.
using namespace hwq_packed;

#ifdef HWQ_CUDA_HOST_CHECKS
constexpr bool kHost = true;
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};
cudaStream_t current_stream() { return nullptr; }
const char* error_name(cudaError_t err) {
  return err == 801 ? "cudaErrorNotSupported"
         : err == 1 ? "no packing kernel in the host-check build"
                    : "emulator error";
}
const char* error_string(cudaError_t) { return "host emulation (see host_launch.cpp)"; }
#else
constexpr bool kHost = false;
using DeviceGuard = c10::cuda::CUDAGuard;
// The stream PyTorch launches on for the current device (c10::cuda::CUDAStream converts to it).
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }
const char* error_name(cudaError_t err) { return cudaGetErrorName(err); }
const char* error_string(cudaError_t err) { return cudaGetErrorString(err); }
#endif

std::atomic<int> g_config{-1};
std::atomic<int> g_path{-1};

void set_path(int64_t path) {
  HWQ_CHECK(path >= -1 && path < hwq_cuda::kNumPaths, "path=", path,
              " is not accepted: expected -1 (auto), 0 (mma.sync, sm_80+), 1 (wgmma, sm_90a) or 2 "
              "(wgmma with unswizzled tiles)");
  g_path.store(static_cast<int>(path));
}
int64_t get_path() { return g_path.load(); }
std::vector<std::string> path_names() {
  std::vector<std::string> names;
  for (int i = 0; i < hwq_cuda::kNumPaths; ++i) names.emplace_back(hwq_cuda::path_name(i));
  return names;
}

void set_config(int64_t config) {
  HWQ_CHECK(config >= -1 && config < hwq_cuda::num_configs(), "config=", config,
              " is not accepted: expected -1 (auto) or 0..", hwq_cuda::num_configs() - 1);
  g_config.store(static_cast<int>(config));
}
int64_t get_config() { return g_config.load(); }
std::vector<std::string> config_names() {
  std::vector<std::string> names;
  for (int i = 0; i < hwq_cuda::num_configs(); ++i) names.emplace_back(hwq_cuda::config_name(i));
  return names;
}

void check_cuda_ok(cudaError_t err, const char* what) {
  HWQ_CHECK(err == 0, "hwq CUDA kernel ", what, " failed: ", error_name(err), " (",
              error_string(err), ", code ", static_cast<int>(err), ")");
}

void check_cuda_tensor(const at::Tensor& t, const char* param) {
  if (kHost) {
    HWQ_CHECK(t.device().is_cpu(), param, " is on device ", t.device(),
                ": the host-check build of the hwq CUDA binding takes CPU tensors");
    return;
  }
  HWQ_CHECK(t.is_cuda(), param, " is on device ", t.device(),
              ": the hwq CUDA kernels take CUDA tensors (this is the CUDA implementation)");
}

void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* param) {
  HWQ_CHECK(t.device() == ref.device(), param, " is on device ", t.device(), " but x is on ",
              ref.device(), ": expected all tensors on one device");
}

void check_packed(const at::Tensor& t, const char* param, int64_t dim) {
  check_cuda_tensor(t, param);
  HWQ_CHECK(t.scalar_type() == at::kLong, param, " has dtype ", t.scalar_type(),
              ": packed bits are expected as torch.int64 (from hwq pack ops)");
  HWQ_CHECK(t.dim() == dim, param, " has ", t.dim(), " dims (shape ", t.sizes(), "): packed ",
              param, " has ", dim, " dims");
}

int dtype_code(at::ScalarType t, const char* param) {
  switch (t) {
    case at::kFloat: return hwq_cuda::kF32;
    case at::kDouble: return hwq_cuda::kF64;
    case at::kHalf: return hwq_cuda::kF16;
    case at::kBFloat16: return hwq_cuda::kBF16;
    case at::kChar: return hwq_cuda::kI8;
    case at::kByte: return hwq_cuda::kU8;
    case at::kShort: return hwq_cuda::kI16;
    case at::kInt: return hwq_cuda::kI32;
    case at::kLong: return hwq_cuda::kI64;
    default:
      HWQ_CHECK(false, param, " has dtype ", t,
                  ": expected a real floating or integer dtype (float32/64, float16, bfloat16, "
                  "int8, uint8, int16, int32, int64)");
  }
  return -1;
}

at::Tensor pack_activations(const at::Tensor& x, int64_t bits, bool binary, int64_t groups) {
  check_cuda_tensor(x, "x");
  HWQ_CHECK(x.dim() == 4, "x has shape ", x.sizes(), ": expected (N, C, H, W)");
  check_bits(bits, binary, "bits");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  check_groups(c, groups, "channels");
  const int code = dtype_code(x.scalar_type(), "x");
  const int64_t planes = binary ? 1 : bits, cwg = words(c / groups);
  const DeviceGuard guard(x.device());
  at::Tensor out = at::empty({n, h, w, groups, planes, cwg}, x.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  check_cuda_ok(hwq_cuda::pack_activations(
                    x.const_data_ptr(), code, n, c, h, w, x.stride(0), x.stride(1), x.stride(2),
                    x.stride(3), static_cast<int>(bits), binary, groups,
                    reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>()),
                    current_stream()),
                "pack_activations");
  return out;
}

at::Tensor pack_weights(const at::Tensor& wt, int64_t bits, bool binary, int64_t groups) {
  check_cuda_tensor(wt, "w");
  HWQ_CHECK(wt.dim() == 4, "w has shape ", wt.sizes(), ": expected (O, C/groups, KH, KW)");
  check_bits(bits, binary, "bits");
  const int64_t o = wt.size(0), cg = wt.size(1), kh = wt.size(2), kw = wt.size(3);
  check_groups(o, groups, "out_channels");
  const int code = dtype_code(wt.scalar_type(), "w");
  const int64_t og = o / groups, cwg = words(cg), planes = binary ? 1 : bits;
  const int64_t np = padded_panels(og), k = kh * kw * cwg;
  const DeviceGuard guard(wt.device());
  at::Tensor out = at::zeros({groups, planes, np, k, kPanel}, wt.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  check_cuda_ok(hwq_cuda::pack_weights(wt.const_data_ptr(), code, o, cg, kh, kw, wt.stride(0),
                                       wt.stride(1), wt.stride(2), wt.stride(3),
                                       static_cast<int>(bits), binary, groups, np,
                                       reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>()),
                                       current_stream()),
                "pack_weights");
  return out;
}


at::Tensor conv2d_packed(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                         int64_t out_channels, at::IntArrayRef kernel_size, int64_t a_bits,
                         int64_t w_bits, bool binary, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                         const std::optional<at::Tensor>& scale,
                         const std::optional<at::Tensor>& bias, int64_t out_mode) {
  check_packed(x_in, "x", 6);
  check_packed(w_in, "w", 5);
  check_same_device(w_in, x_in, "w");
  const ConvShape cs = check_conv_args(x_in, w_in, in_channels, out_channels, kernel_size, a_bits,
                                       w_bits, binary, stride, padding, dilation, groups, out_mode);
  // The CPU op has it (a ReLU in its float epilogue); the CUDA kernel's epilogue has not been
  // extended and tested on a GPU yet.
  HWQ_CHECK(out_mode != kOutFloatRelu,
              "out_mode=3 (float then ReLU) is not implemented by the CUDA kernels yet: use "
              "out_mode=1 followed by torch.relu");
  const int64_t g_ = cs.groups, og = cs.og, pa = cs.pa, pw = cs.pw;
  const int64_t n = cs.n, h = cs.h, w = cs.w, kh = cs.kh, kw = cs.kw;
  const int64_t k = cs.k, oh = cs.oh, ow = cs.ow;
  // The kernel's integer parameters are 32-bit where they index taps, strides and offsets.
  for (int d = 0; d < 2; ++d)
    HWQ_CHECK(stride[d] < (1 << 20) && padding[d] < (1 << 20) && dilation[d] < (1 << 20),
                "stride/padding/dilation values must be below 2^20 for the CUDA kernels");
  // Column blocks of the narrowest tile (64 output channels, the wgmma kernel's bit-serial tiles).
  HWQ_CHECK((og + 63) / 64 * g_ <= 65535, "out_channels=", out_channels, " with groups=", g_,
              " needs more than 65535 column blocks: too many groups for the CUDA kernels");
  HWQ_CHECK(k < (int64_t{1} << 30), "KH * KW * words(in_channels/groups) = ", k,
              " is too large for the CUDA kernels (expected < 2^30)");

  const DeviceGuard guard(x_in.device());
  if (scale.has_value()) {
    check_cuda_tensor(*scale, "scale");
    check_same_device(*scale, x_in, "scale");
  }
  if (bias.has_value()) {
    check_cuda_tensor(*bias, "bias");
    check_same_device(*bias, x_in, "bias");
  }
  const at::Tensor scale_c = check_channel_vector(scale, "scale", out_channels);
  const at::Tensor bias_c = check_channel_vector(bias, "bias", out_channels);
  const float* sc = scale_c.defined() ? scale_c.const_data_ptr<float>() : nullptr;
  const float* bi = bias_c.defined() ? bias_c.const_data_ptr<float>() : nullptr;
  HWQ_CHECK(out_mode != kOutInt32 || (sc == nullptr && bi == nullptr),
              "scale/bias need out_mode 1, 2 or 3: out_mode=0 returns the raw int32 sums");

  const at::Tensor x = x_in.contiguous(), wt = w_in.contiguous();
  const auto opts = x.options();
  hwq_cuda::ConvParams p;
  p.x = reinterpret_cast<const uint64_t*>(x.const_data_ptr<int64_t>());
  p.w = reinterpret_cast<const uint64_t*>(wt.const_data_ptr<int64_t>());
  p.n = n;
  p.h = h;
  p.w_in = w;
  p.oh = oh;
  p.ow = ow;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.groups = g_;
  p.kh = static_cast<int>(kh);
  p.kw = static_cast<int>(kw);
  p.stride_h = static_cast<int>(stride[0]);
  p.stride_w = static_cast<int>(stride[1]);
  p.pad_h = static_cast<int>(padding[0]);
  p.pad_w = static_cast<int>(padding[1]);
  p.dil_h = static_cast<int>(dilation[0]);
  p.dil_w = static_cast<int>(dilation[1]);
  p.pa = static_cast<int>(pa);
  p.pw = static_cast<int>(pw);
  p.binary = binary;
  p.scale = sc;
  p.bias = bi;
  p.out_mode = static_cast<int>(out_mode);
  p.config = g_config.load();
  p.path = g_path.load();
  HWQ_CHECK(p.path <= 0 || hwq_cuda::wgmma_usable(p), "path=", p.path, " (",
              hwq_cuda::path_name(p.path), ") cannot run this call: the wgmma kernel needs an "
              "extension built for sm_90a running on a compute capability 9.0 GPU, out_mode 0..2 "
              "and at most 4 plane pairs (a_bits * w_bits <= 4); use path -1 (auto) or 0");
  at::Tensor out;
  if (out_mode == kOutPackedSign) {
    out = at::zeros({n, oh, ow, 1, 1, words(out_channels)}, opts.dtype(at::kLong));
  } else {
    out = at::empty({n, oh, ow, out_channels},
                    opts.dtype(out_mode == kOutInt32 ? at::kInt : at::kFloat));
  }
  auto result = [&]() { return out_mode == kOutPackedSign ? out : out.permute({0, 3, 1, 2}); };
  if (n * oh * ow == 0 || out_channels == 0) return result();

  p.out = out.data_ptr();
  at::Tensor workspace;
  p.workspace = nullptr;
  const int64_t ws = hwq_cuda::conv2d_workspace_ints(p);
  if (ws > 0) {
    workspace = at::empty({ws}, opts.dtype(at::kInt));
    p.workspace = workspace.data_ptr<int32_t>();
  }
  const cudaError_t err = hwq_cuda::conv2d_packed(p, current_stream());
  check_cuda_ok(err, "conv2d_packed");
  return result();
}

}  // namespace

#ifdef HWQ_CUDA_HOST_CHECKS
// The host-check build: the same functions on CPU tensors, under their own namespace (the schemas
// are those of torch.ops.hwq.*, hwq/kernels/cuda.py SCHEMAS).
TORCH_LIBRARY(hwq_cuda_host, m) {
  m.def("pack_activations(Tensor x, int bits, bool binary, int groups) -> Tensor", &pack_activations);
  m.def("pack_weights(Tensor w, int bits, bool binary, int groups) -> Tensor", &pack_weights);
  m.def("conv2d_packed(Tensor x, Tensor w, int in_channels, int out_channels, int[2] kernel_size, "
        "int a_bits, int w_bits, bool binary, int[2] stride, int[2] padding, int[2] dilation, "
        "int groups, Tensor? scale, Tensor? bias, int out_mode) -> Tensor",
        &conv2d_packed);
  m.def("set_config(int config) -> ()", &set_config);
  m.def("set_path(int path) -> ()", &set_path);
  m.def("get_path() -> int", &get_path);
}
#else
TORCH_LIBRARY_IMPL(hwq, CUDA, m) {
  m.impl("pack_activations", &pack_activations);
  m.impl("pack_weights", &pack_weights);
  m.impl("conv2d_packed", &conv2d_packed);
}

TORCH_LIBRARY(hwq_cuda, m) {
  m.def("set_config(int config) -> ()", &set_config);
  m.def("get_config() -> int", &get_config);
  m.def("config_names() -> str[]", &config_names);
  m.def("set_path(int path) -> ()", &set_path);
  m.def("get_path() -> int", &get_path);
  m.def("path_names() -> str[]", &path_names);
}
#endif

// The module itself is empty: importing it runs the registrations above.
extern "C" PyObject* PyInit__C_cuda(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C_cuda", nullptr, -1, nullptr,
                                   nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&def);
}

// The packed layout's constants and the argument checks of conv2d_packed, shared by the CPU
// binding (hwq_ops.cpp) and the CUDA binding (cuda/hwq_cuda.cpp), so both ops accept and refuse
// exactly the same calls with the same messages. Device and dtype checks stay with each binding.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <type_traits>

namespace hwq_packed {

// Error messages are built as one std::string, with numbers formatted by std::to_string and
// snprintf, never by streaming them into a std::ostream as TORCH_CHECK's own formatting does. The
// CUDA extension, JIT-built on an H200 machine, carried its own copy of std::ostream::_M_insert<long>
// and crashed (SIGSEGV) in it on any TORCH_CHECK message holding an integer, while messages of
// strings alone were raised correctly; this way the extension formats nothing through iostreams.
// The text is what TORCH_CHECK would print: ints in decimal, doubles as %g (an ostream's default),
// IntArrayRef as [a, b], bool as 1 / 0.
namespace detail {
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, char v) { s += v; }
inline void append(std::string& s, c10::IntArrayRef v) {
  s += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += ']';
}
inline void append(std::string& s, at::ScalarType t) { s += c10::toString(t); }
inline void append(std::string& s, const c10::Device& d) { s += d.str(); }
template <typename T, std::enable_if_t<std::is_integral_v<T> || std::is_enum_v<T>, int> = 0>
void append(std::string& s, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    s += v ? '1' : '0';
  } else if constexpr (std::is_enum_v<T>) {
    s += std::to_string(static_cast<std::underlying_type_t<T>>(v));
  } else {
    s += std::to_string(v);
  }
}
inline void append(std::string& s, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  s += buf;
}
}  // namespace detail

template <typename... Args>
std::string message(const Args&... args) {
  std::string s;
  (detail::append(s, args), ...);
  return s;
}

}  // namespace hwq_packed

// TORCH_CHECK with the message built by hwq_packed::message (only when the check fails).
#define HWQ_CHECK(cond, ...) TORCH_CHECK(cond, ::hwq_packed::message(__VA_ARGS__))

namespace hwq_packed {

constexpr int64_t kWord = 64;     // bits per packed word
constexpr int64_t kPanel = 8;     // output channels per weight panel
constexpr int64_t kPanelPad = 4;  // panels per group are padded to a multiple of this
constexpr int64_t kMaxTaps = 64;  // KH * KW limit: the per-pixel tap-validity mask is 64 bits

inline int64_t words(int64_t bits) { return (bits + kWord - 1) / kWord; }

inline int64_t padded_panels(int64_t out_channels) {
  const int64_t p = (out_channels + kPanel - 1) / kPanel;
  return (p + kPanelPad - 1) / kPanelPad * kPanelPad;
}

inline void check_bits(int64_t bits, bool binary, const char* param) {
  if (binary) {
    HWQ_CHECK(bits == 1, param, "=", bits, " with binary=True: binary values use 1 bit");
  } else {
    HWQ_CHECK(bits >= 1 && bits <= 8, param, "=", bits, " is not accepted: expected 1..8");
  }
}

inline void check_groups(int64_t channels, int64_t groups, const char* what) {
  HWQ_CHECK(groups >= 1, "groups=", groups, " is not accepted: expected an integer >= 1");
  HWQ_CHECK(channels % groups == 0, what, "=", channels, " is not divisible by groups=", groups);
}

// 1: float(sum) * scale + bias; 2: the sign bits of that, packed; 3: mode 1 then ReLU.
enum OutMode : int64_t { kOutInt32 = 0, kOutFloat = 1, kOutPackedSign = 2, kOutFloatRelu = 3 };

// Sizes of one conv2d_packed call, derived from validated arguments.
struct ConvShape {
  int64_t groups, cg, og, cwg;  // groups, in/out channels per group, words per input group
  int64_t pa, pw;               // activation / weight bit planes
  int64_t n, h, w, kh, kw;      // batch, input size, kernel size
  int64_t taps, k, np;          // KH * KW, words per output column (taps * cwg), weight panels
  int64_t oh, ow;               // output size
  int64_t sy, sx, py, px, dy, dx;  // stride, padding, dilation (rows, columns)
  bool binary;                  // XOR-popcount of +/-1 values (else AND-popcount of bit planes)
};

// Checks everything but devices and dtypes: bits, groups, kernel / stride / padding / dilation,
// out_mode, the packed shapes of x (N, H, W, G, planes, words) and w (G, planes, panels, K, 8),
// the output size and the int32 bound of the sums.
inline ConvShape check_conv_args(const at::Tensor& x, const at::Tensor& wt, int64_t in_channels,
                                 int64_t out_channels, at::IntArrayRef kernel_size, int64_t a_bits,
                                 int64_t w_bits, bool binary, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                 int64_t out_mode) {
  check_bits(a_bits, binary, "a_bits");
  check_bits(w_bits, binary, "w_bits");
  HWQ_CHECK(in_channels >= 0, "in_channels=", in_channels,
              " is not accepted: expected the input channel count (>= 0)");
  HWQ_CHECK(out_channels >= 0, "out_channels=", out_channels,
              " is not accepted: expected the output channel count (>= 0)");
  check_groups(in_channels, groups, "in_channels");
  check_groups(out_channels, groups, "out_channels");
  HWQ_CHECK(kernel_size.size() == 2 && stride.size() == 2 && padding.size() == 2 &&
                  dilation.size() == 2,
              "kernel_size, stride, padding and dilation must each have 2 values");
  ConvShape s{};
  s.kh = kernel_size[0];
  s.kw = kernel_size[1];
  HWQ_CHECK(s.kh >= 1 && s.kw >= 1 && s.kh * s.kw <= kMaxTaps, "kernel_size=", kernel_size,
              " is not accepted: expected sizes >= 1 with KH * KW <= ", kMaxTaps);
  for (int d = 0; d < 2; ++d) {
    HWQ_CHECK(stride[d] >= 1, "stride=", stride, " is not accepted: expected values >= 1");
    HWQ_CHECK(dilation[d] >= 1, "dilation=", dilation, " is not accepted: expected values >= 1");
    HWQ_CHECK(padding[d] >= 0, "padding=", padding, " is not accepted: expected values >= 0");
  }
  HWQ_CHECK(out_mode >= 0 && out_mode <= 3, "out_mode=", out_mode,
              " is not accepted: expected 0 (int32 sums), 1 (float), 2 (packed signs) or 3 (float "
              "then ReLU)");

  s.sy = stride[0];
  s.sx = stride[1];
  s.py = padding[0];
  s.px = padding[1];
  s.dy = dilation[0];
  s.dx = dilation[1];
  s.binary = binary;
  s.groups = groups;
  s.cg = in_channels / groups;
  s.og = out_channels / groups;
  s.cwg = words(s.cg);
  s.pa = binary ? 1 : a_bits;
  s.pw = binary ? 1 : w_bits;
  s.n = x.size(0);
  s.h = x.size(1);
  s.w = x.size(2);
  HWQ_CHECK(x.size(3) == groups && x.size(4) == s.pa && x.size(5) == s.cwg, "x has shape ",
              x.sizes(), ": expected (N, H, W, ", groups, ", ", s.pa, ", ", s.cwg,
              ") for in_channels=", in_channels, ", groups=", groups,
              binary ? std::string(", binary") : ", a_bits=" + std::to_string(a_bits),
              " (channel count mismatch between input and weight?)");
  s.taps = s.kh * s.kw;
  s.k = s.taps * s.cwg;
  s.np = padded_panels(s.og);
  HWQ_CHECK(wt.size(0) == groups && wt.size(1) == s.pw && wt.size(2) == s.np &&
                  wt.size(3) == s.k && wt.size(4) == kPanel,
              "w has shape ", wt.sizes(), ": expected (", groups, ", ", s.pw, ", ", s.np, ", ", s.k,
              ", ", kPanel, ") for out_channels=", out_channels, ", in_channels=", in_channels,
              ", kernel_size=", kernel_size, ", groups=", groups);
  HWQ_CHECK(s.h + 2 * padding[0] >= dilation[0] * (s.kh - 1) + 1 &&
                  s.w + 2 * padding[1] >= dilation[1] * (s.kw - 1) + 1,
              "input size (", s.h, ", ", s.w, ") with padding ", padding,
              " is smaller than the dilated kernel (", dilation[0] * (s.kh - 1) + 1, ", ",
              dilation[1] * (s.kw - 1) + 1, ")");
  s.oh = (s.h + 2 * padding[0] - dilation[0] * (s.kh - 1) - 1) / stride[0] + 1;
  s.ow = (s.w + 2 * padding[1] - dilation[1] * (s.kw - 1) - 1) / stride[1] + 1;
  // Largest |sum|: K * max|x| * max|w| (unsigned a-bit x <= 2^a - 1, signed w-bit |w| <= 2^(w-1)).
  // Every kernel and epilogue works in int32, so every mode needs it.
  const double bound = static_cast<double>(s.cg * s.taps) *
                       (binary ? 1.0 : double((int64_t{1} << a_bits) - 1) *
                                           double(int64_t{1} << (w_bits - 1)));
  HWQ_CHECK(bound < 2147483648.0, "in_channels/groups * KH * KW = ", s.cg * s.taps,
              " at a_bits=", a_bits, ", w_bits=", w_bits, " can overflow the int32 output (bound ",
              bound, "): split the input channels into several calls (or groups)");
  return s;
}

// scale / bias of the epilogue: float32 with one value per output channel (device checked by the
// caller). Returns a contiguous copy to read, or an undefined tensor when absent.
inline at::Tensor check_channel_vector(const std::optional<at::Tensor>& v, const char* param,
                                       int64_t out_channels) {
  if (!v.has_value()) return at::Tensor();
  HWQ_CHECK(v->scalar_type() == at::kFloat && v->numel() == out_channels, param, " has dtype ",
              v->scalar_type(), " and ", v->numel(), " values: expected float32 with ",
              out_channels, " (one per output channel)");
  return v->contiguous();
}

}  // namespace hwq_packed

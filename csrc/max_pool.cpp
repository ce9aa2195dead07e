// Max pooling of a channels-last float32 tensor without the argmax indices (hwq.deploy's
// MaxPool2d, hwq/deploy/pool.py).
//
// torch's CPU max_pool2d always computes the indices (aten::max_pool2d_with_indices), int64 per
// output: for a ResNet-18 stem at batch 16 (16 x 64 x 112 x 112 input, 51 MB) that is 25.6 MB
// written beside the 12.8 MB output, and the op took 5.2 ms of a Zen 5 core, 12% of a deployed
// binary ResNet-18 (docs/kernels.md). Here each output row is one pass over its window's input
// rows, with a running maximum per channel in torch's order (window rows, then columns) and by
// torch's rule (take v where v > m or v is NaN; m starts at -inf): the first of equal values stays
// (so -0.0 and +0.0 come out as torch's), a NaN propagates, and the outputs equal torch's bit for
// bit.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <utility>

#include "clones.h"

namespace hwq_pool {

// One input row's part of the window of one output pixel, over channels j0 .. j0 + NB - 1: the
// running maxima in o, updated with the row's pixels iw0 .. iw1 - 1. They are loaded into a local
// array of a fixed size, indexed only in loops of that fixed trip count, which the compiler keeps
// in vector registers. NB = 0: the last nb < kBlock channels.
constexpr int64_t kBlock = 64;

template <int64_t NB>
static inline __attribute__((always_inline)) void row_max(const float* __restrict xr, int64_t c,
                                                          int64_t iw0, int64_t iw1, int64_t j0,
                                                          int64_t nb, float* __restrict o) {
  constexpr int64_t kn = NB > 0 ? NB : kBlock;
  const int64_t n = NB > 0 ? NB : nb;
  float m[kn];
  for (int64_t j = 0; j < n; ++j) m[j] = o[j];
  for (int64_t iw = iw0; iw < iw1; ++iw) {
    const float* v = xr + iw * c + j0;
    for (int64_t j = 0; j < n; ++j) {
      const float a = v[j];
      m[j] = ((a > m[j]) | (a != a)) ? a : m[j];
    }
  }
  for (int64_t j = 0; j < n; ++j) o[j] = m[j];
}

// Output row oy of image x (H x W x C floats, channels last) into o (OW x C floats). The window's
// input rows are taken one after another, each read once from left to right for the whole output
// row (the maxima of the row, OW x C floats, stay in L1 or L2): one memory stream at a time. Read
// window by window, three rows at once, the same loop ran at a third of the memory's streaming
// rate and took 1.3x torch's time on a Zen 5 core. Each output still sees its window's pixels in
// torch's order, row by row, left to right.
HWQ_CLONES static void max_pool_row(const float* __restrict x, int64_t h, int64_t w, int64_t c,
                                    int64_t oy, int64_t ow, int64_t kh, int64_t kw, int64_t sy,
                                    int64_t sx, int64_t py, int64_t px, float* __restrict o) {
  const int64_t iy0 = oy * sy - py;
  const int64_t ih0 = iy0 < 0 ? 0 : iy0, ih1 = iy0 + kh < h ? iy0 + kh : h;
  const float lowest = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < ow * c; ++j) o[j] = lowest;
  for (int64_t ih = ih0; ih < ih1; ++ih) {
    const float* xr = x + ih * w * c;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t ix0 = ox * sx - px;
      const int64_t iw0 = ix0 < 0 ? 0 : ix0, iw1 = ix0 + kw < w ? ix0 + kw : w;
      int64_t j0 = 0;
      for (; j0 + kBlock <= c; j0 += kBlock)
        row_max<kBlock>(xr, c, iw0, iw1, j0, kBlock, o + ox * c + j0);
      if (j0 < c) row_max<0>(xr, c, iw0, iw1, j0, c - j0, o + ox * c + j0);
    }
  }
}

// (height, width) of a two-value argument, both at least `minimum`.
static std::pair<int64_t, int64_t> checked_pair(at::IntArrayRef v, const char* name,
                                                int64_t minimum) {
  TORCH_CHECK(v.size() == 2, "max_pool2d_cl: ", name, " has ", v.size(),
              " values: expected 2 (height, width)");
  TORCH_CHECK(v[0] >= minimum && v[1] >= minimum, "max_pool2d_cl: ", name, "=", v,
              ": expected values >= ", minimum);
  return {v[0], v[1]};
}

// x: float32 (N, C, H, W) in channels-last memory; dilation 1, floor mode (no ceil_mode).
at::Tensor max_pool2d_cl(const at::Tensor& x, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                         at::IntArrayRef padding) {
  TORCH_CHECK(x.device().is_cpu(), "max_pool2d_cl: x is on ", x.device(), ": expected a CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat, "max_pool2d_cl: x has dtype ", x.scalar_type(),
              ": expected float32");
  TORCH_CHECK(x.dim() == 4, "max_pool2d_cl: x has ", x.dim(), " dimensions: expected 4 (N, C, H, W)");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "max_pool2d_cl: x must be contiguous in channels-last memory (x.contiguous("
              "memory_format=torch.channels_last))");
  const auto [kh, kw] = checked_pair(kernel_size, "kernel_size", 1);
  const auto [sy, sx] = checked_pair(stride, "stride", 1);
  const auto [py, px] = checked_pair(padding, "padding", 0);
  // torch's own rule: every window then holds at least one input pixel.
  TORCH_CHECK(2 * py <= kh && 2 * px <= kw, "max_pool2d_cl: padding=", padding,
              " with kernel_size=", kernel_size, ": expected padding <= kernel_size / 2");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = (h + 2 * py - kh) / sy + 1, ow = (w + 2 * px - kw) / sx + 1;
  TORCH_CHECK(h + 2 * py >= kh && w + 2 * px >= kw, "max_pool2d_cl: input ", h, "x", w,
              " with padding ", padding, " is smaller than kernel_size=", kernel_size);
  at::Tensor out = at::empty({n, oh, ow, c}, x.options());
  if (out.numel() == 0) return out.permute({0, 3, 1, 2});
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n * oh, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      max_pool_row(xp + (r / oh) * h * w * c, h, w, c, r % oh, ow, kh, kw, sy, sx, py, px,
                   op + r * ow * c);
  });
  // (N, OH, OW, C) memory seen as (N, C, OH, OW) in channels-last strides: no copy.
  return out.permute({0, 3, 1, 2});
}

}  // namespace hwq_pool

TORCH_LIBRARY_FRAGMENT(hwq, m) {
  m.def("max_pool2d_cl(Tensor x, int[2] kernel_size, int[2] stride, int[2] padding) -> Tensor");
}

TORCH_LIBRARY_IMPL(hwq, CPU, m) { m.impl("max_pool2d_cl", &hwq_pool::max_pool2d_cl); }

// Fused elementwise kernels for quantization-aware training (hwq/quant/fused.py).
//
// The fake-quantization of an activation written with torch ops costs 8-12 passes over the tensor
// (divide, compare, clamp, round, multiply, masks, residuals); on a CPU these passes, not the
// arithmetic, dominate the training step. Here the forward is one pass (read x, write y) and the
// backward one pass (read grad and x, write dx, accumulate the step's gradient). The arithmetic is
// exactly that of the torch code: x / step, clamp to [lo, hi], round half to even, times step; so
// both paths give bit-identical forward values and input gradients (tests/quant/test_fused.py).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <tuple>

#include "clones.h"

namespace hwq_qat {

constexpr int64_t kGrain = 16384;

// Round half to even, exact for |v| < 2^22 in the default rounding mode: after adding 1.5 * 2^23
// no fraction bits are left, so the FPU's round-to-nearest-even does the rounding (what
// std::nearbyint and torch.round do), without a libm call. NaN stays NaN. Callers clamp first.
static inline float round_even(float v) {
  // Built without -ffast-math, so the compiler keeps (v + magic) - magic as written.
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

static inline float clampf(float v, float lo, float hi) {
  // Written so that NaN falls through both tests and stays NaN, as torch.clamp does.
  return v < lo ? lo : (v > hi ? hi : v);
}

// The inner loops are HWQ_CLONES (clones.h): compiled for AVX-512, AVX2 and baseline x86-64.

HWQ_CLONES static void fq_forward_block(const float* __restrict px, float* __restrict py,
                                        int64_t n, float s, float lo, float hi) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) py[i] = round_even(clampf(px[i] / s, lo, hi)) * s;
}

HWQ_CLONES static float fq_backward_block(const float* __restrict px, const float* __restrict pg,
                                          float* __restrict pdx, int64_t n, float s, float lo,
                                          float hi) {
  float part = 0.0f;
  // simd reduction: the partial sums are added in lane order, hence "summation order" differs
  // from torch's sum, which is the only difference between the two paths.
#pragma omp simd reduction(+ : part)
  for (int64_t i = 0; i < n; ++i) {
    const float u = px[i] / s;
    const bool inside = u >= lo && u <= hi;
    const float c = clampf(u, lo, hi);
    pdx[i] = inside ? pg[i] : 0.0f;
    part += pg[i] * (inside ? round_even(c) - u : c);
  }
  return part;
}

HWQ_CLONES static void fq_mask_block(const float* __restrict px, const float* __restrict pg,
                                     float* __restrict pdx, int64_t n, float s, float lo,
                                     float hi) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float u = px[i] / s;
    pdx[i] = (u >= lo && u <= hi) ? pg[i] : 0.0f;
  }
}

HWQ_CLONES static void sign_forward_block(const float* __restrict px, float* __restrict py,
                                          int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) py[i] = px[i] != px[i] ? px[i] : (px[i] < 0.0f ? -1.0f : 1.0f);
}

HWQ_CLONES static void sign_backward_block(const float* __restrict px, const float* __restrict pg,
                                           float* __restrict pdx, int64_t n, bool approx) {
  if (approx) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float d = 2.0f - 2.0f * std::fabs(px[i]);
      pdx[i] = pg[i] * (d > 0.0f ? d : 0.0f);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) pdx[i] = std::fabs(px[i]) <= 1.0f ? pg[i] : 0.0f;
  }
}

// The activation codes of hwq.deploy's int8 path, stored as u8 = code + zp: the same arithmetic as
// fake_quant_forward up to the rounding (x / step, clamp, round half to even), then + zp. One pass
// instead of the five of the torch expression. Returns whether any x / step was NaN (no code).
HWQ_CLONES static bool quantize_u8_block(const float* __restrict px, uint8_t* __restrict pq,
                                         int64_t n, float s, float lo, float hi, float zp) {
  int nan = 0;
#pragma omp simd reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const float u = px[i] / s;
    nan |= u != u;
    const float c = clampf(u, lo, hi);
    pq[i] = static_cast<uint8_t>(static_cast<int>(round_even(c == c ? c : lo) + zp));
  }
  return nan != 0;
}

static void check_input(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), name, ": expected a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat, name, ": expected float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_non_overlapping_and_dense(), name,
              ": expected a dense tensor (contiguous or channels-last)");
}

static void check_range(double step, int64_t lo, int64_t hi) {
  TORCH_CHECK(step > 0 && std::isfinite(step), "step=", step, " must be finite and > 0");
  TORCH_CHECK(lo < hi && lo >= -(1 << 20) && hi <= (1 << 20), "code range [", lo, ", ", hi,
              "] must satisfy lo < hi within +/-2^20");
}

at::Tensor fake_quant_forward(const at::Tensor& x, double step, int64_t lo, int64_t hi) {
  check_input(x, "x");
  check_range(step, lo, hi);
  at::Tensor y = at::empty_like(x);  // same strides as x
  const float* px = x.const_data_ptr<float>();
  float* py = y.mutable_data_ptr<float>();
  const float s = static_cast<float>(step), flo = lo, fhi = hi;
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
    fq_forward_block(px + b, py + b, e - b, s, flo, fhi);
  });
  return y;
}

at::Tensor quantize_u8(const at::Tensor& x, double step, int64_t lo, int64_t hi, int64_t zp) {
  check_input(x, "x");
  check_range(step, lo, hi);
  TORCH_CHECK(lo + zp >= 0 && hi + zp <= 255, "codes [", lo, ", ", hi, "] + zp=", zp,
              " must lie in [0, 255] (u8)");
  at::Tensor q = at::empty_like(x, x.options().dtype(at::kByte));  // same strides as x
  const float* px = x.const_data_ptr<float>();
  uint8_t* pq = q.mutable_data_ptr<uint8_t>();
  const float s = static_cast<float>(step), flo = lo, fhi = hi, fzp = zp;
  std::atomic<bool> nan{false};
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
    if (quantize_u8_block(px + b, pq + b, e - b, s, flo, fhi, fzp)) nan = true;
  });
  TORCH_CHECK_VALUE(!nan, "x contains NaN: an integer code cannot represent it");
  return q;
}

// dx = grad where lo <= x/step <= hi, else 0. dstep_sum = sum(grad * r) with r = round(u) - u
// inside and lo / hi outside (u = x/step): LSQ's step gradient before its gradient scale.
std::tuple<at::Tensor, at::Tensor> fake_quant_backward(const at::Tensor& grad, const at::Tensor& x,
                                                       double step, int64_t lo, int64_t hi,
                                                       bool need_step_grad) {
  check_input(x, "x");
  check_input(grad, "grad");
  check_range(step, lo, hi);
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.strides() == x.strides(),
              "grad and x must have the same shape and strides");
  at::Tensor dx = at::empty_like(x);
  const float* px = x.const_data_ptr<float>();
  const float* pg = grad.const_data_ptr<float>();
  float* pdx = dx.mutable_data_ptr<float>();
  const float s = static_cast<float>(step), flo = lo, fhi = hi;
  double total = 0.0;
  if (need_step_grad) {
    total = at::parallel_reduce(
        0, x.numel(), kGrain, 0.0,
        [&](int64_t b, int64_t e, double acc) {
          return acc + fq_backward_block(px + b, pg + b, pdx + b, e - b, s, flo, fhi);
        },
        std::plus<double>());
  } else {
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
      fq_mask_block(px + b, pg + b, pdx + b, e - b, s, flo, fhi);
    });
  }
  return {dx, at::scalar_tensor(total, x.options())};
}

// sign with sign(0) = +1; NaN stays NaN.
at::Tensor sign_forward(const at::Tensor& x) {
  check_input(x, "x");
  at::Tensor y = at::empty_like(x);
  const float* px = x.const_data_ptr<float>();
  float* py = y.mutable_data_ptr<float>();
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
    sign_forward_block(px + b, py + b, e - b);
  });
  return y;
}

// Clipped STE: grad where |x| <= 1; ApproxSign (Bi-Real Net): grad * max(0, 2 - 2|x|).
at::Tensor sign_backward(const at::Tensor& grad, const at::Tensor& x, bool approx) {
  check_input(x, "x");
  check_input(grad, "grad");
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.strides() == x.strides(),
              "grad and x must have the same shape and strides");
  at::Tensor dx = at::empty_like(x);
  const float* px = x.const_data_ptr<float>();
  const float* pg = grad.const_data_ptr<float>();
  float* pdx = dx.mutable_data_ptr<float>();
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
    sign_backward_block(px + b, pg + b, pdx + b, e - b, approx);
  });
  return dx;
}

}  // namespace hwq_qat

TORCH_LIBRARY_FRAGMENT(hwq, m) {
  m.def("fake_quant_forward(Tensor x, float step, int lo, int hi) -> Tensor");
  m.def("fake_quant_backward(Tensor grad, Tensor x, float step, int lo, int hi, "
        "bool need_step_grad) -> (Tensor, Tensor)");
  m.def("sign_forward(Tensor x) -> Tensor");
  m.def("quantize_u8(Tensor x, float step, int lo, int hi, int zp) -> Tensor");
  m.def("sign_backward(Tensor grad, Tensor x, bool approx) -> Tensor");
}

TORCH_LIBRARY_IMPL(hwq, CPU, m) {
  m.impl("fake_quant_forward", &hwq_qat::fake_quant_forward);
  m.impl("fake_quant_backward", &hwq_qat::fake_quant_backward);
  m.impl("sign_forward", &hwq_qat::sign_forward);
  m.impl("quantize_u8", &hwq_qat::quantize_u8);
  m.impl("sign_backward", &hwq_qat::sign_backward);
}

// Bit packing on the GPU: values -> the packed layouts of the CPU kernels (csrc/hwq_ops.cpp), bit for
// bit. Values become bits as there: binary bit = (double(v) < 0), so +1, 0, -0 and NaN give 0
// (sign(0) = +1); otherwise the low `bits` bits of int64(double(v)) (truncation toward zero).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "hwq_cuda.h"

namespace hwq_cuda {
namespace {

template <typename T>
__device__ __forceinline__ double as_double(T v) {
  return static_cast<double>(v);
}
template <>
__device__ __forceinline__ double as_double<__half>(__half v) {
  return static_cast<double>(__half2float(v));
}
template <>
__device__ __forceinline__ double as_double<__nv_bfloat16>(__nv_bfloat16 v) {
  return static_cast<double>(__bfloat162float(v));
}

// Packs values src[c * stride], c < nc <= 64, into one word per plane: dst[p * plane_stride].
template <typename T>
__device__ __forceinline__ void pack_word(const T* src, int64_t stride, int nc, bool binary,
                                          int planes, uint64_t* dst, int64_t plane_stride) {
  uint64_t word[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int c = 0; c < nc; ++c) {
    const double v = as_double(src[c * stride]);
    if (binary) {
      word[0] |= static_cast<uint64_t>(v < 0.0) << c;
    } else {
      const uint64_t iv = static_cast<uint64_t>(static_cast<int64_t>(v));
#pragma unroll
      for (int p = 0; p < 8; ++p)
        if (p < planes) word[p] |= ((iv >> p) & 1u) << c;
    }
  }
#pragma unroll
  for (int p = 0; p < 8; ++p)
    if (p < planes) dst[p * plane_stride] = word[p];
}

// One thread per (n, h, group, word cw, w), w fastest: for NCHW input neighbouring threads read
// neighbouring pixels (coalesced); each thread writes its word of every plane.
template <typename T>
__global__ void pack_activations_kernel(const T* x, int64_t n, int64_t c, int64_t h, int64_t w,
                                        int64_t sn, int64_t sc, int64_t sh, int64_t sw, int planes,
                                        bool binary, int64_t groups, uint64_t* out) {
  const int64_t cg = c / groups, cwg = (cg + 63) / 64;
  const int64_t total = n * h * groups * cwg * w;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t r = idx;
    const int64_t iw = r % w;
    r /= w;
    const int64_t cw = r % cwg;
    r /= cwg;
    const int64_t g = r % groups;
    r /= groups;
    const int64_t ih = r % h, in = r / h;
    const int64_t c0 = g * cg + cw * 64;
    const int nc = static_cast<int>(cg - cw * 64 < 64 ? cg - cw * 64 : 64);
    const T* src = x + in * sn + c0 * sc + ih * sh + iw * sw;
    uint64_t* dst = out + (((in * h + ih) * w + iw) * groups + g) * planes * cwg + cw;
    pack_word(src, sc, nc, binary, planes, dst, cwg);
  }
}

// One thread per (o, tap, word cw); the output was zero-filled (padding panels stay zero).
template <typename T>
__global__ void pack_weights_kernel(const T* wt, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                                    int64_t s0, int64_t s1, int64_t s2, int64_t s3, int planes,
                                    bool binary, int64_t groups, int64_t np, uint64_t* out) {
  const int64_t cwg = (cg + 63) / 64, og = o / groups, k = kh * kw * cwg;
  const int64_t total = o * kh * kw * cwg;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t cw = idx % cwg, rest = idx / cwg;
    const int64_t tap = rest % (kh * kw), oi = rest / (kh * kw);
    const int64_t a = tap / kw, b = tap % kw;
    const int64_t g = oi / og, oo = oi % og;
    const int nc = static_cast<int>(cg - cw * 64 < 64 ? cg - cw * 64 : 64);
    const T* src = wt + oi * s0 + cw * 64 * s1 + a * s2 + b * s3;
    uint64_t* dst = out + ((g * planes * np + oo / 8) * k + tap * cwg + cw) * 8 + oo % 8;
    pack_word(src, s1, nc, binary, planes, dst, np * k * 8);
  }
}

unsigned blocks_for(int64_t total) {
  const int64_t b = (total + 255) / 256;
  return static_cast<unsigned>(b < 65536 ? (b > 0 ? b : 1) : 65536);  // grid-stride loops cover the rest
}

template <typename F>
cudaError_t by_dtype(int dtype, F&& f) {
  switch (dtype) {
    case kF32: return f(static_cast<const float*>(nullptr));
    case kF64: return f(static_cast<const double*>(nullptr));
    case kF16: return f(static_cast<const __half*>(nullptr));
    case kBF16: return f(static_cast<const __nv_bfloat16*>(nullptr));
    case kI8: return f(static_cast<const int8_t*>(nullptr));
    case kU8: return f(static_cast<const uint8_t*>(nullptr));
    case kI16: return f(static_cast<const int16_t*>(nullptr));
    case kI32: return f(static_cast<const int32_t*>(nullptr));
    case kI64: return f(static_cast<const int64_t*>(nullptr));
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t pack_activations(const void* x, int dtype, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t sn, int64_t sc, int64_t sh, int64_t sw, int bits, bool binary,
                             int64_t groups, uint64_t* out, cudaStream_t stream) {
  const int planes = binary ? 1 : bits;
  const int64_t total = n * h * groups * ((c / groups + 63) / 64) * w;
  if (total == 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto tag) {
    using T = typename std::remove_const<typename std::remove_pointer<decltype(tag)>::type>::type;
    pack_activations_kernel<T><<<blocks_for(total), 256, 0, stream>>>(
        static_cast<const T*>(x), n, c, h, w, sn, sc, sh, sw, planes, binary, groups, out);
    return cudaGetLastError();
  });
}

cudaError_t pack_weights(const void* wt, int dtype, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                         int64_t s0, int64_t s1, int64_t s2, int64_t s3, int bits, bool binary,
                         int64_t groups, int64_t np, uint64_t* out, cudaStream_t stream) {
  const int planes = binary ? 1 : bits;
  const int64_t total = o * kh * kw * ((cg + 63) / 64);
  if (total == 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto tag) {
    using T = typename std::remove_const<typename std::remove_pointer<decltype(tag)>::type>::type;
    pack_weights_kernel<T><<<blocks_for(total), 256, 0, stream>>>(
        static_cast<const T*>(wt), o, cg, kh, kw, s0, s1, s2, s3, planes, binary, groups, np, out);
    return cudaGetLastError();
  });
}

}  // namespace hwq_cuda

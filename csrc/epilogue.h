// The epilogue of a micro-tile: integer sums to outputs. Plain loops, included by every kernel
// file so that each copy is auto-vectorized for that file's instruction set (per output element the
// kernels do only K/8 vector operations, so a scalar epilogue would cost as much as the products).
// Sums are int32 here: the driver refuses shapes whose bound K * max|x| * max|w| reaches 2^31.
// Expects HWQ_EPI_NS to name the namespace of this copy.
namespace HWQ_EPI_NS {

// s = offset[r] + beta * C[r * ldc + c] (binary: K_valid - 2 * xor count; bit-serial: the sum).
static void epilogue_int(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                         const int64_t* offset, int64_t beta, int32_t* __restrict out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* c = C + r * ldc;
    int32_t* o = out + r * ldo;
    const int32_t off = static_cast<int32_t>(offset[r]), b = static_cast<int32_t>(beta);
    for (int64_t j = 0; j < cols; ++j) o[j] = off + b * static_cast<int32_t>(c[j]);
  }
}

// out = float(s) * scale[c] + bias[c]: a multiply then an add, never fused (built with
// -ffp-contract=off), so every kernel path rounds the same way. ADD: then + residual[r * ldo + c]
// (a BasicBlock's shortcut, in the same layout as out). RELU: then v < 0 ? 0 : v, which is
// torch.relu bit for bit (NaN and -0.0 pass through; a max() would differ on NaN).
template <bool ADD, bool RELU>
static inline void epilogue_float_rows(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                                       const int64_t* offset, int64_t beta, const float* scale,
                                       const float* bias, float* __restrict out, int64_t ldo,
                                       const float* __restrict residual) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* c = C + r * ldc;
    float* o = out + r * ldo;
    const float* res = ADD ? residual + r * ldo : nullptr;
    const int32_t off = static_cast<int32_t>(offset[r]), b = static_cast<int32_t>(beta);
    for (int64_t j = 0; j < cols; ++j) {
      float v = static_cast<float>(off + b * static_cast<int32_t>(c[j])) * scale[j] + bias[j];
      if (ADD) v = v + res[j];
      o[j] = RELU && v < 0.0f ? 0.0f : v;
    }
  }
}

static void epilogue_float(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                           const int64_t* offset, int64_t beta, const float* scale,
                           const float* bias, float* __restrict out, int64_t ldo,
                           const float* residual, bool relu) {
  if (residual != nullptr) {
    if (relu)
      epilogue_float_rows<true, true>(C, ldc, rows, cols, offset, beta, scale, bias, out, ldo,
                                      residual);
    else
      epilogue_float_rows<true, false>(C, ldc, rows, cols, offset, beta, scale, bias, out, ldo,
                                       residual);
  } else if (relu) {
    epilogue_float_rows<false, true>(C, ldc, rows, cols, offset, beta, scale, bias, out, ldo,
                                     nullptr);
  } else {
    epilogue_float_rows<false, false>(C, ldc, rows, cols, offset, beta, scale, bias, out, ldo,
                                      nullptr);
  }
}

// Sign bits of float(s) * scale + bias for a following binary layer: bit 1 where the value is
// negative (0 and NaN give +1). Columns start at output channel o0 (a multiple of 8 unless the
// groups have out_channels / groups % 8 != 0), so the 8 channels of a panel are one byte that may
// straddle two 64-bit output words.
static void epilogue_sign(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                          const int64_t* offset, int64_t beta, const float* scale,
                          const float* bias, int64_t o0, uint64_t* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* c = C + r * ldc;
    const int32_t off = static_cast<int32_t>(offset[r]), b = static_cast<int32_t>(beta);
    for (int64_t j0 = 0; j0 < cols; j0 += 8) {
      uint64_t byte = 0;
      const int64_t n = cols - j0 < 8 ? cols - j0 : 8;
      for (int64_t l = 0; l < n; ++l) {
        const float y = static_cast<float>(off + b * static_cast<int32_t>(c[j0 + l])) *
                            scale[j0 + l] + bias[j0 + l];
        byte |= static_cast<uint64_t>(y < 0.0f) << l;
      }
      const int64_t o = o0 + j0, shift = o % 64;
      out[r * ldo + o / 64] |= byte << shift;
      if (shift + n > 64) out[r * ldo + o / 64 + 1] |= byte >> (64 - shift);
    }
  }
}

// Portable sign packing (the SIMD files define their own pack_sign_f32 with compare masks).
static inline void pack_sign_f32_portable(const float* src, int64_t pixels, int64_t pixel_stride,
                                          int64_t nc, uint64_t* dst, int64_t dst_stride) {
  for (int64_t p = 0; p < pixels; ++p) {
    const float* s = src + p * pixel_stride;
    uint64_t word = 0;
    for (int64_t c = 0; c < nc; ++c) word |= static_cast<uint64_t>(s[c] < 0.0f) << c;
    dst[p * dst_stride] = word;
  }
}

}  // namespace HWQ_EPI_NS

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
//
// The SIMD files (HWQ_EPI_STREAM512: AVX-512F, HWQ_EPI_STREAM256: AVX2) write the float outputs
// with non-temporal stores wherever a row starts on a vector boundary: a layer's output (12.8 MB
// for a ResNet-18 64-channel layer at batch 16) does not stay in cache anyway, and a normal store
// first reads each line it writes (read for ownership). Measured on a Zen 4 core under load, the
// 64-channel 56x56 binary layer went from 4.8 to 3.6 ms (docs/kernels.md). The same operations
// in the same order as the scalar loop: int64 -> int32 truncation, offset + beta * s, a round-to-
// nearest conversion, a multiply, an add (never fused), the residual add, v < 0 ? 0 : v (a compare
// that is false for NaN and -0.0, as the scalar ternary).
#if defined(HWQ_EPI_STREAM512)
constexpr uintptr_t kStreamBytes = 64;

// Columns 0 .. cols - cols % 16 of one row; returns where the scalar tail starts.
template <bool ADD, bool RELU>
static inline int64_t stream_row(const int64_t* c, int32_t off, int32_t b, int64_t cols,
                                 const float* scale, const float* bias, float* o,
                                 const float* res) {
  const __m512i offv = _mm512_set1_epi32(off), bv = _mm512_set1_epi32(b);
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    const __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void*)(c + j)));
    const __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void*)(c + j + 8)));
    const __m512i s = _mm512_add_epi32(
        offv, _mm512_mullo_epi32(bv, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)));
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_loadu_ps(scale + j)),
                             _mm512_loadu_ps(bias + j));
    if (ADD) v = _mm512_add_ps(v, _mm512_loadu_ps(res + j));
    if (RELU)
      v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v,
                               _mm512_setzero_ps());
    _mm512_stream_ps(o + j, v);
  }
  return j;
}
#elif defined(HWQ_EPI_STREAM256)
constexpr uintptr_t kStreamBytes = 32;

template <bool ADD, bool RELU>
static inline int64_t stream_row(const int64_t* c, int32_t off, int32_t b, int64_t cols,
                                 const float* scale, const float* bias, float* o,
                                 const float* res) {
  const __m256i offv = _mm256_set1_epi32(off), bv = _mm256_set1_epi32(b);
  const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);  // int64 -> int32
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    const __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
        _mm256_loadu_si256((const __m256i*)(c + j)), low_dwords));
    const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
        _mm256_loadu_si256((const __m256i*)(c + j + 4)), low_dwords));
    const __m256i s = _mm256_add_epi32(
        offv, _mm256_mullo_epi32(bv, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1)));
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(scale + j)),
                             _mm256_loadu_ps(bias + j));
    if (ADD) v = _mm256_add_ps(v, _mm256_loadu_ps(res + j));
    if (RELU)
      v = _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    _mm256_stream_ps(o + j, v);
  }
  return j;
}
#endif

template <bool ADD, bool RELU>
static inline void epilogue_float_rows(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                                       const int64_t* offset, int64_t beta, const float* scale,
                                       const float* bias, float* __restrict out, int64_t ldo,
                                       const float* __restrict residual) {
  bool streamed = false;
  (void)streamed;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* c = C + r * ldc;
    float* o = out + r * ldo;
    const float* res = ADD ? residual + r * ldo : nullptr;
    const int32_t off = static_cast<int32_t>(offset[r]), b = static_cast<int32_t>(beta);
    int64_t j = 0;
#if defined(HWQ_EPI_STREAM512) || defined(HWQ_EPI_STREAM256)
    if ((reinterpret_cast<uintptr_t>(o) & (kStreamBytes - 1)) == 0) {
      j = stream_row<ADD, RELU>(c, off, b, cols, scale, bias, o, res);
      streamed = true;
    }
#endif
    for (; j < cols; ++j) {
      float v = static_cast<float>(off + b * static_cast<int32_t>(c[j])) * scale[j] + bias[j];
      if (ADD) v = v + res[j];
      o[j] = RELU && v < 0.0f ? 0.0f : v;
    }
  }
#if defined(HWQ_EPI_STREAM512) || defined(HWQ_EPI_STREAM256)
  if (streamed) _mm_sfence();  // order the non-temporal stores before the threads join
#endif
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

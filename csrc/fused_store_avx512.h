// 16 output channels of one row of a fused AVX-512 kernel (isa.h, FusedFloat), shared by the two
// AVX-512 kernel files. Included inside their `#pragma GCC target` region after <immintrin.h>;
// expects HWQ_EPI_NS to name the namespace of this copy, as epilogue.h does.
namespace HWQ_EPI_NS {

// lo, hi: the int64 XOR counts of channels 0-7 and 8-15 (< 2^31, as the driver's int32 bound
// ensures), narrowed into one vector of int32 (vpermt2d picks the low halves); then
// s = offset - 2 * S (int32, modulo 2^32), float(s) * scale + bias, + residual, ReLU as
// max(+0, v) (vmaxps returns its second operand when either is NaN or both are zeros, so NaN and
// -0.0 pass through: v < 0 ? 0 : v bit for bit), and one 64-byte store: non-temporal where the
// caller says the row is whole and 64-byte aligned (the output does not stay in cache, and a
// non-temporal store of a whole line skips reading it first), else masked by m, the channels
// that exist. The operations of epilogue.h in the same order. scale and bias are loaded (masked)
// by the caller, once per tile.
static inline __attribute__((always_inline)) __m512 fused_value16(__m512i lo, __m512i hi,
                                                                  const int32_t* off, __m512 scale,
                                                                  __m512 bias, __mmask16 m) {
  const __m512i low_halves =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i x = _mm512_permutex2var_epi32(lo, low_halves, hi);
  const __m512i s = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, off), _mm512_add_epi32(x, x));
  return _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), scale), bias);
}

// Packed sign outputs (isa.h, FusedFloat::signs): bit c = v < 0, an ordered compare (NaN and -0.0
// give 0, as epilogue.h's y < 0.0f), for the channels in m; 0 for the others.
static inline __attribute__((always_inline)) uint32_t fused_sign16(__m512i lo, __m512i hi,
                                                                   const int32_t* off,
                                                                   __m512 scale, __m512 bias,
                                                                   __mmask16 m) {
  return _mm512_mask_cmp_ps_mask(m, fused_value16(lo, hi, off, scale, bias, m),
                                 _mm512_setzero_ps(), _CMP_LT_OQ);
}

template <bool ADD, bool RELU>
static inline __attribute__((always_inline)) void fused_store16(__m512i lo, __m512i hi,
                                                                const int32_t* off, __m512 scale,
                                                                __m512 bias, const float* res,
                                                                float* o, __mmask16 m,
                                                                bool stream) {
  __m512 v = fused_value16(lo, hi, off, scale, bias, m);
  if (ADD) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res));
  if (RELU) v = _mm512_max_ps(_mm512_setzero_ps(), v);
  if (stream)
    _mm512_stream_ps(o, v);
  else
    _mm512_mask_storeu_ps(o, m, v);
}

}  // namespace HWQ_EPI_NS

// Sign bits of float32 values with AVX-512F compare masks (PackSignFn in isa.h), shared by the two
// AVX-512 kernel files. Included inside their `#pragma GCC target` region after <immintrin.h>;
// expects HWQ_EPI_NS to name the namespace of this copy, as epilogue.h does.
namespace HWQ_EPI_NS {
// x < 0 as in the generic packer: an ordered compare, so -0.0 and NaN give bit 0 (+1).
static void pack_sign_f32(const float* src, int64_t pixels, int64_t pixel_stride, int64_t nc,
                          uint64_t* dst, int64_t dst_stride) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = 0; p < pixels; ++p) {
    const float* s = src + p * pixel_stride;
    uint64_t word = 0;
    int64_t c = 0;
    for (; c + 16 <= nc; c += 16)
      word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(s + c), zero, _CMP_LT_OQ)) << c;
    if (c < nc) {
      const __mmask16 m = static_cast<__mmask16>((1u << (nc - c)) - 1);
      word |= static_cast<uint64_t>(
                  _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, s + c), zero, _CMP_LT_OQ)) << c;
    }
    dst[p * dst_stride] = word;
  }
}
}  // namespace HWQ_EPI_NS

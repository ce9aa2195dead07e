// Scalar micro-kernel (no SIMD): one output row times one panel of 8 output channels per call
// of the inner loop. Included by kernels_scalar.cpp twice, with and without the popcnt target,
// because plain -O3 without -mpopcnt turns __builtin_popcountll into a call to libgcc's
// __popcountdi2 (a table lookup) instead of one POPCNT instruction (Intel SDM, POPCNT).
// Expects HWQ_SCALAR_NS to name the namespace of this instance.
namespace HWQ_SCALAR_NS {

constexpr int MR = 2;

template <bool XOR>
static void micro(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                  int64_t* C, int64_t ldc, int64_t coef) {
  (void)ldb;
  int64_t acc[MR][8] = {};
  for (int64_t k = 0; k < K; ++k) {
    const uint64_t* b = B + k * 8;
    for (int r = 0; r < MR; ++r) {
      const uint64_t a = A[r * lda + k];
      for (int l = 0; l < 8; ++l)
        acc[r][l] += __builtin_popcountll(XOR ? (a ^ b[l]) : (a & b[l]));
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int l = 0; l < 8; ++l) C[r * ldc + l] += coef * acc[r][l];
}

// 8 independent (xor, popcount, add) chains per iteration on register operands.
static int64_t peak(int64_t iters) {
  uint64_t b = 0x0123456789abcdefull;
  int64_t acc[8] = {};
  for (int64_t it = 0; it < iters; ++it) {
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__ volatile("" : "+r"(b));
#endif
    for (int i = 0; i < 8; ++i) acc[i] += __builtin_popcountll(b ^ (0x9E3779B97F4A7C15ull * (i + 1)));
  }
  int64_t s = 0;
  for (int i = 0; i < 8; ++i) s += acc[i];
  return s;
}

}  // namespace HWQ_SCALAR_NS

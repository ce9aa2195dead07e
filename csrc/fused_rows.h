// The fused kernels' loop over a row block's tiles and their dispatch on the output (float, with or
// without the residual and the ReLU, or packed signs; isa.h: MicroFloatFn, FusedFloat), shared by the kernel files that have a fused kernel. Included
// inside their `#pragma GCC target` region after their tile function; expects HWQ_EPI_NS to name
// the namespace, which defines kFusedRows and micro_float_impl<ADD, RELU, SIGN>(A, koff, B, ldb,
// K, f), the tile of kFusedRows rows (SIGN: packed sign outputs, isa.h).
namespace HWQ_EPI_NS {

// The row block's tiles, one after another in this call. Not inlined into micro_float's dispatch:
// with the variants' loops in one function GCC allocated the registers of the tile worse (Zen 5, the
// vpopcntdq tile at K = 9: 486-496 against 524-531 binary MAC/cycle, csrc/bench/micro_bench.cpp).
//
// With a residual (ADD), each tile's epilogue reads the residual's rows right after its products,
// and without a prefetch every tile then waited on those lines: the 64-channel ResNet-18 layer
// took 3.8 ms with the residual add against 0.96 ms without (Zen 5, avx512_vpopcntdq). So the
// residual of the first tile is prefetched before the loop and each tile's of the next while the
// tile runs.
static inline void prefetch_residual(const float* res, int64_t rows, int64_t ldo, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const char* p = reinterpret_cast<const char*>(res + r * ldo);
    for (int64_t b = 0; b < cols * 4; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    _mm_prefetch(p + cols * 4 - 1, _MM_HINT_T0);  // the last line, when the row is not aligned
  }
}

template <bool ADD, bool RELU, bool SIGN>
__attribute__((noinline)) static void micro_float_rows(const uint64_t* const* A,
                                                      const int64_t* koff, const uint64_t* B,
                                                      int64_t ldb, int64_t K,
                                                      const hwq::FusedFloat& f) {
  if (ADD) prefetch_residual(f.residual, f.rows < kFusedRows ? f.rows : kFusedRows, f.ldo, f.cols);
  for (int64_t r = 0; r < f.rows; r += kFusedRows) {
    if (ADD && r + kFusedRows < f.rows) {
      const int64_t next = f.rows - r - kFusedRows;
      prefetch_residual(f.residual + (r + kFusedRows) * f.ldo,
                        next < kFusedRows ? next : kFusedRows, f.ldo, f.cols);
    }
    micro_float_impl<ADD, RELU, SIGN>(A + r, koff, B, ldb, K, hwq::fused_tile(f, r, kFusedRows));
  }
}

static void micro_float(const uint64_t* const* A, const int64_t* koff, const uint64_t* B,
                        int64_t ldb, int64_t K, const hwq::FusedFloat& f) {
  if (f.signs != nullptr) {
    micro_float_rows<false, false, true>(A, koff, B, ldb, K, f);
  } else if (f.residual != nullptr) {
    if (f.relu) micro_float_rows<true, true, false>(A, koff, B, ldb, K, f);
    else micro_float_rows<true, false, false>(A, koff, B, ldb, K, f);
  } else if (f.relu) {
    micro_float_rows<false, true, false>(A, koff, B, ldb, K, f);
  } else {
    micro_float_rows<false, false, false>(A, koff, B, ldb, K, f);
  }
}

}  // namespace HWQ_EPI_NS

// The fused kernels' loop over a row block's tiles and their dispatch on the residual and the ReLU
// (isa.h: MicroFloatFn, FusedFloat), shared by the kernel files that have a fused kernel. Included
// inside their `#pragma GCC target` region after their tile function; expects HWQ_EPI_NS to name
// the namespace, which defines kFusedRows and micro_float_impl<ADD, RELU>(A, koff, B, ldb, K, f),
// the tile of kFusedRows rows.
namespace HWQ_EPI_NS {

// The row block's tiles, one after another in this call. Not inlined into micro_float's dispatch:
// with the four loops in one function GCC allocated the registers of the tile worse (Zen 5, the
// vpopcntdq tile at K = 9: 486-496 against 524-531 binary MAC/cycle, csrc/bench/micro_bench.cpp).
template <bool ADD, bool RELU>
__attribute__((noinline)) static void micro_float_rows(const uint64_t* const* A,
                                                      const int64_t* koff, const uint64_t* B,
                                                      int64_t ldb, int64_t K,
                                                      const hwq::FusedFloat& f) {
  for (int64_t r = 0; r < f.rows; r += kFusedRows)
    micro_float_impl<ADD, RELU>(A + r, koff, B, ldb, K, hwq::fused_tile(f, r, kFusedRows));
}

static void micro_float(const uint64_t* const* A, const int64_t* koff, const uint64_t* B,
                        int64_t ldb, int64_t K, const hwq::FusedFloat& f) {
  if (f.residual != nullptr) {
    if (f.relu) micro_float_rows<true, true>(A, koff, B, ldb, K, f);
    else micro_float_rows<true, false>(A, koff, B, ldb, K, f);
  } else if (f.relu) {
    micro_float_rows<false, true>(A, koff, B, ldb, K, f);
  } else {
    micro_float_rows<false, false>(A, koff, B, ldb, K, f);
  }
}

}  // namespace HWQ_EPI_NS

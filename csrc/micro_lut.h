// Byte-table popcount micro-kernel (the MicroFn contract of isa.h), for rows too short for the AVX2
// path's Harley-Seal kernel (kernels_avx2.cpp).
//
// popcount of each byte = table[low nibble] + table[high nibble] (two vpshufb); the byte counts of
// successive words accumulate in 8-bit lanes and are summed into 64-bit lanes (vpsadbw) every 31
// words, before a byte could overflow (31 * 8 = 248 <= 255). Each 64-bit lane is one output channel
// (outer-product tile: a broadcast activation word against 8 weight lanes), so no horizontal sum is
// needed.
// Expects a traits struct V (vector type, lane count and ops) defined in the including file, whose
// functions carry the file's target pragma.
namespace HWQ_LUT_NS {

// The two ways a kernel finds word k of tile row r: an im2col block (A[r * lda + k]), or the
// windows read in place (isa.h, MicroFloatFn: row[r][koff[k]]). from(r0) is the same addressing
// starting at row r0.
struct RowsStrided {
  const uint64_t* A;
  int64_t lda;
  uint64_t operator()(int r, int64_t k) const { return A[r * lda + k]; }
  const uint64_t* at(int r, int64_t k) const { return A + r * lda + k; }
  RowsStrided from(int r0) const { return {A + r0 * lda, lda}; }
};
struct RowsIndirect {
  const uint64_t* const* row;
  const int64_t* koff;
  uint64_t operator()(int r, int64_t k) const { return row[r][koff[k]]; }
  const uint64_t* at(int r, int64_t k) const { return row[r] + koff[k]; }
  RowsIndirect from(int r0) const { return {row + r0, koff}; }
};

// The MicroFn contract with the rows given by a row addressing (above). ASSIGN: C is written
// rather than added to (K <= 31 words, one flush; V::assign).
template <bool XOR, int MR, int NV, typename Rows, bool ASSIGN = false>
static inline __attribute__((always_inline)) void lut_tile(const Rows& A, const uint64_t* B,
                                                           int64_t ldb, int64_t K, int64_t* C,
                                                           int64_t ldc, int64_t coef) {
  constexpr int L = V::lanes;  // 64-bit words per vector
  // coef is +/-2^s (1 for binary): the byte sums are shifted and added to or subtracted from C
  // directly, with no per-tile scalar pass.
  const bool negative = coef < 0;
  const int shift = __builtin_ctzll(static_cast<uint64_t>(negative ? -coef : coef));
  typename V::T acc[MR][NV];
  const typename V::T lut = V::nibble_table(), low4 = V::low_nibble_mask();
  for (int64_t k0 = 0; k0 < K; k0 += 31) {
    const int64_t k1 = k0 + 31 < K ? k0 + 31 : K;
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
    for (int64_t k = k0; k < k1; ++k) {
      typename V::T b[NV];
      for (int v = 0; v < NV; ++v)  // vector v covers lanes (v*L) % 8 .. of panel v*L / 8
        b[v] = V::load(B + (v * L / 8) * ldb + k * 8 + (v * L) % 8);
      for (int r = 0; r < MR; ++r) {
        const typename V::T a = V::broadcast(A(r, k));
        for (int v = 0; v < NV; ++v) {
          const typename V::T t = XOR ? V::bxor(a, b[v]) : V::band(a, b[v]);
          acc[r][v] = V::add8(acc[r][v], V::popcount_bytes(t, lut, low4));
        }
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) {
        if constexpr (ASSIGN)
          V::assign(C + r * ldc + v * L, acc[r][v]);
        else
          V::accumulate(C + r * ldc + v * L, acc[r][v], shift, negative);
      }
  }
}

template <bool XOR, int MR, int NV>
static void micro_lut(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                      int64_t* C, int64_t ldc, int64_t coef) {
  lut_tile<XOR, MR, NV>(RowsStrided{A, lda}, B, ldb, K, C, ldc, coef);
}

}  // namespace HWQ_LUT_NS

// The interface between the ISA-neutral driver (hwq_ops.cpp) and the per-ISA micro-kernels.
//
// This header includes no torch or standard-library headers on purpose: the kernel files are
// compiled under `#pragma GCC target(...)`, and any inline function they pulled in from a shared
// header could be emitted with AVX-512 instructions and then picked by the linker for every caller,
// crashing CPUs without them. Kernel files therefore see only <stdint.h> and <immintrin.h>.
#pragma once
#include <stdint.h>

namespace hwq {

// C[r * ldc + c] += coef * sum_{k < K} popcount(A[r * lda + k] OP B_c[k]) for rows r < mr and
// columns c < 8 * panels, where column c is lane c % 8 of panel c / 8 and word k of lane l of
// panel p is B[p * ldb + k * 8 + l]. OP is XOR (binary) or AND (bit-serial).
typedef void (*MicroFn)(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t K,
                        int64_t* C, int64_t ldc, int64_t coef);

// Epilogues (epilogue.h): s = offset[r] + beta * C[r * ldc + c] for r < rows, c < cols, then
// int32 s, float(s) * scale[c] + bias[c] (with residual: then + residual[r * ldo + c]; with relu:
// then v < 0 ? 0 : v), or the sign bits of float(s) * scale[c] + bias[c].
typedef void (*EpiIntFn)(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                         const int64_t* offset, int64_t beta, int32_t* out, int64_t ldo);
typedef void (*EpiFloatFn)(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                           const int64_t* offset, int64_t beta, const float* scale,
                           const float* bias, float* out, int64_t ldo, const float* residual,
                           bool relu);
typedef void (*EpiSignFn)(const int64_t* C, int64_t ldc, int64_t rows, int64_t cols,
                          const int64_t* offset, int64_t beta, const float* scale,
                          const float* bias, int64_t o0, uint64_t* out, int64_t ldo);

// The float epilogue fused into a binary micro-kernel (used where one call covers the whole
// reduction: binary layers, one plane pair). For rows r < rows and columns c < cols of the tile:
//   S = sum_{k < K} popcount(A[r][koff[k]] XOR B_c[k])
//   s = offset[r][col + c] - 2 * int32(S)                (int32 arithmetic, modulo 2^32)
//   v = float(s) * scale[c] + bias[c]  (then + residual[r * ldo + c]; then v < 0 ? 0 : v)
//   out[r * ldo + c] = v
// where offset[r][c] = K_valid + 2 * (the row's padding correction at column c), so these are
// exactly the values of the unfused route (C block starting at minus the correction, MicroFn,
// EpiFloatFn with beta = -2: the same s modulo 2^32, and the true s fits in int32). Rows past
// `rows` are computed and dropped. Non-temporal stores may be used: the caller issues
// _mm_sfence() before its results are read by another thread.
//
// One call covers a column tile (cols <= 8 * panels) of a whole row block: the kernel loops over
// its tiles of fused_mr rows itself, so that the call, its dispatch and its set-up are paid once
// per block and not once per tile (on a Zen 5 core, 6 x 32 tiles at K = 9 words: 19% faster;
// docs/kernels.md). Row arrays (offset, A) hold ceil(rows / fused_mr) * fused_mr entries: past
// `rows` the driver repeats a row of the last tile (computed, not written). The row arrays do not
// depend on the column tile (`col` says where it starts in each row's offsets), so the driver
// builds them once per row block and not once per tile and call (Zen 4, 64-channel layer: that
// rebuilding was a tenth of the layer's time; docs/kernels.md).
//
// Packed sign outputs (OutMode 2) take the same route with `signs` set and `out` null: then for
// each row the kernel writes one 32-bit word, bit c = (v < 0) for c < cols (an ordered compare: NaN
// and -0.0 give 0) and 0 above, where v = float(s) * scale[c] + bias[c] (no residual, no ReLU). It
// is the half of the row's packed 64-bit output word that holds the tile's columns, so the tile's
// first column is a multiple of 32 (the driver checks), and ldo counts 32-bit words.
struct FusedFloat {
  const int32_t* const* offset;  // per row: its offsets, from output channel 0 of the layer
  int64_t col;                   // the tile's first column in offset[r]
  const float* scale;            // at the tile's first column
  const float* bias;
  float* out;                    // at the block's first row and the tile's first column, or null
  int64_t ldo;
  const float* residual;         // the layout of out, or nullptr
  int64_t rows, cols;            // rows (<= the driver's row block) and columns (<= 8 * panels)
  bool relu;
  uint32_t* signs;               // packed sign outputs at the block's first row, or nullptr
};
// The tile of rows r .. r + mr - 1 of a row block's call (the kernels' loop over their tiles).
inline FusedFloat fused_tile(const FusedFloat& f, int64_t r, int64_t mr) {
  return FusedFloat{f.offset + r, f.col, f.scale, f.bias,
                    f.out != nullptr ? f.out + r * f.ldo : nullptr, f.ldo,
                    f.residual != nullptr ? f.residual + r * f.ldo : nullptr,
                    f.rows - r < mr ? f.rows - r : mr, f.cols, f.relu,
                    f.signs != nullptr ? f.signs + r * f.ldo : nullptr};
}
// The activations are addressed without an im2col copy: word k of row r is A[r][koff[k]] (the
// driver points A[r] at the window's first word in the zero-padded packed input and koff[k] is
// tap k / cwg's offset from it plus k % cwg; an im2col block is A[r] = block + r * K,
// koff[k] = k). B, ldb and K as in MicroFn.
typedef void (*MicroFloatFn)(const uint64_t* const* A, const int64_t* koff, const uint64_t* B,
                             int64_t ldb, int64_t K, const FusedFloat& f);

// Sign bits of float32 values, for binary layers fed by float outputs in channels-last memory:
// dst[p * dst_stride] = sum_c (src[p * pixel_stride + c] < 0) << c for c < nc <= 64, p < pixels.
typedef void (*PackSignFn)(const float* src, int64_t pixels, int64_t pixel_stride, int64_t nc,
                           uint64_t* dst, int64_t dst_stride);

struct KernelTable {
  const char* name;
  int mr;       // rows of A per micro-tile
  int panels;   // weight panels (8 output channels each) per micro-tile; divides 4
  MicroFn xor_popcount;
  MicroFn and_popcount;
  EpiIntFn epilogue_int;
  EpiFloatFn epilogue_float;
  EpiSignFn epilogue_sign;
  PackSignFn pack_sign_f32;
  // Register-resident ceiling of this path's popcount arithmetic (scripts/bench_kernels.py):
  // runs `iters` iterations of the path's own XOR + popcount + accumulate sequence on operands
  // held in registers (no loads or stores in the loop) and returns a checksum; each iteration is
  // peak_macs binary MACs (bits).
  int64_t (*peak)(int64_t iters);
  int64_t peak_macs;
  // xor_popcount with the float epilogue fused (FusedFloat), same mr x panels tile; nullptr where
  // the path has none (the driver then runs the C block, xor_popcount and epilogue_float).
  MicroFloatFn xor_popcount_float;
  // The fused kernel's tile: fused_mr rows x fused_panels panels (rows <= 16; the driver's row
  // blocks are a multiple of it); one call loops over a row block's tiles.
  int fused_mr;
  int fused_panels;
};

// Each returns nullptr when the path was not compiled (non-x86 build). The caller checks the CPU.
const KernelTable* table_scalar();
const KernelTable* table_scalar_popcnt();
const KernelTable* table_avx2();
const KernelTable* table_avx512bw();
const KernelTable* table_avx512_vpopcntdq();

}  // namespace hwq

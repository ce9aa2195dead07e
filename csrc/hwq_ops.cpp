// hwq._C: packed binary (XNOR-popcount) and bit-serial convolution on the CPU, registered as
// torch.ops.hwq.*. This file is ISA-neutral: it checks arguments, packs bits, builds packed im2col
// rows, threads with at::parallel_for (torch's own OpenMP pool and thread count) and applies the
// epilogue; the inner products run in the micro-kernel of the ISA chosen at run time (isa.h).
//
// Layouts (int64 tensors holding 64 bits per element; identical to hwq/kernels/reference.py):
//   activations (N, H, W, G, P, Cwg): pixel-major (NHWC), one block of words per group, P bit planes
//     (plane i = bit i of an unsigned code; binary: one plane, bit 1 = -1), Cwg = ceil(C/G / 64).
//   weights (G, P, NP, K, 8): per group and plane, NP panels of 8 output channels; row word
//     k = (kh * KW + kw) * Cwg + cw; NP padded to a multiple of 4 with zero weights.
// Zero padding is the value 0: bit-serial pads with zero words (x = 0 adds nothing to AND counts);
// binary pads with zero words too and removes their contribution exactly: a zero activation word
// against weight word w adds popcount(w) to the XOR count, so the sums of a border pixel start at
// minus the weight's popcount over its out-of-image taps (one precomputed row per border pattern)
// and the epilogue uses K_valid = C/G * (taps inside the image).
// Channel tails are zero bits in both operands, so they add 0 to XOR and AND counts alike.
#include <Python.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <xmmintrin.h>  // _mm_sfence (SSE, part of every x86-64 CPU)
#endif

#include "isa.h"
#include "packed_conv_args.h"

namespace hwq {
namespace {

// Layout constants, words(), padded_panels() and the shared argument checks.
using namespace hwq_packed;

constexpr int64_t kRowBlock = 48;  // output pixels per im2col block (a multiple of every mr)
// Output channels per epilogue call: 4 panels (weights are padded to a multiple of 4 panels, so
// every block is whole panels), whatever the micro-tile's width, so that the epilogue's rows are
// long enough to vectorize well.
constexpr int64_t kColBlock = kPanelPad * kPanel;

// n packed words; the common small counts (64-256 channels per tap) without a memcpy call.
inline void copy_words(uint64_t* dst, const uint64_t* src, int64_t n) {
  switch (n) {
    case 1: dst[0] = src[0]; return;
    case 2: std::memcpy(dst, src, 2 * sizeof(uint64_t)); return;
    case 3: std::memcpy(dst, src, 3 * sizeof(uint64_t)); return;
    case 4: std::memcpy(dst, src, 4 * sizeof(uint64_t)); return;
    default: std::memcpy(dst, src, n * sizeof(uint64_t));
  }
}

// ---- run-time ISA choice -------------------------------------------------------------------

#if defined(__x86_64__) && defined(__GNUC__)
// The AVX-512 files are built for F + BW + DQ + VL (every AVX-512 server CPU has all four).
bool has_avx512_base() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
bool has_vpopcntdq() { return has_avx512_base() && __builtin_cpu_supports("avx512vpopcntdq"); }
bool has_avx512bw() { return has_avx512_base(); }
bool has_avx2() { return __builtin_cpu_supports("avx2"); }
bool has_popcnt() { return __builtin_cpu_supports("popcnt"); }
#else
bool has_vpopcntdq() { return false; }
bool has_avx512bw() { return false; }
bool has_avx2() { return false; }
bool has_popcnt() { return false; }
#endif
bool always() { return true; }

struct IsaEntry {
  const char* name;
  bool (*supported)();
  const KernelTable* (*table)();
  const char* needs;  // the CPU flags (as /proc/cpuinfo spells them) the path executes
};

// Fastest first.
const IsaEntry kIsas[] = {
    {"avx512_vpopcntdq", has_vpopcntdq, table_avx512_vpopcntdq,
     "avx512f, avx512bw, avx512dq, avx512vl and avx512_vpopcntdq"},
    {"avx512bw", has_avx512bw, table_avx512bw, "avx512f, avx512bw, avx512dq and avx512vl"},
    {"avx2", has_avx2, table_avx2, "avx2"},
    {"scalar_popcnt", has_popcnt, table_scalar_popcnt, "popcnt"},
    {"scalar", always, table_scalar, "nothing"},
};

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const IsaEntry& e : kIsas)
    if (e.table() != nullptr && e.supported()) names.emplace_back(e.name);
  return names;
}

const KernelTable* best_table() {
  for (const IsaEntry& e : kIsas)
    if (e.table() != nullptr && e.supported()) return e.table();
  return table_scalar();
}

std::atomic<const KernelTable*> g_table{nullptr};

const KernelTable* current_table() {
  const KernelTable* t = g_table.load();
  if (t == nullptr) {
    t = best_table();
    g_table.store(t);
  }
  return t;
}

void set_isa(std::string name) {
  if (name == "auto") {
    g_table.store(best_table());
    return;
  }
  std::string accepted = "'auto'";
  for (const std::string& n : available_isas()) accepted += ", '" + n + "'";
  for (const IsaEntry& e : kIsas) {
    if (name != e.name) continue;
    TORCH_CHECK(e.table() != nullptr, "isa='", name,
                "' was not compiled into this build (not an x86-64 GCC/Clang build): expected one "
                "of ", accepted);
    TORCH_CHECK(e.supported(), "isa='", name, "' needs the CPU features ", e.needs,
                ", which this CPU lacks: expected one of ", accepted);
    g_table.store(e.table());
    return;
  }
  std::string known = "'auto'";
  for (const IsaEntry& e : kIsas) known += std::string(", '") + e.name + "'";
  TORCH_CHECK(false, "isa='", name, "' is not a kernel path: the paths are ", known,
              "; on this CPU and build: ", accepted);
}

std::string get_isa() { return current_table()->name; }

// [binary MACs executed, checksum] of the current path's register-resident peak loop (isa.h),
// run for `iters` iterations on each of torch's threads at once (the cores the kernels use).
std::vector<int64_t> popcount_peak(int64_t iters) {
  TORCH_CHECK(iters >= 1, "iters=", iters, " is not accepted: expected >= 1");
  const KernelTable* t = current_table();
  const int64_t threads = at::get_num_threads();
  std::vector<int64_t> sums(threads, 0);
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sums[i] = t->peak(iters);
  });
  int64_t checksum = 0;
  for (int64_t v : sums) checksum += v;
  return {threads * iters * t->peak_macs, checksum};
}

// Core clock cycles, counted: 8 dependent one-cycle integer adds per iteration (the loop's own
// counter and branch run beside them), so the time of cycle_probe(n) is 8 * n cycles.
int64_t cycle_probe(int64_t iters) {
  int64_t x = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  for (int64_t i = 0; i < iters; ++i)
    __asm__ volatile(
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
        : "+r"(x));
#else
  TORCH_CHECK(false, "cycle_probe needs an x86-64 GCC/Clang build");
#endif
  return x;
}

// ---- argument checks -----------------------------------------------------------------------

void check_cpu(const at::Tensor& t, const char* param) {
  TORCH_CHECK(t.device().is_cpu(), param, " is on device ", t.device(),
              ": the hwq CPU kernels accept CPU tensors only");
}

void check_packed(const at::Tensor& t, const char* param, int64_t dim) {
  check_cpu(t, param);
  TORCH_CHECK(t.scalar_type() == at::kLong, param, " has dtype ", t.scalar_type(),
              ": packed bits are expected as torch.int64 (from hwq pack ops)");
  TORCH_CHECK(t.dim() == dim, param, " has ", t.dim(), " dims (shape ", t.sizes(),
              "): packed ", param, " has ", dim, " dims");
}

// Bits the packed layout keeps zero, checked against what the call claims: the channels past
// in_channels / groups in the last word of each group (x and w), and the weight lanes past
// out_channels / groups in the last panel. Set bits there mean the tensors were packed for more
// channels than in_channels / out_channels say, which would add those channels to the sums.
// Only words with such a tail are read (none when the channel counts are multiples of 64 and 8),
// so the check costs one pass over a fraction of x and w. A claim of more channels than were
// packed cannot be seen in the bits (the missing channels read as zero bits) and stays the
// caller's contract.
void check_padding_bits(const at::Tensor& x, const at::Tensor& w, const ConvShape& s,
                        int64_t in_channels, int64_t out_channels) {
  const uint64_t* xp = reinterpret_cast<const uint64_t*>(x.const_data_ptr<int64_t>());
  const uint64_t* wp = reinterpret_cast<const uint64_t*>(w.const_data_ptr<int64_t>());
  if (s.cg % kWord != 0 && s.cwg > 0) {
    const uint64_t tail = ~((uint64_t{1} << (s.cg % kWord)) - 1);
    uint64_t seen = 0;
    const int64_t rows = s.n * s.h * s.w * s.groups * s.pa;
    for (int64_t r = 0; r < rows; ++r) seen |= xp[r * s.cwg + s.cwg - 1];
    TORCH_CHECK((seen & tail) == 0, "x holds bits past in_channels=", in_channels, " (", s.cg,
                " per group): it was packed for more input channels than in_channels says");
    seen = 0;
    const int64_t panels = s.groups * s.pw * s.np;
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t t = 0; t < s.taps; ++t)
        for (int64_t l = 0; l < kPanel; ++l) seen |= wp[(p * s.k + t * s.cwg + s.cwg - 1) * kPanel + l];
    TORCH_CHECK((seen & tail) == 0, "w holds bits past in_channels=", in_channels, " (", s.cg,
                " per group): it was packed for more input channels than in_channels says");
  }
  if (s.og < s.np * kPanel) {  // weight lanes (output channels) past og, per group and plane
    uint64_t seen = 0;
    for (int64_t gp = 0; gp < s.groups * s.pw; ++gp)
      for (int64_t oo = s.og; oo < s.np * kPanel; ++oo) {
        const uint64_t* col = wp + (gp * s.np + oo / kPanel) * s.k * kPanel + oo % kPanel;
        for (int64_t j = 0; j < s.k; ++j) seen |= col[j * kPanel];
      }
    TORCH_CHECK(seen == 0, "w holds weights past out_channels=", out_channels, " (", s.og,
                " per group): it was packed for more output channels than out_channels says");
  }
}

// ---- packing -------------------------------------------------------------------------------

// Values to bits. Binary: bit = (v < 0), so +1 and 0 give 0 (sign(0) = +1) and bit 1 means -1.
// Otherwise the low bits of the two's complement of the integer v, one plane per bit.
template <typename T>
inline int64_t integer_of(T v) {
  return static_cast<int64_t>(static_cast<double>(v));
}
template <typename T>
inline uint64_t negative_bit(T v) {
  return static_cast<double>(v) < 0 ? 1u : 0u;
}

// Packs nc <= 64 values src[c * sc] (c < nc) into one word per plane, written to dst[p * ps].
// Branch-free on purpose: the sign of random data mispredicts half the time.
template <typename T>
inline void pack_word(const T* src, int64_t sc, int64_t nc, bool binary, int64_t planes,
                      uint64_t* dst, int64_t ps) {
  if (binary) {
    uint64_t word = 0;
    for (int64_t c = 0; c < nc; ++c) word |= negative_bit(src[c * sc]) << c;
    dst[0] = word;
    return;
  }
  uint64_t word[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c = 0; c < nc; ++c) {
    const uint64_t v = static_cast<uint64_t>(integer_of(src[c * sc]));
    for (int64_t p = 0; p < planes; ++p) word[p] |= ((v >> p) & 1u) << c;
  }
  for (int64_t p = 0; p < planes; ++p) dst[p * ps] = word[p];
}

at::Tensor pack_activations(const at::Tensor& x, int64_t bits, bool binary, int64_t groups) {
  check_cpu(x, "x");
  TORCH_CHECK(x.dim() == 4, "x has shape ", x.sizes(), ": expected (N, C, H, W)");
  check_bits(bits, binary, "bits");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  check_groups(c, groups, "channels");
  const int64_t cg = c / groups, cwg = words(cg), planes = binary ? 1 : bits;
  at::Tensor out = at::empty({n, h, w, groups, planes, cwg}, x.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  uint64_t* o = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const int64_t sn = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  const int64_t pixel_words = groups * planes * cwg;
  if (binary && x.scalar_type() == at::kFloat && sc == 1) {
    // Channels-last float32 (what the deployed layers output): SIMD compare masks, per pixel.
    const KernelTable* kt = current_table();
    const float* xp = x.const_data_ptr<float>();
    at::parallel_for(0, n * h, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t cw = 0; cw < cwg; ++cw) {
            const int64_t c0 = g * cg + cw * kWord;
            kt->pack_sign_f32(xp + (r / h) * sn + (r % h) * sh + c0, w, sw,
                              std::min(kWord, cg - cw * kWord),
                              o + r * w * pixel_words + g * cwg + cw, pixel_words);
          }
    });
    return out;
  }
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hwq_pack_activations", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    // One (n, h) image row per task, one 64-channel word at a time; every output word is written
    // once. The inner loop runs along the smaller stride: channels for channels-last input (one
    // word from 64 contiguous values), pixels for NCHW input (W words built in a buffer).
    at::parallel_for(0, n * h, 1, [&](int64_t r0, int64_t r1) {
      std::vector<uint64_t> buf(sw < sc ? w * planes : 0);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* row = xp + (r / h) * sn + (r % h) * sh;
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t cw = 0; cw < cwg; ++cw) {
            const int64_t c0 = g * cg + cw * kWord, nc = std::min(kWord, cg - cw * kWord);
            uint64_t* dst = o + r * w * pixel_words + g * planes * cwg + cw;
            if (sw >= sc) {
              for (int64_t iw = 0; iw < w; ++iw)
                pack_word(row + c0 * sc + iw * sw, sc, nc, binary, planes,
                          dst + iw * pixel_words, cwg);
              continue;
            }
            std::fill(buf.begin(), buf.end(), 0);
            for (int64_t c = 0; c < nc; ++c) {
              const scalar_t* src = row + (c0 + c) * sc;
              if (binary) {
                for (int64_t iw = 0; iw < w; ++iw) buf[iw] |= negative_bit(src[iw * sw]) << c;
              } else {
                for (int64_t iw = 0; iw < w; ++iw) {
                  const uint64_t v = static_cast<uint64_t>(integer_of(src[iw * sw]));
                  for (int64_t p = 0; p < planes; ++p) buf[p * w + iw] |= ((v >> p) & 1u) << c;
                }
              }
            }
            for (int64_t iw = 0; iw < w; ++iw)
              for (int64_t p = 0; p < planes; ++p) dst[iw * pixel_words + p * cwg] = buf[p * w + iw];
          }
      }
    });
  });
  return out;
}

at::Tensor pack_weights(const at::Tensor& wt, int64_t bits, bool binary, int64_t groups) {
  check_cpu(wt, "w");
  TORCH_CHECK(wt.dim() == 4, "w has shape ", wt.sizes(), ": expected (O, C/groups, KH, KW)");
  check_bits(bits, binary, "bits");
  const int64_t o = wt.size(0), cg = wt.size(1), kh = wt.size(2), kw = wt.size(3);
  check_groups(o, groups, "out_channels");
  const int64_t og = o / groups, cwg = words(cg), planes = binary ? 1 : bits;
  const int64_t np = padded_panels(og), k = kh * kw * cwg;
  at::Tensor out = at::zeros({groups, planes, np, k, kPanel}, wt.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  uint64_t* op = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const int64_t s0 = wt.stride(0), s1 = wt.stride(1), s2 = wt.stride(2), s3 = wt.stride(3);
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, wt.scalar_type(), "hwq_pack_weights", [&] {
    const scalar_t* wp = wt.const_data_ptr<scalar_t>();
    for (int64_t oi = 0; oi < o; ++oi) {
      const int64_t g = oi / og, oo = oi % og;
      uint64_t* base = op + (g * planes * np + oo / kPanel) * k * kPanel + oo % kPanel;
      for (int64_t a = 0; a < kh; ++a)
        for (int64_t b = 0; b < kw; ++b)
          for (int64_t cw = 0; cw < cwg; ++cw)
            pack_word(wp + oi * s0 + cw * kWord * s1 + a * s2 + b * s3, s1,
                      std::min(kWord, cg - cw * kWord), binary, planes,
                      base + ((a * kw + b) * cwg + cw) * kPanel, np * k * kPanel);
    }
  });
  return out;
}

// ---- convolution ---------------------------------------------------------------------------
//
// conv2d_packed runs, per block of kRowBlock output pixels (rows) and group: locate_rows (where
// each window lies), im2col_rows (its packed words), then per block of kColBlock output channels
// start_c_block (zeros, or the binary padding correction), multiply_block (the micro-kernels)
// and epilogue_block (sums to outputs). The border patterns and the padding correction are
// computed once per call. Binary layers with float outputs on a path with a fused kernel
// (KernelTable::xor_popcount_float) skip im2col and the C block: the kernel reads each window in
// place from a zero-padded copy of the input (padded_input, locate_rows_padded) and writes the
// float outputs from its registers (fused_float_block).

// Border patterns. A window's valid taps are the product of its kernel rows and columns that fall
// inside the image, so the border cases are the distinct (row, column) pairs: 9 for a 3x3 kernel
// with padding 1.
struct BorderPatterns {
  std::vector<int64_t> row_id, col_id;  // per output row / column: index of its pattern
  int64_t n_col = 0;                    // distinct column patterns (pattern = row * n_col + col)
  std::vector<uint64_t> taps;           // per pattern: valid-tap mask, bit a * KW + c
  std::vector<int64_t> n_valid;         // per pattern: valid taps (this file is built without
                                        // -mpopcnt: a popcount per row was a libgcc call)
  uint64_t all_taps = 0;                // the mask of a window wholly inside the image

  int64_t count() const { return static_cast<int64_t>(taps.size()); }
};

// Index of mask m in keys, appended if new.
static int64_t intern_mask(std::vector<uint64_t>& keys, uint64_t m) {
  const auto it = std::find(keys.begin(), keys.end(), m);
  if (it != keys.end()) return static_cast<int64_t>(it - keys.begin());
  keys.push_back(m);
  return static_cast<int64_t>(keys.size()) - 1;
}

// One spatial dimension: bit t of keys[ids[o]] is set when kernel tap t of output position o falls
// inside the input (0 <= o * stride - pad + t * dilation < in_len).
static void border_ids(int64_t out_len, int64_t taps_d, int64_t in_len, int64_t stride,
                       int64_t pad, int64_t dilation, std::vector<uint64_t>& keys,
                       std::vector<int64_t>& ids) {
  ids.resize(out_len);
  for (int64_t o = 0; o < out_len; ++o) {
    uint64_t m = 0;
    for (int64_t t = 0; t < taps_d; ++t) {
      const int64_t i = o * stride - pad + t * dilation;
      if (i >= 0 && i < in_len) m |= uint64_t{1} << t;
    }
    ids[o] = intern_mask(keys, m);
  }
}

static BorderPatterns border_patterns(const ConvShape& s) {
  BorderPatterns bp;
  std::vector<uint64_t> row_keys, col_keys;
  border_ids(s.oh, s.kh, s.h, s.sy, s.py, s.dy, row_keys, bp.row_id);
  border_ids(s.ow, s.kw, s.w, s.sx, s.px, s.dx, col_keys, bp.col_id);
  bp.n_col = static_cast<int64_t>(col_keys.size());
  bp.taps.assign(static_cast<int64_t>(row_keys.size()) * bp.n_col, 0);
  for (int64_t p = 0; p < bp.count(); ++p)
    for (int64_t a = 0; a < s.kh; ++a)
      for (int64_t c = 0; c < s.kw; ++c)
        if ((row_keys[p / bp.n_col] >> a & 1) && (col_keys[p % bp.n_col] >> c & 1))
          bp.taps[p] |= uint64_t{1} << (a * s.kw + c);
  bp.all_taps = s.taps == 64 ? ~uint64_t{0} : (uint64_t{1} << s.taps) - 1;
  bp.n_valid.resize(bp.count());
  for (int64_t p = 0; p < bp.count(); ++p) bp.n_valid[p] = __builtin_popcountll(bp.taps[p]);
  return bp;
}

// Binary padding correction: a zero (padded) activation word against weight word w adds
// popcount(w) to the XOR count, so per pattern, group and output channel the summed weight
// popcount of the out-of-image taps is removed (the C block starts at minus it).
// Indexed [(pattern * groups + g) * og + o].
static std::vector<int64_t> binary_border_pop(const uint64_t* wp, const ConvShape& s,
                                              const BorderPatterns& bp) {
  std::vector<int64_t> wpop(s.taps);
  std::vector<int64_t> border_pop(bp.count() * s.groups * s.og, 0);
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t oo = 0; oo < s.og; ++oo) {
      const uint64_t* row = wp + (g * s.np + oo / kPanel) * s.k * kPanel + oo % kPanel;
      for (int64_t t = 0; t < s.taps; ++t) {
        wpop[t] = 0;
        for (int64_t cw = 0; cw < s.cwg; ++cw)
          wpop[t] += __builtin_popcountll(row[(t * s.cwg + cw) * kPanel]);
      }
      for (int64_t p = 0; p < bp.count(); ++p) {
        int64_t sum = 0;
        for (uint64_t rest = ~bp.taps[p] & bp.all_taps; rest != 0; rest &= rest - 1)
          sum += wpop[__builtin_ctzll(rest)];
        border_pop[(p * s.groups + g) * s.og + oo] = sum;
      }
    }
  return border_pop;
}

// Bit-serial plane weights: c_ij = 2^(i+j), negative for the weight's sign plane j = w_bits - 1;
// binary: 1.
static std::vector<int64_t> plane_coefs(const ConvShape& s) {
  std::vector<int64_t> coef(s.pa * s.pw);
  for (int64_t i = 0; i < s.pa; ++i)
    for (int64_t j = 0; j < s.pw; ++j)
      coef[i * s.pw + j] = s.binary ? 1 : ((j == s.pw - 1) ? -1 : 1) * (int64_t{1} << (i + j));
  return coef;
}

// Input word offset of each tap from the window's top-left pixel (for windows fully inside).
static std::vector<int64_t> tap_offsets(const ConvShape& s) {
  const int64_t pixel_words = s.groups * s.pa * s.cwg;
  std::vector<int64_t> tap_offset(s.taps);
  for (int64_t a = 0; a < s.kh; ++a)
    for (int64_t c = 0; c < s.kw; ++c)
      tap_offset[a * s.kw + c] = (a * s.dy * s.w + c * s.dx) * pixel_words;
  return tap_offset;
}

// One thread's buffers for a block of kRowBlock output pixels.
struct BlockScratch {
  std::vector<uint64_t> abuf;     // packed im2col rows, one block of kRowBlock x K per plane
  std::vector<int64_t> cbuf;      // the C block, kRowBlock x kColBlock
  std::vector<uint64_t> valid;    // per row: valid-tap mask
  std::vector<int64_t> pattern;   // per row: border pattern
  // Per row: the window's top-left input pixel when the whole window is inside the image, else
  // -1 and the input pixel of every tap in src_pixel (-1 outside).
  std::vector<int64_t> corner;
  std::vector<int64_t> src_pixel;
  std::vector<int64_t> offset;    // per row: binary K_valid, bit-serial 0 (the epilogue's offset)
  // Fused path, per row (padded to whole tiles): its fused offsets from output channel 0, and its
  // window's top-left word in the padded input (isa.h, FusedFloat and MicroFloatFn's A).
  std::vector<const int32_t*> row_offset;
  std::vector<const uint64_t*> row_words;

  explicit BlockScratch(const ConvShape& s)
      : abuf(s.pa * kRowBlock * s.k), cbuf(kRowBlock * kColBlock), valid(kRowBlock),
        pattern(kRowBlock), corner(kRowBlock), src_pixel(kRowBlock * s.taps), offset(kRowBlock),
        row_offset(kRowBlock), row_words(kRowBlock) {}
};

// Where the windows of output pixels m0 .. m0 + mc - 1 lie: pattern, valid taps, corner or
// per-tap input pixels, and the epilogue's offset.
static void locate_rows(const ConvShape& s, const BorderPatterns& bp, int64_t m0, int64_t mc,
                        BlockScratch& sb) {
  // Output pixel m0 as (image, row, column), then stepped along without divisions.
  int64_t in = m0 / (s.oh * s.ow), oy = (m0 % (s.oh * s.ow)) / s.ow, ox = m0 % s.ow;
  for (int64_t r = 0; r < mc; ++r) {
    const int64_t ih0 = oy * s.sy - s.py, iw0 = ox * s.sx - s.px;
    sb.pattern[r] = bp.row_id[oy] * bp.n_col + bp.col_id[ox];
    sb.valid[r] = bp.taps[sb.pattern[r]];
    if (sb.valid[r] == bp.all_taps) {
      sb.corner[r] = (in * s.h + ih0) * s.w + iw0;
    } else {
      for (int64_t a = 0; a < s.kh; ++a)
        for (int64_t c = 0; c < s.kw; ++c) {
          const int64_t ih = ih0 + a * s.dy, iw = iw0 + c * s.dx, t = a * s.kw + c;
          sb.src_pixel[r * s.taps + t] = sb.valid[r] >> t & 1 ? (in * s.h + ih) * s.w + iw : -1;
        }
      sb.corner[r] = -1;
    }
    // Binary: s = K_valid - 2 * (XOR count); bit-serial: s = the AND sum.
    sb.offset[r] = s.binary ? s.cg * bp.n_valid[sb.pattern[r]] : 0;
    if (++ox == s.ow) {
      ox = 0;
      if (++oy == s.oh) {
        oy = 0;
        ++in;
      }
    }
  }
}

// Packed im2col rows of group g, one block per activation plane; rows mc .. mp - 1 are zero.
static void im2col_rows(const uint64_t* xp, const ConvShape& s, int64_t g, int64_t mc, int64_t mp,
                        const std::vector<int64_t>& tap_offset, BlockScratch& sb) {
  const int64_t pixel_words = s.groups * s.pa * s.cwg, k = s.k, cwg = s.cwg, taps = s.taps;
  for (int64_t i = 0; i < s.pa; ++i) {
    const uint64_t* xg = xp + (g * s.pa + i) * cwg;
    for (int64_t r = 0; r < mp; ++r) {
      uint64_t* dst = sb.abuf.data() + (i * kRowBlock + r) * k;
      if (r >= mc) {
        std::memset(dst, 0, k * sizeof(uint64_t));
      } else if (sb.corner[r] >= 0) {
        const uint64_t* src = xg + sb.corner[r] * pixel_words;
        if (cwg == 1)
          for (int64_t t = 0; t < taps; ++t) dst[t] = src[tap_offset[t]];
        else
          for (int64_t t = 0; t < taps; ++t) copy_words(dst + t * cwg, src + tap_offset[t], cwg);
      } else {
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t pix = sb.src_pixel[r * taps + t];
          if (pix < 0)
            std::memset(dst + t * cwg, 0, cwg * sizeof(uint64_t));
          else
            copy_words(dst + t * cwg, xg + pix * pixel_words, cwg);
        }
      }
    }
  }
}

// The C block of rows < mp, output channels nb * 8 .. of group g, before the products: zero, and
// for binary rows with out-of-image taps minus what their zero words will add.
static void start_c_block(const ConvShape& s, const BorderPatterns& bp,
                          const std::vector<int64_t>& border_pop, int64_t g, int64_t nb,
                          int64_t cols, int64_t mc, int64_t mp, BlockScratch& sb) {
  std::fill(sb.cbuf.begin(), sb.cbuf.begin() + mp * kColBlock, 0);
  if (!s.binary) return;
  for (int64_t r = 0; r < mc; ++r) {
    if (sb.valid[r] == bp.all_taps) continue;
    const int64_t* bpop = border_pop.data() + (sb.pattern[r] * s.groups + g) * s.og + nb * kPanel;
    int64_t* crow = sb.cbuf.data() + r * kColBlock;
    for (int64_t c = 0; c < cols; ++c) crow[c] = -bpop[c];
  }
}

// C block += every (activation plane, weight plane) product of rows < mp against the panels
// nb .. of group g, in micro-tiles of kt->mr rows x kt->panels panels; `cols` columns are
// needed, whole micro-tiles are computed (weights past og are zero panels).
static void multiply_block(const KernelTable* kt, const ConvShape& s, const uint64_t* wp,
                           const std::vector<int64_t>& coef, int64_t g, int64_t nb, int64_t cols,
                           int64_t mp, BlockScratch& sb) {
  const MicroFn fn = s.binary ? kt->xor_popcount : kt->and_popcount;
  const int64_t mr = kt->mr, tc = kt->panels * kPanel;  // micro-tile rows, columns
  const int64_t used = (cols + tc - 1) / tc * tc;       // columns the micro-tiles write
  const int64_t k = s.k;
  for (int64_t p = 0; p < used; p += tc)
    for (int64_t r = 0; r < mp; r += mr)
      for (int64_t i = 0; i < s.pa; ++i)
        for (int64_t j = 0; j < s.pw; ++j)
          fn(sb.abuf.data() + (i * kRowBlock + r) * k, k,
             wp + ((g * s.pw + j) * s.np + nb + p / kPanel) * k * kPanel, k * kPanel, k,
             sb.cbuf.data() + r * kColBlock + p, kColBlock, coef[i * s.pw + j]);
}

// Where the epilogue writes: one of the three outputs, with the per-channel scale and bias.
struct EpilogueOut {
  int64_t mode;              // OutMode
  int32_t* out_i;            // kOutInt32: (M, O) int32
  float* out_f;              // kOutFloat / kOutFloatRelu: (M, O) float32
  uint64_t* out_p;           // kOutPackedSign: (M, cwo) words
  int64_t out_channels, cwo;
  const float* scale;
  const float* bias;
  const float* residual;     // kOutFloat / kOutFloatRelu: (M, O) float32 added before the ReLU, or null
};

// Sums of the C block (rows < mc, `cols` channels from o0, output pixels from m0) to outputs.
static void epilogue_block(const KernelTable* kt, const ConvShape& s, const EpilogueOut& e,
                           const BlockScratch& sb, int64_t m0, int64_t mc, int64_t o0,
                           int64_t cols) {
  const int64_t beta = s.binary ? -2 : 1;
  const int64_t* c0 = sb.cbuf.data();
  if (e.mode == kOutInt32)
    kt->epilogue_int(c0, kColBlock, mc, cols, sb.offset.data(), beta,
                     e.out_i + m0 * e.out_channels + o0, e.out_channels);
  else if (e.out_f != nullptr)
    kt->epilogue_float(c0, kColBlock, mc, cols, sb.offset.data(), beta, e.scale + o0, e.bias + o0,
                       e.out_f + m0 * e.out_channels + o0, e.out_channels,
                       e.residual ? e.residual + m0 * e.out_channels + o0 : nullptr,
                       e.mode == kOutFloatRelu);
  else
    kt->epilogue_sign(c0, kColBlock, mc, cols, sb.offset.data(), beta, e.scale + o0, e.bias + o0,
                      o0, e.out_p + m0 * e.cwo, e.cwo);
}

// The fused kernels' per-row offsets (isa.h, FusedFloat): per border pattern, group and output
// channel, K_valid + 2 * the binary padding correction, i.e. the s of an output whose XOR count
// is 0. Indexed [(pattern * groups + g) * og + o]; int32 modulo 2^32 as the kernels compute s.
static std::vector<int32_t> fused_offsets(const ConvShape& s, const BorderPatterns& bp,
                                          const std::vector<int64_t>& border_pop) {
  std::vector<int32_t> off(bp.count() * s.groups * s.og);
  for (int64_t p = 0; p < bp.count(); ++p)
    for (int64_t go = 0; go < s.groups * s.og; ++go) {
      const int64_t i = p * s.groups * s.og + go;
      off[i] = static_cast<int32_t>(static_cast<uint32_t>(s.cg * bp.n_valid[p] + 2 * border_pop[i]));
    }
  return off;
}

// The fused path reads the activation windows straight from the packed input, without im2col
// (isa.h, MicroFloatFn): from a copy of x with its zero padding written out (binary pads with zero
// words, whose XOR counts the fused offsets remove), every window, at the border or not, is kh x
// kw taps at fixed word offsets from its top-left corner. The copy is about (1 + 2 * padding /
// size)^2 times the packed input (1.07x at 56x56, about 430 KB for ResNet-18's 64-channel layer
// at batch 16), against K words per output pixel written and read back by im2col; with no
// padding x itself is read.
struct PaddedInput {
  at::Tensor storage;    // the padded copy; undefined when x is read in place
  const uint64_t* data;  // (N, hp, wp, G, 1, Cwg) packed words
  int64_t hp, wp;        // padded height and width
};

static PaddedInput padded_input(const at::Tensor& x, const uint64_t* xp, const ConvShape& s) {
  PaddedInput p{at::Tensor(), xp, s.h + 2 * s.py, s.w + 2 * s.px};
  if (s.py == 0 && s.px == 0) return p;
  const int64_t pixel_words = s.groups * s.pa * s.cwg, row_words = p.wp * pixel_words;
  const int64_t side = s.px * pixel_words, inner = s.w * pixel_words;
  p.storage = at::empty({s.n * p.hp * row_words}, x.options());
  uint64_t* d = reinterpret_cast<uint64_t*>(p.storage.data_ptr<int64_t>());
  at::parallel_for(0, s.n * p.hp, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint64_t* dst = d + r * row_words;
      const int64_t ih = r % p.hp - s.py;
      if (ih < 0 || ih >= s.h) {
        std::memset(dst, 0, row_words * sizeof(uint64_t));
        continue;
      }
      std::memset(dst, 0, side * sizeof(uint64_t));
      std::memcpy(dst + side, xp + ((r / p.hp) * s.h + ih) * inner, inner * sizeof(uint64_t));
      std::memset(dst + side + inner, 0, side * sizeof(uint64_t));
    }
  });
  p.data = d;
  return p;
}

// The fused kernels' koff (isa.h), per group: word k = t * cwg + cw of group g's window is tap
// t's pixel, word g * cwg + cw, at koff[g * K + k] from the window's first word in the padded
// input (so that the row pointers serve every group).
static std::vector<int64_t> padded_word_offsets(const ConvShape& s, const PaddedInput& p) {
  const int64_t pixel_words = s.groups * s.pa * s.cwg;
  std::vector<int64_t> koff(s.groups * s.k);
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t a = 0; a < s.kh; ++a)
      for (int64_t c = 0; c < s.kw; ++c)
        for (int64_t cw = 0; cw < s.cwg; ++cw)
          koff[g * s.k + (a * s.kw + c) * s.cwg + cw] =
              (a * s.dy * p.wp + c * s.dx) * pixel_words + g * s.cwg + cw;
  return koff;
}

// For the fused path: per output pixel m0 .. m0 + mc - 1, where its border pattern's fused offsets
// start (row_offset, at group 0, channel 0) and its window's top-left word in the padded input
// (row_words). The pixels are taken in runs along one output row, where the row's pattern and
// the input row are fixed and the corner steps by the stride: a tight loop of two stores per
// pixel. Kept out of line: inlined into the driver's parallel loop, GCC kept this loop's
// invariants on the stack and reloaded them per pixel (Zen 5, 64-channel ResNet-18 layer: 7% of
// the convolution). Rows past mc, up to a whole tile of mr, repeat their tile's first row
// (computed by the kernel, not written).
__attribute__((noinline)) static void locate_rows_padded(const ConvShape& s,
                                                         const BorderPatterns& bp,
                                                         const PaddedInput& p,
                                                         const int32_t* offsets, int64_t mr,
                                                         int64_t m0, int64_t mc,
                                                         BlockScratch& sb) {
  const int64_t pixel_words = s.groups * s.pa * s.cwg, step = s.sx * pixel_words;
  const int64_t pattern_len = s.groups * s.og, ow = s.ow, oh = s.oh;
  const int64_t* col_id = bp.col_id.data();
  const int32_t** row_offset = sb.row_offset.data();
  const uint64_t** row_words = sb.row_words.data();
  int64_t in = m0 / (oh * ow), oy = (m0 % (oh * ow)) / ow, ox = m0 % ow;
  for (int64_t r = 0; r < mc;) {
    const int64_t run = std::min(ow - ox, mc - r);
    const int32_t* row_base = offsets + bp.row_id[oy] * bp.n_col * pattern_len;
    const uint64_t* corner = p.data + ((in * p.hp + oy * s.sy) * p.wp + ox * s.sx) * pixel_words;
    const int64_t* cid = col_id + ox;
    const int32_t** ro = row_offset + r;
    const uint64_t** rw = row_words + r;
    for (int64_t i = 0; i < run; ++i) {
      ro[i] = row_base + cid[i] * pattern_len;
      rw[i] = corner + i * step;
    }
    r += run;
    ox = 0;
    if (++oy == oh) {
      oy = 0;
      ++in;
    }
  }
  const int64_t padded = (mc + mr - 1) / mr * mr;  // <= kRowBlock, a multiple of every mr
  for (int64_t r = mc; r < padded; ++r) {
    row_offset[r] = row_offset[r / mr * mr];
    row_words[r] = row_words[r / mr * mr];
  }
}

// Binary float outputs with the epilogue fused into the micro-kernel (kt->xor_popcount_float):
// per column tile, one call over the block's rows (the kernel loops over its row tiles; the row
// arrays, from locate_rows_padded, serve every tile); the sums never leave the registers.
static void fused_float_block(const KernelTable* kt, const ConvShape& s, const uint64_t* wp,
                              const std::vector<int64_t>& koff, const EpilogueOut& e, int64_t g,
                              int64_t nb, int64_t cols, int64_t m0, int64_t mc,
                              const BlockScratch& sb) {
  const int64_t tc = kt->fused_panels * kPanel, k = s.k;
  const int64_t o0 = g * s.og + nb * kPanel;
  for (int64_t p = 0; p < cols; p += tc) {
    const uint64_t* b = wp + (g * s.np + nb + p / kPanel) * k * kPanel;
    FusedFloat f{sb.row_offset.data(), o0 + p, e.scale + o0 + p, e.bias + o0 + p, nullptr,
                 e.out_channels, nullptr, mc, std::min(tc, cols - p), e.mode == kOutFloatRelu,
                 nullptr};
    if (e.mode == kOutPackedSign) {  // the 32-bit halves of the packed words (isa.h)
      f.signs = reinterpret_cast<uint32_t*>(e.out_p) + m0 * 2 * e.cwo + (o0 + p) / 32;
      f.ldo = 2 * e.cwo;
    } else {
      const int64_t out_at = m0 * e.out_channels + o0 + p;
      f.out = e.out_f + out_at;
      f.residual = e.residual ? e.residual + out_at : nullptr;
    }
    kt->xor_popcount_float(sb.row_words.data(), koff.data() + g * k, b, k * kPanel, k, f);
  }
}

// conv2d_packed and conv2d_packed_add; residual: undefined, or a float32 (N, OH, OW, O)
// contiguous tensor added in the float epilogue (checked by conv2d_packed_add).
static at::Tensor conv2d_packed_impl(const at::Tensor& x_in, const at::Tensor& w_in,
                                     int64_t in_channels, int64_t out_channels,
                                     at::IntArrayRef kernel_size, int64_t a_bits, int64_t w_bits,
                                     bool binary, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, int64_t groups,
                                     const std::optional<at::Tensor>& scale,
                                     const std::optional<at::Tensor>& bias, int64_t out_mode,
                                     const at::Tensor& residual) {
  check_packed(x_in, "x", 6);
  check_packed(w_in, "w", 5);
  const ConvShape cs = check_conv_args(x_in, w_in, in_channels, out_channels, kernel_size, a_bits,
                                       w_bits, binary, stride, padding, dilation, groups, out_mode);
  if (scale.has_value()) check_cpu(*scale, "scale");
  if (bias.has_value()) check_cpu(*bias, "bias");
  const at::Tensor scale_c = check_channel_vector(scale, "scale", out_channels);
  const at::Tensor bias_c = check_channel_vector(bias, "bias", out_channels);
  const float* sc = scale_c.defined() ? scale_c.const_data_ptr<float>() : nullptr;
  const float* bi = bias_c.defined() ? bias_c.const_data_ptr<float>() : nullptr;
  TORCH_CHECK(out_mode != kOutInt32 || (sc == nullptr && bi == nullptr),
              "scale/bias need out_mode 1, 2 or 3: out_mode=0 returns the raw int32 sums");
  std::vector<float> ones, zeros;  // the epilogue always multiplies and adds
  if (sc == nullptr) {
    ones.assign(out_channels, 1.0f);
    sc = ones.data();
  }
  if (bi == nullptr) {
    zeros.assign(out_channels, 0.0f);
    bi = zeros.data();
  }

  const at::Tensor x = x_in.contiguous(), wt = w_in.contiguous();
  check_padding_bits(x, wt, cs, in_channels, out_channels);
  const auto opts = x.options();
  const int64_t m_total = cs.n * cs.oh * cs.ow, cwo = words(out_channels);
  at::Tensor out;
  if (out_mode == kOutPackedSign) {
    out = at::zeros({cs.n, cs.oh, cs.ow, 1, 1, cwo}, opts.dtype(at::kLong));
  } else {
    out = at::empty({cs.n, cs.oh, cs.ow, out_channels},
                    opts.dtype(out_mode == kOutInt32 ? at::kInt : at::kFloat));
  }
  auto result = [&]() {
    // (N, OH, OW, O) memory seen as (N, O, OH, OW) in channels-last strides: no copy.
    return out_mode == kOutPackedSign ? out : out.permute({0, 3, 1, 2});
  };
  if (m_total == 0 || out_channels == 0) return result();

  const KernelTable* kt = current_table();
  const uint64_t* xp = reinterpret_cast<const uint64_t*>(x.const_data_ptr<int64_t>());
  const uint64_t* wp = reinterpret_cast<const uint64_t*>(wt.const_data_ptr<int64_t>());
  const std::vector<int64_t> coef = plane_coefs(cs);
  const BorderPatterns bp = border_patterns(cs);
  const std::vector<int64_t> border_pop =
      binary ? binary_border_pop(wp, cs, bp) : std::vector<int64_t>();
  const std::vector<int64_t> tap_offset = tap_offsets(cs);
  const bool float_out = out_mode == kOutFloat || out_mode == kOutFloatRelu;
  const EpilogueOut eo{out_mode,
                       out_mode == kOutInt32 ? out.data_ptr<int32_t>() : nullptr,
                       float_out ? out.data_ptr<float>() : nullptr,
                       out_mode == kOutPackedSign
                           ? reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>())
                           : nullptr,
                       out_channels,
                       cwo,
                       sc,
                       bi,
                       residual.defined() ? residual.const_data_ptr<float>() : nullptr};
  const int64_t n_blocks = (m_total + kRowBlock - 1) / kRowBlock;
  // Binary float or packed sign outputs: the epilogue fused into the micro-kernel, where the path
  // has one. Packed signs are written in 32-bit halves of the output words, so each column tile
  // (32 channels from a group's first) must start on one: one group, or groups of 32k channels.
  const bool sign_halves = out_mode == kOutPackedSign && kt->fused_panels * kPanel == 32 &&
                           (cs.groups == 1 || cs.og % 32 == 0);
  const bool fused = binary && (float_out || sign_halves) && kt->xor_popcount_float != nullptr;
  const std::vector<int32_t> offsets =
      fused ? fused_offsets(cs, bp, border_pop) : std::vector<int32_t>();
  const PaddedInput xpad = fused ? padded_input(x, xp, cs) : PaddedInput{at::Tensor(), xp, 0, 0};
  const std::vector<int64_t> koff = fused ? padded_word_offsets(cs, xpad) : std::vector<int64_t>();

  // Each task owns whole output rows (pixels), so the packed-sign output, whose words mix
  // channels of every group, is written by one thread per pixel.
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    BlockScratch sb(cs);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = b * kRowBlock;
      const int64_t mc = std::min(kRowBlock, m_total - m0);
      const int64_t mp = (mc + kt->mr - 1) / kt->mr * kt->mr;
      if (fused) {  // no im2col: the windows are read from the padded input
        locate_rows_padded(cs, bp, xpad, offsets.data(), kt->fused_mr, m0, mc, sb);
        for (int64_t g = 0; g < cs.groups; ++g)
          for (int64_t nb = 0; nb < cs.np && nb * kPanel < cs.og; nb += kColBlock / kPanel)
            fused_float_block(kt, cs, wp, koff, eo, g, nb,
                              std::min(kColBlock, cs.og - nb * kPanel), m0, mc, sb);
        continue;
      }
      locate_rows(cs, bp, m0, mc, sb);
      for (int64_t g = 0; g < cs.groups; ++g) {
        im2col_rows(xp, cs, g, mc, mp, tap_offset, sb);
        // Output channels in blocks of kColBlock (whole panels: np is a multiple of 4), each
        // covered by micro-tiles of kt->panels panels; one epilogue call per block.
        for (int64_t nb = 0; nb < cs.np && nb * kPanel < cs.og; nb += kColBlock / kPanel) {
          const int64_t cols = std::min(kColBlock, cs.og - nb * kPanel);
          const int64_t o0 = g * cs.og + nb * kPanel;
          start_c_block(cs, bp, border_pop, g, nb, cols, mc, mp, sb);
          multiply_block(kt, cs, wp, coef, g, nb, cols, mp, sb);
          epilogue_block(kt, cs, eo, sb, m0, mc, o0, cols);
        }
      }
    }
#if defined(__x86_64__)
    if (fused) _mm_sfence();  // order this thread's non-temporal stores before the join
#endif
  });
  return result();
}

at::Tensor conv2d_packed(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                         int64_t out_channels, at::IntArrayRef kernel_size, int64_t a_bits,
                         int64_t w_bits, bool binary, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                         const std::optional<at::Tensor>& scale,
                         const std::optional<at::Tensor>& bias, int64_t out_mode) {
  return conv2d_packed_impl(x_in, w_in, in_channels, out_channels, kernel_size, a_bits, w_bits,
                            binary, stride, padding, dilation, groups, scale, bias, out_mode,
                            at::Tensor());
}

// conv2d_packed's float epilogue with a residual: (float(S) * scale[o] + bias[o]) + residual,
// then ReLU if relu (torch.relu bit for bit), i.e. a ResNet BasicBlock's `relu(bn2(conv2(x)) +
// shortcut)` in one pass over the output. residual: float32 (N, O, OH, OW), any strides (read in
// channels-last order; a channels-last tensor, what deployed layers hand on, is not copied).
at::Tensor conv2d_packed_add(const at::Tensor& x_in, const at::Tensor& w_in, int64_t in_channels,
                             int64_t out_channels, at::IntArrayRef kernel_size, int64_t a_bits,
                             int64_t w_bits, bool binary, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             const std::optional<at::Tensor>& scale,
                             const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                             bool relu) {
  check_packed(x_in, "x", 6);
  check_packed(w_in, "w", 5);
  const int64_t mode = relu ? kOutFloatRelu : kOutFloat;
  const ConvShape cs = check_conv_args(x_in, w_in, in_channels, out_channels, kernel_size, a_bits,
                                       w_bits, binary, stride, padding, dilation, groups, mode);
  check_cpu(residual, "residual");
  TORCH_CHECK(residual.scalar_type() == at::kFloat, "residual has dtype ",
              residual.scalar_type(), ": expected float32");
  TORCH_CHECK(residual.dim() == 4 && residual.size(0) == cs.n &&
                  residual.size(1) == out_channels && residual.size(2) == cs.oh &&
                  residual.size(3) == cs.ow,
              "residual has shape ", residual.sizes(), ": expected the output's (", cs.n, ", ",
              out_channels, ", ", cs.oh, ", ", cs.ow, ")");
  const at::Tensor r = residual.permute({0, 2, 3, 1}).contiguous();  // (N, OH, OW, O)
  return conv2d_packed_impl(x_in, w_in, in_channels, out_channels, kernel_size, a_bits, w_bits,
                            binary, stride, padding, dilation, groups, scale, bias, mode, r);
}

// y <- y * scale[c] + bias[c] (a multiply then an add, never fused), then ReLU if relu, in place:
// the epilogue of a layer whose exact sums come from elsewhere (hwq/deploy's fp32-sum layer, whose
// sums are integers computed exactly by a float32 conv). y: float32, (N, C, H, W) in channels-last
// memory or (M, C) contiguous, i.e. channel c of row r at r * C + c.
at::Tensor channel_affine_(at::Tensor y, const at::Tensor& scale, const at::Tensor& bias,
                           bool relu) {
  check_cpu(y, "y");
  TORCH_CHECK(y.scalar_type() == at::kFloat, "y has dtype ", y.scalar_type(),
              ": expected float32");
  TORCH_CHECK(y.dim() == 2 || y.dim() == 4, "y has ", y.dim(), " dims: expected (M, C) or (N, C, H, W)");
  const int64_t c = y.size(1);
  const bool rows_of_c = y.dim() == 2 ? y.is_contiguous()
                                      : y.permute({0, 2, 3, 1}).is_contiguous();
  TORCH_CHECK(rows_of_c, "y has strides ", y.strides(), ": expected a contiguous (M, C) tensor or "
              "an (N, C, H, W) tensor in channels-last memory");
  check_cpu(scale, "scale");
  check_cpu(bias, "bias");
  const at::Tensor sc = check_channel_vector(scale, "scale", c);
  const at::Tensor bi = check_channel_vector(bias, "bias", c);
  if (y.numel() == 0) return y;
  const int64_t rows = y.numel() / c;
  float* p = y.data_ptr<float>();
  const float* s = sc.const_data_ptr<float>();
  const float* b = bi.const_data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / c), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = p + r * c;
      if (relu) {
        for (int64_t j = 0; j < c; ++j) {
          const float v = o[j] * s[j] + b[j];
          o[j] = v < 0.0f ? 0.0f : v;
        }
      } else {
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] * s[j] + b[j];
      }
    }
  });
  return y;
}

}  // namespace
}  // namespace hwq

TORCH_LIBRARY(hwq, m) {
  m.def("pack_activations(Tensor x, int bits, bool binary, int groups) -> Tensor");
  m.def("pack_weights(Tensor w, int bits, bool binary, int groups) -> Tensor");
  m.def(
      "conv2d_packed(Tensor x, Tensor w, int in_channels, int out_channels, int[2] kernel_size, "
      "int a_bits, int w_bits, bool binary, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups, Tensor? scale, Tensor? bias, int out_mode) -> Tensor");
  m.def(
      "conv2d_packed_add(Tensor x, Tensor w, int in_channels, int out_channels, "
      "int[2] kernel_size, int a_bits, int w_bits, bool binary, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, Tensor? scale, Tensor? bias, Tensor residual, bool relu) "
      "-> Tensor");
  m.def("channel_affine_(Tensor(a!) y, Tensor scale, Tensor bias, bool relu) -> Tensor(a!)");
  m.def("set_isa(str name) -> ()", &hwq::set_isa);
  m.def("get_isa() -> str", &hwq::get_isa);
  m.def("available_isas() -> str[]", &hwq::available_isas);
  m.def("popcount_peak(int iters) -> int[]", &hwq::popcount_peak);
  m.def("cycle_probe(int iters) -> int", &hwq::cycle_probe);
}

TORCH_LIBRARY_IMPL(hwq, CPU, m) {
  m.impl("pack_activations", &hwq::pack_activations);
  m.impl("pack_weights", &hwq::pack_weights);
  m.impl("conv2d_packed", &hwq::conv2d_packed);
  m.impl("conv2d_packed_add", &hwq::conv2d_packed_add);
  m.impl("channel_affine_", &hwq::channel_affine_);
}

// The module itself is empty: importing it runs the registrations above.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&def);
}

// Micro-kernel rate of each compiled kernel path, outside torch: one driver block (48 rows x 32
// output channels, as conv2d_packed's kRowBlock x kColBlock) of K packed words, hot in cache,
// called as the driver calls it (kt->mr rows x kt->panels panels per call), timed with rdtsc.
// Prints binary MACs (bits) per core cycle: the core clock is counted with a chain of dependent
// one-cycle adds, as torch.ops.hwq.cycle_probe does. Each figure is the fastest of many short
// runs, so on a machine shared with other jobs it is the least-disturbed one. For paths with a
// fused float epilogue (KernelTable::xor_popcount_float) it then times layer-sized passes of the
// unfused route (C block, micro-kernel, epilogue) against the fused kernel (layer_rate).
//
// Not part of the extension (setup.py builds csrc/*.cpp only). Build and run from the repository
// root (the kernel files include no torch headers):
//   g++ -O3 -std=c++17 -ffp-contract=off -Icsrc csrc/bench/micro_bench.cpp csrc/kernels_*.cpp \
//       -o /tmp/micro_bench && /tmp/micro_bench [path ...]
#include <x86intrin.h>

#include <cstdlib>
#include <ctime>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../isa.h"

namespace {

constexpr int64_t kRows = 48, kCols = 32;

// TSC ticks per core cycle: 8 dependent adds per iteration take 8 cycles.
double tsc_per_cycle() {
  double best = 1e30;
  for (int rep = 0; rep < 50; ++rep) {
    int64_t x = 0;
    const int64_t iters = 200000;
    const uint64_t t0 = __rdtsc();
    for (int64_t i = 0; i < iters; ++i)
      __asm__ volatile(
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
          : "+r"(x));
    best = std::min(best, double(__rdtsc() - t0) / (8.0 * iters));
  }
  return best;
}

// Binary MACs per core cycle of t's XOR kernel on one block of K words.
double block_rate(const hwq::KernelTable* t, int64_t K, double tsc_cycle) {
  std::mt19937_64 rng(K);
  std::vector<uint64_t> A(kRows * K), B(kCols / 8 * K * 8);
  for (auto& v : A) v = rng();
  for (auto& v : B) v = rng();
  std::vector<int64_t> C(kRows * kCols);
  const int64_t tc = 8 * t->panels;
  auto block = [&]() {
    std::fill(C.begin(), C.end(), 0);
    for (int64_t p = 0; p < kCols; p += tc)
      for (int64_t r = 0; r < kRows; r += t->mr)
        t->xor_popcount(A.data() + r * K, K, B.data() + (p / 8) * K * 8, K * 8, K,
                        C.data() + r * kCols + p, kCols, 1);
  };
  // check against scalar popcounts once
  block();
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < kCols; ++c) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += __builtin_popcountll(A[r * K + k] ^ B[(c / 8) * K * 8 + k * 8 + c % 8]);
      if (s != C[r * kCols + c]) {
        std::printf("MISMATCH %s K=%ld r=%ld c=%ld\n", t->name, (long)K, (long)r, (long)c);
        return 0;
      }
    }
  const int64_t reps = std::max<int64_t>(1, 1000 / K);  // runs of 0.1-0.5 ms
  double best = 1e30;
  for (int run = 0; run < 1500; ++run) {
    const uint64_t t0 = __rdtsc();
    for (int64_t i = 0; i < reps; ++i) block();
    best = std::min(best, double(__rdtsc() - t0) / reps);
  }
  return double(kRows * kCols * K * 64) / (best / tsc_cycle);
}

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Core cycles per second of thread CPU time: 8 dependent one-cycle adds per iteration.
double core_hz() {
  double best = 0;
  for (int rep = 0; rep < 20; ++rep) {
    int64_t x = 0;
    const int64_t iters = 2000000;
    const double t0 = thread_seconds();
    for (int64_t i = 0; i < iters; ++i)
      __asm__ volatile(
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
          : "+r"(x));
    best = std::max(best, 8.0 * iters / (thread_seconds() - t0));
  }
  return best;
}

// One "layer" of M output pixels x O channels from the same hot A and B blocks (so no im2col,
// only the micro-kernel and its epilogue): binary MACs per core cycle of the unfused route (zero
// the C block, xor_popcount, epilogue_float) against xor_popcount_float, float outputs with ReLU
// written to an (M, O) array of layer size (12.8 MB for the 64-channel ResNet-18 layer), as
// conv2d_packed writes them. The two routes are checked equal first.
void layer_rate(const hwq::KernelTable* t, int64_t K, int64_t M, int64_t O, double tsc_cycle,
                double* unfused, double* fused) {
  std::mt19937_64 rng(K + 7);
  std::vector<uint64_t> A(kRows * K), B(O / 8 * K * 8);
  for (auto& v : A) v = rng();
  for (auto& v : B) v = rng();
  std::vector<int64_t> C(kRows * kCols), offset(kRows, K * 64);
  std::vector<float> scale(O), bias(O);
  for (int64_t c = 0; c < O; ++c) {
    scale[c] = 0.01f * float(c + 1);
    bias[c] = float(c % 7) - 3.0f;
  }
  float* out = static_cast<float*>(std::aligned_alloc(64, M * O * sizeof(float)));
  std::vector<float> ref(kRows * O);
  const int64_t tc = 8 * t->panels, ftc = 8 * t->fused_panels;  // unfused, fused tile columns
  std::vector<int32_t> row_offsets(O, int32_t(K * 64));  // K_valid, no padding
  const int32_t* offs[64];
  for (auto& p : offs) p = row_offsets.data();
  // The im2col block as the fused kernel addresses it (isa.h): row r at A + r * K, koff[k] = k.
  // Like the driver's, the row arrays serve every column tile (FusedFloat.col picks the tile).
  const uint64_t* rows[64];
  for (int i = 0; i < kRows; ++i) rows[i] = A.data() + i * K;
  std::vector<int64_t> koff(K);
  for (int64_t k = 0; k < K; ++k) koff[k] = k;
  auto run = [&](bool fuse) {
    for (int64_t m0 = 0; m0 + kRows <= M; m0 += kRows)
      for (int64_t nb = 0; nb < O; nb += kCols) {
        if (fuse) {  // one call per column tile of the block, as conv2d_packed calls it
          for (int64_t p = 0; p < kCols; p += ftc) {
            const hwq::FusedFloat f{offs, nb + p, scale.data() + nb + p, bias.data() + nb + p,
                                    out + m0 * O + nb + p, O, nullptr, kRows, ftc, true};
            t->xor_popcount_float(rows, koff.data(), B.data() + (nb + p) * K, K * 8, K, f);
          }
        } else {
          std::fill(C.begin(), C.end(), 0);
          for (int64_t p = 0; p < kCols; p += tc)
            for (int64_t r = 0; r < kRows; r += t->mr)
              t->xor_popcount(A.data() + r * K, K, B.data() + (nb + p) * K, K * 8, K,
                              C.data() + r * kCols + p, kCols, 1);
          t->epilogue_float(C.data(), kCols, kRows, kCols, offset.data(), -2, scale.data() + nb,
                            bias.data() + nb, out + m0 * O + nb, O, nullptr, true);
        }
      }
    _mm_sfence();
  };
  run(false);
  std::memcpy(ref.data(), out, ref.size() * sizeof(float));
  std::memset(out, 0, kRows * O * sizeof(float));
  run(true);
  if (std::memcmp(ref.data(), out, ref.size() * sizeof(float)) != 0)
    std::printf("MISMATCH fused %s K=%ld\n", t->name, (long)K);
  // A pass takes milliseconds, so it is timed in this thread's CPU time (a shared machine's other
  // jobs preempt it), at the core clock measured the same way.
  double best[2] = {1e30, 1e30};
  for (int rep = 0; rep < 30; ++rep)
    for (int fuse = 0; fuse < 2; ++fuse) {
      const double t0 = thread_seconds();
      run(fuse);
      best[fuse] = std::min(best[fuse], thread_seconds() - t0);
    }
  const double macs = double(M / kRows * kRows) * O * K * 64, hz = core_hz();
  (void)tsc_cycle;
  *unfused = macs / (best[0] * hz);
  *fused = macs / (best[1] * hz);
  std::free(out);
}

}  // namespace

int main(int argc, char** argv) {
  const hwq::KernelTable* (*tables[])() = {hwq::table_avx512_vpopcntdq, hwq::table_avx512bw,
                                           hwq::table_avx2, hwq::table_scalar_popcnt};
  const double tsc = tsc_per_cycle();
  std::printf("TSC ticks per core cycle: %.3f\n", tsc);
  const int64_t ks[] = {4, 8, 9, 16, 18, 24, 27, 36, 72, 144, 576};
  std::printf("%-18s", "path \\ K words");
  for (int64_t k : ks) std::printf("%7ld", (long)k);
  std::printf("\n");
  for (auto tf : tables) {
    const hwq::KernelTable* t = tf();
    if (t == nullptr) continue;
    bool want = argc < 2;
    for (int i = 1; i < argc; ++i) want |= std::string(argv[i]) == t->name;
    if (!want) continue;
    if (std::string(t->name) != "avx2" && std::string(t->name) != "scalar_popcnt" &&
        !__builtin_cpu_supports("avx512bw"))
      continue;
    if (std::string(t->name) == "avx512_vpopcntdq" && !__builtin_cpu_supports("avx512vpopcntdq"))
      continue;
    std::printf("%-18s", t->name);
    for (int64_t k : ks) std::printf("%7.0f", block_rate(t, k, tsc));
    // The path's register-resident ceiling (KernelTable::peak, bench_kernels.py's "binary").
    double best = 1e30;
    const int64_t iters = 20000;
    for (int run = 0; run < 200; ++run) {
      const uint64_t t0 = __rdtsc();
      volatile int64_t sink = t->peak(iters);
      (void)sink;
      best = std::min(best, double(__rdtsc() - t0));
    }
    std::printf("   binary MAC / cycle (register peak %.0f)\n",
                double(t->peak_macs) * iters / (best / tsc));
    if (t->xor_popcount_float == nullptr) continue;
    // ResNet-18's 3x3 layers at batch 16: 64ch 56x56 (K = 9), 128ch 28x28 (18), 256ch 14x14 (36).
    const int64_t shapes[][3] = {{9, 16 * 56 * 56, 64}, {18, 16 * 28 * 28, 128}, {36, 16 * 14 * 14, 256}};
    for (const auto& sh : shapes) {
      double u = 0, f = 0;
      layer_rate(t, sh[0], sh[1], sh[2], tsc, &u, &f);
      std::printf("%-18s  layer K=%ld M=%ld O=%ld: unfused %.0f, fused %.0f binary MAC / cycle\n",
                  t->name, (long)sh[0], (long)sh[1], (long)sh[2], u, f);
    }
  }
  return 0;
}

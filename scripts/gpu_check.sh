#!/usr/bin/env bash
# One command on a GPU machine: build the CUDA kernels (JIT, sm_80 + sm_90a), check them bit for bit
# against hwq/kernels/reference.py on randomized shapes (every case on the sm_80 mma.sync kernel and,
# on an H100/H200, on the sm_90a wgmma kernel in both tile layouts), run each bad call in its own
# process, and print one benchmark table last (binary GEMM 8192^3, binary 3x3 conv on ResNet-18's
# 256/512-channel layers vs cuDNN fp16 channels_last, W2A2 GEMM vs torch._int_mm at its best layout).
#   bash scripts/gpu_check.sh            (from the repository root; needs torch with CUDA and nvcc)
# Bounded: every phase has its own time limit, 200 + 130 + 140 + 90 s = 560 s at the very most; a
# normal run takes a few minutes (most of it the build).
# Full logs go to $OUT (default /tmp/hwq_gpu_out): build.log, check.log, check_cases.jsonl,
# check_summary.txt, errors.log, bench.log, bench_table.md. Each phase is its own process with its own
# time limit, so a failing check still leaves the benchmark (and the reverse). If the kernels are not
# bit-exact, the checks stop after HWQ_CHECK_MAX_FAIL (10) failing conv cases, the benchmark still
# runs, and a CORRECTNESS FAILED banner is printed before and after the table (exit status 1).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/hwq_gpu_out}"
export OUT
mkdir -p "$OUT"
rm -f "$OUT"/check_summary.txt "$OUT"/bench_table.md  # no stale results from an earlier run
PY="${PYTHON:-python3}"
export HWQ_CUDA_BUILD="${HWQ_CUDA_BUILD:-/tmp/hwq_cuda_build}"
# Build with every core, but not more jobs than the 16 the GPU machines have.
export MAX_JOBS="${MAX_JOBS:-16}"
# A segfault in any phase prints the Python stack into that phase's log.
export PYTHONFAULTHANDLER=1
# nvcc on PATH may be a wrapper; hwq/kernels/cuda.py finds the toolkit folder itself.

start=$(date +%s)
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -2; "$PY" -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } \
  > "$OUT/env.log" 2>&1
head -3 "$OUT/env.log"

echo "== build"
timeout 200 "$PY" scripts/gpu_check.py build > "$OUT/build.log" 2>&1
build_rc=$?
grep -E "^extension|^device|error|Error" "$OUT/build.log" | head -20
if [ $build_rc -ne 0 ]; then
  echo "BUILD FAILED (rc $build_rc); last lines of $OUT/build.log:"
  tail -40 "$OUT/build.log"
  exit 1
fi
echo "   build: $(( $(date +%s) - start )) s"

echo "== check"
timeout 130 "$PY" scripts/gpu_check.py check > "$OUT/check.log" 2>&1
check_rc=$?
grep -E "^FAIL|conv cases|sticky|stopping" "$OUT/check.log" | cut -c1-400 | head -25
[ $check_rc -eq 124 ] && echo "CHECK TIMED OUT (130 s)"
[ $check_rc -ne 0 ] && [ $check_rc -ne 1 ] && [ $check_rc -ne 124 ] && { echo "check crashed (rc $check_rc):"; tail -30 "$OUT/check.log"; }

banner() {
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! CORRECTNESS FAILED (check rc $check_rc): the kernels are NOT bit-exact (or the check"
  echo "!!! crashed); benchmark timings are of wrong kernels. See $OUT/check.log, check_summary.txt."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
}
[ $check_rc -ne 0 ] && banner

echo "== bench"
timeout 140 "$PY" scripts/gpu_check.py bench > "$OUT/bench.log" 2>&1
bench_rc=$?
grep -E "FAILED|graph capture failed" "$OUT/bench.log" | head -10
[ $bench_rc -ne 0 ] && { echo "bench rc $bench_rc:"; tail -15 "$OUT/bench.log"; }

echo
grep -h "^CHECKS" "$OUT/check.log" || echo "CHECKS: no summary (rc $check_rc)"
cat "$OUT/bench_table.md" 2>/dev/null || echo "no benchmark table (rc $bench_rc)"
grep -q "| NO |" "$OUT/bench_table.md" 2>/dev/null && echo "!!! some benchmark outputs were NOT exact (| NO |)"
[ $check_rc -ne 0 ] && banner

# Last, each bad call in its own process: a crash (the first two H200 runs died with SIGSEGV on the
# "channel mismatch" call) fails that call alone, is named, and cannot cost the results above.
echo "== bad inputs"
timeout 90 "$PY" scripts/gpu_check.py errors > "$OUT/errors.log" 2>&1
errors_rc=$?
grep -E "^  |^FAIL|^BAD-INPUT" "$OUT/errors.log" | head -70
[ $errors_rc -ne 0 ] && [ $errors_rc -ne 1 ] && { echo "bad-input checks crashed (rc $errors_rc):"; tail -30 "$OUT/errors.log"; }

grep -q "^BAD-INPUT" "$OUT/errors.log" || echo "BAD-INPUT CHECKS: no summary (rc $errors_rc)"
[ $check_rc -ne 0 ] && echo "!!! CORRECTNESS FAILED (see the banner above the table)"
echo "total $(( $(date +%s) - start )) s; logs in $OUT"
[ $check_rc -eq 0 ] && [ $errors_rc -eq 0 ] && [ $bench_rc -eq 0 ]

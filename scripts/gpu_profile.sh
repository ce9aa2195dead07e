#!/usr/bin/env bash
# Nsight Compute profile of the CUDA kernels on a GPU machine: build (as gpu_check.sh), then one
# call each of the binary GEMM 8192^3 on wgmma and on mma.sync and of the binary 3x3 conv 256ch
# 14x14 batch 256 on wgmma (scripts/gpu_check.py profile) under ncu, every section (--set full).
#   bash scripts/gpu_profile.sh          (from the repository root; needs torch with CUDA, nvcc, ncu)
# Writes to $OUT (default /tmp/hwq_gpu_profile): build.log, profile.log, hwq.ncu-rep (open it in
# Nsight Compute's GUI) and ncu_details.txt (its text form); prints each kernel's speed-of-light,
# occupancy and warp-stall summary. Bounded: 200 + 240 s at most; a normal run is about 2 minutes.
# Why: the kernels reach 7% of the wgmma .b1 ceiling while far from any bandwidth limit
# (docs/cuda.md, Results); the counters say whether the time is in the pipeline's waits, the
# epilogue or the launch shape, before anything is changed.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/hwq_gpu_profile}"
export OUT
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export HWQ_CUDA_BUILD="${HWQ_CUDA_BUILD:-/tmp/hwq_cuda_build}" MAX_JOBS="${MAX_JOBS:-16}"
NCU="${NCU:-$(command -v ncu)}"
[ -n "$NCU" ] || { echo "no ncu on PATH (set NCU=/path/to/ncu)"; exit 2; }
start=$(date +%s)
timeout 200 "$PY" scripts/gpu_check.py build > "$OUT/build.log" 2>&1 || {
  echo "BUILD FAILED; last lines of $OUT/build.log:"; tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
# --clock-control base (ncu's default) locks the clocks, so counters compare across runs.
timeout 240 "$NCU" --target-processes all --kernel-name regex:"conv_sm90_kernel|conv_kernel" \
  --set full --export "$OUT/hwq" --force-overwrite \
  "$PY" scripts/gpu_check.py profile > "$OUT/profile.log" 2>&1
rc=$?
grep -E "^profiled|error|ERROR" "$OUT/profile.log" | head -20
[ $rc -ne 0 ] && { echo "ncu rc $rc; last lines:"; tail -20 "$OUT/profile.log"; }
if [ -f "$OUT/hwq.ncu-rep" ]; then
  "$NCU" --import "$OUT/hwq.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1
  # The lines that say where the time goes, per kernel.
  grep -E "^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Block Limit|Waves Per SM|Grid Size|Block Size|Dynamic Shared|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" \
    "$OUT/ncu_details.txt" | head -120
fi
echo "total $(( $(date +%s) - start )) s; report in $OUT"
[ $rc -eq 0 ]

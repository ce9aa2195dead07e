#!/usr/bin/env bash
# The long CIFAR-10 schedule (recipes/cifar10_long.toml) on a GPU machine that is lent for minutes
# at a time: bounded in wall time, and resumable on the next machine from the checkpoints it
# returns.
#
#   bash scripts/gpu_cifar10.sh SCHEMES MINUTES        e.g.  bash scripts/gpu_cifar10.sh float 8
#
# Inputs, in the ignored folder .carry/ of the checkout (it travels with the working tree when the
# machine's job runner is told to carry it):
#   .carry/cifar10.tar.gz  the CIFAR-10 image folders, made on the machine that has them with
#                          mkdir -p .carry && tar czf .carry/cifar10.tar.gz -C "$HWQ_DATA" cifar10
#                          (about 20 MB: the 60,000 small JPEGs repeat the same header tables, which
#                          gzip removes; the folder itself is 57 MB)
#   .carry/runs.tar        optional: the runs.tar an earlier call returned; training resumes from it
# Outputs, in $OUT (default /tmp/hwq_gpu_cifar10):
#   runs.tar   every scheme's last.pt, results, recipe and reports (no TensorBoard logs), to carry
#              into the next call as .carry/runs.tar or to unpack under runs/
#   train.log  the training log (one line per epoch, with its wall time)
#
# Training stops at MINUTES (SIGINT: hwq train keeps the checkpoint of the last finished epoch and
# exits 130), so the command's own time limit is never hit and runs.tar is always written.
# HWQ_TRAIN_SET adds `--set` overrides, e.g. HWQ_TRAIN_SET="data.subset=512 train.epochs=1" for a
# smoke test; HWQ_DEVICE (default cuda) lets that smoke test run on a CPU.
set -u
cd "$(dirname "$0")/.."
SCHEMES=${1:?usage: gpu_cifar10.sh SCHEMES MINUTES}
MINUTES=${2:?usage: gpu_cifar10.sh SCHEMES MINUTES}
# timeout treats 0 as "no limit", which would let the device call's own limit kill the job unsaved.
if ! awk -v m="$MINUTES" 'BEGIN { exit !(m ~ /^[0-9]*\.?[0-9]+$/ && m + 0 > 0) }'; then
  echo "MINUTES=$MINUTES is not accepted: expected a positive number of minutes" >&2; exit 2
fi
OUT=${OUT:-/tmp/hwq_gpu_cifar10}
WORK=${HWQ_GPU_WORK:-/tmp/hwq_cifar10}
DEVICE=${HWQ_DEVICE:-cuda}
PY=${PYTHON:-python3}
[ -f .carry/cifar10.tar.gz ] || { echo "no .carry/cifar10.tar.gz: make it first (see the top of $0)" >&2; exit 2; }
mkdir -p "$OUT" "$WORK/data" "$WORK/runs"
start=$(date +%s)
tar xzf .carry/cifar10.tar.gz -C "$WORK/data" || exit 1
if [ -f .carry/runs.tar ]; then
  tar xf .carry/runs.tar -C "$WORK/runs" || exit 1
  echo "resuming from .carry/runs.tar"
fi
echo "data unpacked in $(( $(date +%s) - start )) s"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

SETS=""
for s in ${HWQ_TRAIN_SET:-}; do SETS="$SETS --set $s"; done
# The decoded uint8 cache goes with the run, not into the home folder of a machine that is lost.
export HWQ_CACHE="$WORK/cache" PYTHONUNBUFFERED=1
# shellcheck disable=SC2086
timeout --signal=INT --kill-after=60 "${MINUTES}m" "$PY" -m hwq train recipes/cifar10_long.toml \
  --data-dir "$WORK/data/cifar10" --device "$DEVICE" --out "$WORK/runs/cifar10_long" \
  --schemes "$SCHEMES" --resume --set train.progress=false $SETS > "$OUT/train.log" 2>&1
rc=$?
case $rc in
  0) echo "training finished" ;;
  124|130) echo "stopped at ${MINUTES} min (rc $rc): the last finished epoch is checkpointed" ;;
  *) echo "hwq train failed (rc $rc)" ;;
esac
tar cf "$OUT/runs.tar" --exclude=tb -C "$WORK/runs" . || exit 1
grep -E "epoch|test accuracy|Error|error" "$OUT/train.log" | tail -30
echo "runs.tar: $(du -h "$OUT/runs.tar" | cut -f1); total $(( $(date +%s) - start )) s"
[ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 130 ]

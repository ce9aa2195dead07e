#!/bin/sh
# Train the whole CIFAR-10 CPU-budget table (docs/training.md) in two lanes, one core each, and
# add every finished row to the model zoo. Interrupted? Run the same command again: every
# `hwq train` here runs with --resume, so finished schemes are skipped and a scheme in progress
# continues from its last epoch.
#
#   sh scripts/cifar10_table.sh DATA_DIR [OUT_DIR]        (OUT_DIR defaults to runs/)
#
# Lane A: ResNet-20 float (60 epochs), then the schemes fine-tuned from it (30 epochs in all).
#         Then scripts/budget_pareto.py (issue 15, docs/training.md): budget-allocated plans against
#         uniform W2A2/W3A3/W4A4 on Loom, 3 fine-tuning epochs each (7 plans; PARETO=0 skips it).
# Lane B: ResNet-20 W1A1 (30 epochs from scratch), then FINN's CNV: float, W2A2, W1A2, W1A1
#         (15 epochs each, the quantized ones from the CNV float).
# Measured on a 2-core AMD EPYC (Zen 4), one torch thread per lane: 225 s a ResNet-20 epoch and
# 265-270 s a CNV epoch, so lane A takes about 5.6 hours and lane B about 6.4.
# Each lane writes its log to OUT_DIR/<lane>.log. HWQ=... picks the hwq command (default: the
# project's .venv, else hwq on the PATH). ZOO=0 skips adding the rows to hwq/zoo/.
set -eu
if [ $# -lt 1 ] || [ ! -d "$1/train" ]; then
    echo "usage: sh scripts/cifar10_table.sh DATA_DIR [OUT_DIR]" >&2
    echo "DATA_DIR: a CIFAR-10 image folder with train/<class>/ and test/<class>/ (got: ${1:-nothing})" >&2
    exit 2
fi
DATA=$1
OUT=${2:-runs}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${HWQ:-}" ]; then
    if [ -x "$ROOT/.venv/bin/hwq" ]; then HWQ=$ROOT/.venv/bin/hwq; else HWQ=hwq; fi
fi
PY=$(dirname "$(command -v "$HWQ")")/python
mkdir -p "$OUT"

train() {  # train RECIPE OUT SCHEMES
    "$HWQ" train "$ROOT/recipes/$1.toml" --data-dir "$DATA" --out "$2" --schemes "$3" --resume \
        --set train.progress=false
}

lane_a() {
    train cifar10 "$OUT/cifar10" float,w8a8,w4a4,w2a2,ternary,pow2,mixed
    if [ "${PARETO:-1}" != 0 ]; then  # lane B runs hours longer: the budget fronts fit in its shadow
        "$PY" "$ROOT/scripts/budget_pareto.py" "$ROOT/recipes/cifar10.toml" --data-dir "$DATA" \
            --out "$OUT/cifar10" --energies 0.30x,0.34x,w3a3,w4a4 --uniform w2a2,w3a3,w4a4 \
            --finetune 3 --seeds 0
    fi
}
lane_b() {
    train cifar10 "$OUT/cifar10" w1a1
    train cifar10_cnv "$OUT/cifar10_cnv" float,w2a2,w1a2,w1a1
}

lane_a > "$OUT/lane_a.log" 2>&1 &
A=$!
lane_b > "$OUT/lane_b.log" 2>&1 &
B=$!
status=0
wait $A || { echo "lane A failed: see $OUT/lane_a.log" >&2; status=1; }
wait $B || { echo "lane B failed: see $OUT/lane_b.log" >&2; status=1; }
[ $status -eq 0 ] || exit $status

if [ "${ZOO:-1}" != 0 ]; then
    for s in float w8a8 w4a4 w2a2 w1a1 ternary pow2 mixed; do
        "$PY" "$ROOT/scripts/zoo_add.py" "$OUT/cifar10" $s cifar10/resnet20-$s --data-dir "$DATA"
    done
    for s in float w2a2 w1a2 w1a1; do
        "$PY" "$ROOT/scripts/zoo_add.py" "$OUT/cifar10_cnv" $s cifar10/cnv-$s --data-dir "$DATA"
    done
    "$PY" "$ROOT/scripts/zoo_table.py" --data-dir "$DATA"
fi

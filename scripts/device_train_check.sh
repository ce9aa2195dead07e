#!/bin/sh
# Device check for hwq train on a GPU: single-process CUDA training of the digits recipe (three
# schemes, 3 epochs), run twice: the two runs must give bit-identical checkpoints (deterministic
# algorithms, CUBLAS workspace). Prints what is missing when the machine lacks a dependency.
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/hwq_device_check}
$PY - <<'PYEOF'
import importlib
for m in ("torch", "sklearn", "tqdm", "torch.utils.tensorboard"):
    try:
        importlib.import_module(m)
        print("have", m)
    except Exception as e:
        print("MISSING", m, e)
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
PYEOF
ARGS="digits --device cuda --no-progress --schemes float,w4a4,w1a1 --set train.epochs=3 --set schemes.w4a4.epochs=2 --set schemes.w1a1.epochs=3"
for i in 1 2; do
    /usr/bin/time -f "run $i: %e s" $PY -m hwq train $ARGS --out "$OUT/run$i" > "$OUT.log$i" 2>&1 || { tail -30 "$OUT.log$i"; exit 1; }
done
tail -6 "$OUT.log1"
$PY - "$OUT" <<'PYEOF'
import sys, torch
out = sys.argv[1]
for s in ("float", "w4a4", "w1a1"):
    a = torch.load(f"{out}/run1/{s}/last.pt", weights_only=True)
    b = torch.load(f"{out}/run2/{s}/last.pt", weights_only=True)
    same = all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    print(s, "acc", round(a["metrics"][-1]["test_acc"], 2), "bit-identical across runs:", same)
PYEOF

"""Accuracy against accelerator energy: budget-allocated plans against uniform plans (issue 15).

One sensitivity (HAWQ-V3's Omega, Yao et al., ICML 2021) is taken on the trained float model;
then for each energy budget the exact allocation (hwq.search.budget) chooses every layer's
(w_bits, a_bits), and each allocated plan and each uniform plan is applied, fine-tuned for the same
epochs with the ``--like`` scheme's optimizer and schedule, and evaluated on the test split. The
two sets of points are two accuracy-energy fronts; the allocation is worth having where its front
lies above the uniform one (more accuracy at the same energy, or the same accuracy for less).

    python scripts/budget_pareto.py recipes/cifar10.toml --data-dir DIR --out runs/table/cifar10 \\
        --energies 0.30x,0.34x,w3a3,0.44x,w4a4 --uniform w2a2,w3a3,w4a4 --finetune 3 --seeds 0

Every finished (plan, seed) is written at once to ``OUT/search/pareto.json``; run the same command
again after an interruption and the finished ones are skipped (a row records the settings it was
measured under, and rows measured under other settings are refused rather than mixed). The
sensitivity is kept in ``OUT/search/pareto.sensitivity.json``. ``--plot FILE`` draws both fronts
(matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from hwq._io import atomic_write_text
from hwq._table import text_table
from hwq.search import runner
from hwq.search.budget import budget
from hwq.search.sensitivity import Sensitivity, sensitivity
from hwq.train import recipe as recipes
from hwq.train.recipe import section


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in _names(text)]
    except ValueError:
        raise ValueError(f"--seeds {text!r} is not accepted: expected integers such as 0,1,2") \
            from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {text!r} is not accepted: expected non-negative integers")
    return seeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True, help="the --out folder of hwq train (holds SCHEME/last.pt)")
    ap.add_argument("--scheme", default="float", help="the trained scheme to start from")
    ap.add_argument("--like", default="w4a4", help="quantizers and fine-tuning settings of this scheme")
    ap.add_argument("--energies", required=True,
                    help="energy budgets, comma-separated: 0.3x (of uniform 8-bit) or w3a3 (of that "
                         "uniform plan)")
    ap.add_argument("--uniform", default="w2a2,w3a3,w4a4", help="uniform plans to compare")
    ap.add_argument("--finetune", type=int, default=3, help="fine-tuning epochs for every plan")
    ap.add_argument("--seeds", default="0", help="fine-tuning seeds (data order, augmentation)")
    ap.add_argument("--sensitivity", default="fisher", choices=["fisher", "hutchinson", "loss"])
    ap.add_argument("--iters", type=int, default=16)
    ap.add_argument("--arch", default=None, help="default: the recipe's report.arch")
    ap.add_argument("--plot", default=None, help="write the two fronts to this image file")
    ap.add_argument("--plans", default=None,
                    help="measure only these plans, comma-separated labels such as "
                         "allocated@w4a4,w4a4 (to split the work across processes, each with its "
                         "own --out); default: all")
    args = ap.parse_args(argv)

    if args.finetune < 0:
        raise ValueError(f"--finetune {args.finetune} is not accepted: expected >= 0 epochs")
    seeds = _seeds(args.seeds)
    energies = _names(args.energies)
    if not energies:
        raise ValueError("--energies is empty: expected budgets such as 0.3x,w3a3")
    uniform = runner.uniform_pairs(_names(args.uniform))
    labels = [f"allocated@{e}" for e in energies] + [c for c, _ in uniform]
    wanted = labels if args.plans is None else _names(args.plans)
    if not wanted or any(w not in labels for w in wanted):
        raise ValueError(f"--plans {args.plans!r} is not accepted: expected labels among {labels}")
    recipe = recipes.load(recipes.find(args.recipe), [("data.dir", args.data_dir),
                                                       ("train.progress", False)])
    rep = section(recipe, "report")
    arch = args.arch or rep.arch
    config = rep.config if arch == rep.arch else None
    weights, acts, tune_as = runner.like_quantizers(recipe, args.like, args.scheme)
    settings = {"recipe": recipe["name"], "scheme": args.scheme, "like": args.like, "arch": arch,
                "arch_config": config, "finetune_epochs": args.finetune,
                "sensitivity": args.sensitivity,
                "iters": args.iters if args.sensitivity == "hutchinson" else 0}

    folder = os.path.join(args.out, "search")
    os.makedirs(folder, exist_ok=True)
    rows_path = os.path.join(folder, "pareto.json")
    sens_path = os.path.join(folder, "pareto.sensitivity.json")
    rows = []
    if os.path.exists(rows_path):
        with open(rows_path) as f:
            rows = json.load(f)["rows"]
        other = [r["plan"] for r in rows if r["settings"] != settings]
        if other:
            raise ValueError(f"{rows_path} holds rows {other} measured under other settings "
                             f"than {settings}: expected the same; move the file away first")

    model, evaluate, calib, data = runner.trained(recipe, args.out, args.scheme)
    batches = runner.sensitivity_batches(recipe, data)
    bits = (2, 3, 4, 6, 8)
    if os.path.exists(sens_path):
        with open(sens_path) as f:
            sens = Sensitivity.from_dict(json.load(f))
        if sens.method != args.sensitivity:
            raise ValueError(f"{sens_path} was measured with {sens.method!r}, not "
                             f"{args.sensitivity!r}: move it away first")
    else:
        sens = sensitivity(model, batches, bits=bits, method=args.sensitivity, iters=args.iters,
                           weights=weights, acts=acts)
        atomic_write_text(sens_path, json.dumps(sens.to_dict(), indent=1) + "\n")
        print(sens.table() + "\n")

    plans = []
    for e in energies:
        res = budget(model, batches, f"energy={e}", arch=arch, arch_config=config, w_bits=bits,
                     calib=calib, sens=sens, weights=weights, acts=acts)
        plans.append((f"allocated@{e}", res.bits))
        names, pinned = list(res.bits), res.pinned
    plans += [(c, runner.uniform_bits(p, names, pinned)) for c, p in uniform]

    plans = [(label, b) for label, b in plans if label in wanted]

    tune_data = runner.tuning_data(recipe, data, args.finetune)
    done = {(r["plan"], r["seed"]) for r in rows}
    for label, plan_bits in plans:
        for seed in seeds:
            if (label, seed) in done:
                continue
            tune = runner.finetuner(recipe, tune_as, tune_data, args.finetune, seed=seed)
            row = runner.measure_plan(model, label, plan_bits, calib, weights, acts, evaluate,
                                      tune, args.finetune, arch, config)
            row.update(seed=seed, settings=settings)
            rows.append(row)
            atomic_write_text(rows_path, json.dumps({"format": "hwq.budget_pareto", "version": 1,
                                                     "rows": rows}, indent=1) + "\n")
            print(f"{label} seed {seed}: PTQ {row['accuracy_ptq']:.2f}  tuned "
                  f"{row.get('accuracy_finetuned', float('nan')):.2f}  "
                  f"{row['energy_pj'] / 1e6:.3f} uJ", flush=True)

    order = [label for label, _ in plans]
    table = []
    for label in order:
        mine = [r for r in rows if r["plan"] == label]
        if not mine:
            continue
        # rows of --finetune 0 have no tuned accuracy (statistics cannot take the NaN)
        tuned = [r["accuracy_finetuned"] for r in mine if "accuracy_finetuned" in r]
        ptq = [r["accuracy_ptq"] for r in mine]
        spread = f" ±{statistics.stdev(tuned):.2f}" if len(tuned) > 1 else ""
        table.append([label, f"{mine[0]['energy_pj'] / 1e6:.3f}",
                      f"{mine[0]['latency_s'] * 1e3:.4f}", f"{statistics.mean(ptq):.2f}",
                      f"{statistics.mean(tuned):.2f}{spread}" if tuned else "-",
                      str(len(mine))])
    print(text_table(["plan", "energy_uJ", "latency_ms", "ptq_acc", "tuned_acc", "seeds"], table))
    print(f"rows: {rows_path}")
    if args.plot:
        _plot(rows, args.plot, arch)
    return 0


def _plot(rows: list[dict], path: str, arch: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, marker in (("allocated", "o"), ("uniform", "s")):
        pts = sorted((r["energy_pj"] / 1e6, r["accuracy_finetuned"]) for r in rows
                     if r["plan"].startswith("allocated") == (kind == "allocated")
                     and "accuracy_finetuned" in r)
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=kind)
    ax.set_xlabel(f"energy per image on {arch} (uJ)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp"  # written whole, then renamed: no half image under the name
    fig.savefig(tmp, dpi=150, format=os.path.splitext(path)[1][1:] or "png")
    os.replace(tmp, path)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

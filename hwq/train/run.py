"""``run(recipe, out)``: what ``hwq train`` does. For every scheme of the recipe, in order: build the
model, load the weights of its ``init`` scheme, quantize it, train it (hwq.train.engine.fit), then
write its profile (``<out>/<scheme>/<scheme>.profile.json``, with run-time statistics from test
batches) and its accelerator report (``<scheme>.report.txt`` / ``.json``, hwq.map with the recipe's
[report] arch and baseline). At the end, a table puts the schemes side by side
(``<out>/results.json`` holds the same numbers).

Layout of ``out``::

    <out>/recipe.json            the recipe as run (defaults and overrides applied); schemes of
                                 earlier runs into the same folder are kept in its schemes table
    <out>/results.json           per scheme: accuracy, bits, MACs, cycles, energy; written after
                                 each scheme, merged with the schemes of earlier runs
    <out>/<scheme>/recipe.json   the recipe the scheme was last trained with
    <out>/<scheme>/last.pt       checkpoint after the last finished epoch
    <out>/<scheme>/tb/           TensorBoard logs
    <out>/<scheme>/<scheme>.profile.json, .report.txt, .report.json
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .. import hw, models
from .._io import atomic_write_text, read_json
from .._table import text_table
from ..convert import quantize
from ..models.build import OPTION_OWNERS
from ..nn import QuantLayer
from ..profile import profile as make_profile
from . import checkpoint, data as data_mod, distributed, engine
from .determinism import KeepDeterminism, seed_everything
from .recipe import scheme, section


def provenance() -> dict[str, str]:
    """Where a result comes from: the CPU (model name, family and model numbers and cores, from
    /proc/cpuinfo where there is one), torch's version and thread count, and the git commit of
    hwq's source tree ("+dirty" when it has uncommitted changes; "unknown" outside a checkout)."""
    import platform
    import subprocess
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines()
                          if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu = fields.get("model name", cpu)
        # A virtual machine may name its CPU only "AMD EPYC": family and model tell its generation.
        if "cpu family" in fields and "model" in fields:
            cpu += f" (family {fields['cpu family']} model {fields['model']})"
    except (OSError, ValueError):
        pass
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        commit = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") \
            if head.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    return {"machine": f"{cpu}, {os.cpu_count()} cores, {threads} torch thread{plural}",
            "torch": str(torch.__version__), "commit": commit}


def build_model(recipe: dict, name: str, data: data_mod.Data) -> nn.Module:
    """The model of scheme ``name``, quantized as the scheme says (weights freshly initialised)."""
    m, s = section(recipe, "model"), scheme(recipe, name)
    options = {}
    for key, owner in OPTION_OWNERS.items():
        value = getattr(m, key)
        if value is None:
            continue
        if m.name != owner:
            shown = list(value) if isinstance(value, tuple) else value  # as the TOML wrote it
            raise ValueError(f"model.{key} = {shown!r} is not accepted for model {m.name!r}: "
                             f"only {owner} takes {key}")
        options[key] = value
    model = models.build(m.name, num_classes=data.num_classes,
                         in_channels=data.input_shape[0], act=s.act, **options)
    if not s.is_float:
        quantize(model, weights=s.weights, acts=s.acts, layers=s.layers, skip=s.skip,
                 plan=s.plan)
    return model


def _init_weights(recipe: dict, name: str, model: nn.Module, out: str,
                  data: data_mod.Data) -> None:
    """Load the trained weights of scheme ``init`` into ``model`` (its quantizers start afresh)."""
    init = scheme(recipe, name).init
    path = os.path.join(out, init, "last.pt")
    if not os.path.exists(path):
        raise ValueError(f"scheme {name!r} starts from scheme {init!r} (schemes.{name}.init), but "
                         f"{path!r} does not exist: train {init!r} first (include it in --schemes)")
    state = checkpoint.load(path)
    source = build_model(recipe, init, data)
    if "model" not in state:
        raise ValueError(f"checkpoint {path!r} has no 'model' entry: not written by hwq train")
    checkpoint.load_model_state(source, state["model"], path)
    float_params = {k: v for k, v in source.state_dict().items()
                    if "weight_quant." not in k and "act_quant." not in k}
    missing, unexpected = model.load_state_dict(float_params, strict=False)
    left = [k for k in missing if "weight_quant." not in k and "act_quant." not in k]
    if left or unexpected:
        raise ValueError(f"scheme {name!r}: the weights of scheme {init!r} do not fit its model "
                         f"(missing {left[:5]}, unexpected {unexpected[:5]})")


def bit_widths(model: nn.Module, attr: str) -> str:
    """The ``attr`` ("w_bits" or "a_bits") of the model's conv and linear layers in one short
    string, as the results table shows it: "4" when all agree, else per layer in order with runs
    of three or more alike written "4x18" ("8/4x18/8"); "f" for a float layer."""
    vals = [str(getattr(m, attr)) if isinstance(m, QuantLayer) else "f"
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    vals = ["f" if v == "32" else v for v in vals]
    if len(set(vals)) == 1:
        return vals[0]
    runs: list[list] = []  # layers in order; three or more alike in a row read "4x18"
    for v in vals:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return "/".join(f"{v}x{n}" if n >= 3 else "/".join([v] * n) for v, n in runs)


def _stats_batches(dataset, n_batches: int, batch_size: int) -> Iterable[torch.Tensor]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for i, (x, _) in enumerate(loader):
        if i >= n_batches:
            break
        yield x


def _previous(path: str) -> dict[str, Any]:
    """The JSON object an earlier run wrote at ``path`` ({} when there is none), to merge with."""
    if not os.path.exists(path):
        return {}
    try:
        data = read_json(path, "file")
    except ValueError as e:
        raise ValueError(f"{e}: an earlier run's file cannot be merged with this run's; move it "
                         "away or choose another --out") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} is not a JSON object: an earlier run's file cannot be merged "
                         "with this run's; move it away or choose another --out")
    return data


def table(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side table of the schemes' results."""
    head = ["scheme", "w_bits", "a_bits", "test_acc", "vs_float", "MACs", "speedup",
            "energy_uJ", "energy_eff"]
    ref = results.get("float", {}).get("test_acc")
    rows = []
    for name, r in results.items():
        delta = "" if ref is None or name == "float" else f"{r['test_acc'] - ref:+.2f}"
        rep = r.get("report") or {}
        rows.append([name, r["w_bits"], r["a_bits"], f"{r['test_acc']:.2f}", delta,
                     f"{r['macs']:,}", f"{rep.get('speedup', float('nan')):.2f}x",
                     f"{rep.get('energy_pj', float('nan')) / 1e6:.3f}",
                     f"{rep.get('energy_efficiency', float('nan')):.2f}x"])
    return text_table(head, rows, left=3)


def run(recipe: dict, out: str, schemes: list[str] | None = None, resume: bool = False,
        log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Train the recipe's schemes (all, or those named in ``schemes``) into folder ``out`` and
    return {scheme: results}. ``recipe``: a validated recipe (hwq.train.recipe.load)."""
    with KeepDeterminism():
        return _run(recipe, out, schemes, resume, log)


def _run(recipe, out, schemes, resume, log):
    names = list(recipe["schemes"]) if schemes is None else list(schemes)
    unknown = [n for n in names if n not in recipe["schemes"]]
    if unknown or not names:
        raise ValueError(f"schemes={names!r} is not accepted: expected names among "
                         f"{list(recipe['schemes'])}")
    tr, d, rep = section(recipe, "train"), section(recipe, "data"), section(recipe, "report")
    for arch in (rep.arch, rep.baseline):
        if arch not in hw.ARCHS:
            raise ValueError(f"report arch {arch!r} is not accepted: expected one of "
                             f"{list(hw.ARCHS)}")
    if tr.threads:
        torch.set_num_threads(tr.threads)
    device = distributed.setup(tr.device)
    rank = distributed.rank_world()[0]
    data = data_mod.datasets(d.name, d.dir, d.download, d.augment, d.crop_padding, d.flip,
                             d.cache_dir, log, d.subset)
    for name in names:  # bad quantizer specs, layer globs or plans fail now, not hours later
        try:
            build_model(recipe, name, data)
        except ValueError as e:
            raise ValueError(f"scheme {name!r}: {e}") from None
    os.makedirs(out, exist_ok=True)
    # A later run with other --schemes into the same folder adds to what is there: finished
    # results and scheme definitions of earlier runs are kept, per scheme.
    all_results = _previous(os.path.join(out, "results.json"))
    old_recipe = _previous(os.path.join(out, "recipe.json"))
    if rank == 0:
        merged = {**recipe, "schemes": {**(old_recipe.get("schemes") or {}), **recipe["schemes"]}}
        atomic_write_text(os.path.join(out, "recipe.json"), json.dumps(merged, indent=1) + "\n")
    results: dict[str, dict[str, Any]] = {}
    origin = provenance()  # the code and machine as the run starts
    for name in names:
        s = scheme(recipe, name)
        seed_everything(tr.seed, tr.deterministic)
        model = build_model(recipe, name, data)
        folder = os.path.join(out, name)
        ckpt = os.path.join(folder, "last.pt")
        if rank == 0:
            os.makedirs(folder, exist_ok=True)
            atomic_write_text(os.path.join(folder, "recipe.json"),
                              json.dumps(recipe, indent=1) + "\n")
        if s.init is not None and not (resume and os.path.exists(ckpt)):
            _init_weights(recipe, name, model, out, data)
        history = engine.fit(
            model, data.train, data.test, epochs=s.epochs, batch_size=d.batch_size,
            optim=s.optim, schedule=s.schedule, seed=tr.seed,
            test_batch_size=d.test_batch_size, device=device, checkpoint_path=ckpt,
            resume=resume, clip_weights=s.clip_weights, label_smoothing=tr.label_smoothing,
            log_dir=os.path.join(folder, "tb"), progress=tr.progress, workers=d.workers,
            sync_bn=tr.sync_bn, desc=name)
        last = history[-1]
        done = [h for h in history if h.get("train_s")]  # epochs run by this call
        if done and rank == 0:
            data_s, train_s = sum(h["data_s"] for h in done), sum(h["train_s"] for h in done)
            log(f"[{name}] {len(done)} epochs in {train_s / 60:.1f} min of training steps; data "
                f"loading took {100 * data_s / train_s:.1f}% of it")
        model.cpu().eval()
        r = {"test_acc": last["test_acc"], "test_loss": last["test_loss"],
             "train_acc": last["train_acc"], "epochs": last["epoch"],
             "w_bits": bit_widths(model, "w_bits"), "a_bits": bit_widths(model, "a_bits"),
             "train_s": round(sum(h.get("train_s", 0.0) for h in history), 1), **origin}
        if rank == 0:
            prof = make_profile(model, batches=_stats_batches(data.test, rep.stats_batches,
                                                              d.test_batch_size), name=name)
            prof.to_json(os.path.join(folder, f"{name}.profile.json"))
            report = hw.map(prof, rep.arch, baseline=rep.baseline, config=rep.config)
            report.to_json(os.path.join(folder, f"{name}.report.json"))
            atomic_write_text(os.path.join(folder, f"{name}.report.txt"), report.table() + "\n")
            r.update(macs=prof.macs, report={
                "arch": rep.arch, "baseline": rep.baseline, "cycles": report.total.cycles,
                "energy_pj": report.total.energy_pj.total, "speedup": report.total.speedup,
                "energy_efficiency": report.total.energy_efficiency})
            log(f"\n[{name}] test accuracy {r['test_acc']:.2f}% after {r['epochs']} epochs\n"
                + report.table())
        model.to(device)
        results[name] = r
        if rank == 0:  # after each scheme: an interrupted run keeps the schemes it finished
            # Read the file again: another run into the same folder (other --schemes, e.g. the
            # second lane of scripts/cifar10_table.sh) may have finished a scheme since we began.
            all_results = {**_previous(os.path.join(out, "results.json")), **results}
            atomic_write_text(os.path.join(out, "results.json"),
                              json.dumps(all_results, indent=1) + "\n")
    if rank == 0:
        log(f"\n{recipe['name']}: test accuracy and {rep.arch} vs {rep.baseline} "
            f"(profiles and reports in {out}/<scheme>/)\n" + table(all_results))
    return results

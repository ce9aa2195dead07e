"""``hwq search``: the searches on a model trained by ``hwq train`` (its recipe and --out folder).

The model of one scheme is rebuilt from the recipe and loaded from ``<out>/<scheme>/last.pt``;
accuracy is measured on the recipe's test split (as Stripes and Proteus measure their precision
profiles on the validation set: the tolerance is then met on that split by construction, a separate
split would be needed for an unbiased estimate); activation ranges are calibrated on the first
training batches. Results go to ``<out>/search/``.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from .._table import text_table
from ..profile import profile as make_profile
from ..train import checkpoint, data as data_mod, engine
from ..train.determinism import KeepDeterminism, seed_everything
from ..train.recipe import scheme as recipe_scheme, section
from ..train.run import build_model
from .common import apply, check_bits, to_plan
from .energy import energy_search
from .layerwise import check_search_numbers, layerwise

CALIB_SAMPLES = 256  # training images for the activation ranges, in one batch


def trained(recipe: dict, out: str, scheme: str):
    """(model, evaluate, calib, data) for scheme ``scheme`` trained into ``out``."""
    if scheme not in recipe["schemes"]:
        raise ValueError(f"--scheme {scheme!r} is not accepted: expected one of "
                         f"{list(recipe['schemes'])}")
    d, tr = section(recipe, "data"), section(recipe, "train")
    if tr.threads:  # the command's process only: it ends after the search
        torch.set_num_threads(tr.threads)
    data = data_mod.datasets(d.name, d.dir, d.download, augment=False)
    path = os.path.join(out, scheme, "last.pt")
    if not os.path.exists(path):
        raise ValueError(f"{path!r} does not exist: train the scheme first "
                         f"(hwq train ... --out {out} --schemes {scheme})")
    model = build_model(recipe, scheme, data)
    state = checkpoint.load(path)
    if "model" not in state:
        raise ValueError(f"checkpoint {path!r} has no 'model' entry: not written by hwq train")
    checkpoint.load_model_state(model, state["model"], path)
    model.eval()
    n = min(CALIB_SAMPLES, len(data.train))
    calib = [torch.stack([data.train[i][0] for i in range(n)])]

    def evaluate(m: nn.Module) -> float:
        return engine.evaluate(m, data.test, d.test_batch_size, torch.device("cpu"))["acc"]
    return model, evaluate, calib, data


def finetuner(recipe: dict, scheme: str, data, epochs: int, seed: int | None = None
              ) -> Callable[[nn.Module], None] | None:
    """Fine-tune a candidate in place for ``epochs`` epochs with the scheme's optimizer settings.
    ``seed`` (default: the recipe's train.seed) sets the data order and augmentation."""
    if epochs <= 0:
        return None
    s, tr, d = recipe_scheme(recipe, scheme), section(recipe, "train"), section(recipe, "data")
    seed = tr.seed if seed is None else seed

    def tune(m: nn.Module) -> None:
        with KeepDeterminism():
            seed_everything(seed, tr.deterministic)
            engine.fit(m, data.train, data.test, epochs=epochs, batch_size=d.batch_size,
                       optim=s.optim, schedule=s.schedule, seed=seed,
                       test_batch_size=d.test_batch_size)
    return tune


def run_layerwise(recipe: dict, out: str, scheme: str, tolerance: float, start: int,
                  min_bits: int, log: Callable[[str], None] = print):
    check_search_numbers(tolerance=tolerance)  # before minutes of loading, not after
    check_bits("start", start)
    check_bits("min_bits", min_bits)
    if min_bits > start:
        raise ValueError(f"min_bits={min_bits} is not accepted: expected at most start={start}")
    model, evaluate, calib, _ = trained(recipe, out, scheme)
    res = layerwise(model, evaluate, calib, tolerance=tolerance, start=start, min_bits=min_bits)
    folder = os.path.join(out, "search")
    os.makedirs(folder, exist_ok=True)
    plan_path = os.path.join(folder, f"{scheme}.layerwise.plan.json")
    res.plan.to_json(plan_path)
    q = apply(model, res.bits, calib)
    make_profile(q, batches=calib[:1], name=f"{scheme}-layerwise").to_json(
        os.path.join(folder, f"{scheme}.layerwise.profile.json"))
    log(res.table() + f"\nplan: {plan_path}\nprofile: "
        + os.path.join(folder, f"{scheme}.layerwise.profile.json"))
    return res


def run_energy(recipe: dict, out: str, scheme: str, arch: str, target: float | None,
               tolerance: float, uniform_bits: list[int], finetune_epochs: int,
               plot: str | None, arch_config=None, log: Callable[[str], None] = print):
    check_search_numbers(target=target, tolerance=tolerance, finetune=finetune_epochs)
    for b in uniform_bits:
        check_bits("uniform_bits", b)
    model, evaluate, calib, data = trained(recipe, out, scheme)
    res = energy_search(model, evaluate, calib, arch=arch, target=target, tolerance=tolerance,
                        uniform_bits=uniform_bits,
                        finetune=finetuner(recipe, scheme, data, finetune_epochs),
                        arch_config=arch_config)
    folder = os.path.join(out, "search")
    os.makedirs(folder, exist_ok=True)
    res.to_json(os.path.join(folder, f"{scheme}.energy.json"))
    if res.chosen is not None:
        res_plan = os.path.join(folder, f"{scheme}.energy.plan.json")
        to_plan(res.chosen.bits).to_json(res_plan)
    if plot:
        res.plot(plot)
    log(res.table() + f"\nresults: {os.path.join(folder, scheme + '.energy.json')}")
    return res


SENSITIVITY_SAMPLES = 512  # training images for the sensitivities (HAWQ-V3 uses a few thousand)


def uniform_bits(pair: tuple[int, int], names: list[str], pinned: dict) -> dict:
    """The uniform plan at ``pair`` with the pinned layers at their pins."""
    return {n: pinned.get(n, pair) for n in names}


def like_quantizers(recipe: dict, like: str | None, scheme: str) -> tuple[object, object, str]:
    """(weights template, acts template, scheme to fine-tune as) for ``--like``: that scheme's
    quantizer kinds and options with bits set per layer; None: fixed:b and ``scheme``'s
    settings."""
    if like is None:
        return "fixed", "fixed", scheme
    if like not in recipe["schemes"]:
        raise ValueError(f"--like {like!r} is not accepted: expected one of "
                         f"{list(recipe['schemes'])}")
    s = recipe_scheme(recipe, like)
    if s.weights in (None, "float") or s.acts in (None, "float"):
        raise ValueError(f"--like {like!r} is not accepted: scheme {like!r} is float, "
                         "expected a quantized scheme")
    return s.weights, s.acts, like


def uniform_pairs(compare: list[str] | None) -> list[tuple[str, tuple[int, int]]]:
    """[("w4a4", (4, 4)), ...] from names such as "w4a4"."""
    import re
    pairs = []
    for c in compare or []:
        m = re.fullmatch(r"w(\d+)a(\d+)", c.strip().lower())
        if not m:
            raise ValueError(f"--compare {c!r} is not accepted: expected uniform plans such as "
                             "w4a4,w8a8")
        pair = (int(m.group(1)), int(m.group(2)))
        check_bits("--compare w_bits", pair[0])
        check_bits("--compare a_bits", pair[1])
        pairs.append((c.strip().lower(), pair))
    return pairs


def sensitivity_batches(recipe: dict, data) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SENSITIVITY_SAMPLES training images (un-augmented), drawn with the recipe's seed, in
    batches of the recipe's batch size."""
    d = section(recipe, "data")
    g = torch.Generator().manual_seed(section(recipe, "train").seed)
    idx = torch.randperm(len(data.train), generator=g)[:SENSITIVITY_SAMPLES].tolist()
    batches = []
    for i in range(0, len(idx), d.batch_size):
        items = [data.train[j] for j in idx[i:i + d.batch_size]]
        batches.append((torch.stack([x for x, _ in items]),
                        torch.stack([torch.as_tensor(y) for _, y in items])))
    return batches


def tuning_data(recipe: dict, data, epochs: int):
    """The data fine-tuning runs on: the augmented training split when the recipe augments."""
    d = section(recipe, "data")
    if epochs > 0 and d.augment:  # fine-tune on what training saw: augmented images
        return data_mod.datasets(d.name, d.dir, d.download, d.augment, d.crop_padding, d.flip,
                                 d.cache_dir, None, d.subset)
    return data


def measure_plan(model: nn.Module, label: str, bits: dict, calib, weights, acts,
                 evaluate: Callable[[nn.Module], float], tune: Callable[[nn.Module], None] | None,
                 epochs: int, arch: str | None, arch_config=None) -> dict:
    """Apply ``bits`` to a copy of ``model``, evaluate it (PTQ), fine-tune it with ``tune`` and
    evaluate again; with ``arch``, its energy (pJ per image) and latency (s) on that design."""
    from .. import hw
    q = apply(model, bits, calib, weights, acts)
    row = {"plan": label, "bits": {n: list(p) for n, p in bits.items()},
           "accuracy_ptq": evaluate(q)}
    if tune is not None:
        tune(q)
        q.eval()
        row["accuracy_finetuned"] = evaluate(q)
        row["finetune_epochs"] = epochs
    if arch is not None:
        rep = hw.map(make_profile(q, batches=calib[:1], name=label), arch, config=arch_config)
        row["energy_pj"] = rep.total.energy_pj.total
        row["latency_s"] = rep.total.seconds
    return row


def run_budget(recipe: dict, out: str, scheme: str, budgets: list[str], arch: str | None,
               method: str = "hutchinson", iters: int = 16, bits: list[int] | None = None,
               pinned="ends", finetune_epochs: int = 0, compare: list[str] | None = None,
               arch_config=None, like: str | None = None, log: Callable[[str], None] = print):
    """hwq.search.budget on a trained scheme; writes ``<out>/search/<scheme>.budget.*``. The
    allocated plan (and each uniform plan of ``compare``, e.g. "w4a4", pinned layers kept) is then
    applied, fine-tuned ``finetune_epochs`` epochs and evaluated; accuracies go to
    ``<scheme>.budget.accuracy.json``. ``like``: a recipe scheme whose quantizers (kinds and
    options, bits set per layer) and fine-tuning optimizer and schedule are used; default: fixed:b
    and the trained scheme's settings."""
    import json

    from .._io import atomic_write_text
    from .budget import budget

    weights, acts, tune_as = like_quantizers(recipe, like, scheme)
    pairs = uniform_pairs(compare)
    model, evaluate, calib, data = trained(recipe, out, scheme)
    batches = sensitivity_batches(recipe, data)
    folder = os.path.join(out, "search")
    stem = f"{scheme}.budget"
    res = budget(model, batches, budgets, arch=arch, arch_config=arch_config, method=method,
                 iters=iters, w_bits=bits or (2, 3, 4, 6, 8), pinned=pinned, calib=calib,
                 weights=weights, acts=acts)
    paths = res.write(folder, stem)
    log(res.sensitivity.table() + "\n\n" + res.table())
    names = list(res.bits)
    plans = [("allocated", res.bits)] + [(c, uniform_bits(p, names, res.pinned))
                                          for c, p in pairs]
    tune = finetuner(recipe, tune_as, tuning_data(recipe, data, finetune_epochs),
                     finetune_epochs)
    rows = [measure_plan(model, label, bits_, calib, weights, acts, evaluate, tune,
                         finetune_epochs, arch, arch_config) for label, bits_ in plans]
    acc_path = os.path.join(folder, f"{stem}.accuracy.json")
    atomic_write_text(acc_path, json.dumps(rows, indent=1) + "\n")
    nan = float("nan")
    table = text_table(["plan", "ptq_acc", "tuned_acc", "energy_uJ", "latency_ms"],
                       [[r["plan"], f"{r['accuracy_ptq']:.2f}",
                         f"{r.get('accuracy_finetuned', nan):.2f}",
                         f"{r.get('energy_pj', nan) / 1e6:.4f}",
                         f"{r.get('latency_s', nan) * 1e3:.5f}"] for r in rows])
    log(table + "\n" + "\n".join(f"{k}: {v}" for k, v in paths.items())
        + f"\naccuracy: {acc_path}")
    return res, rows

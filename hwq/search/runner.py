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

from ..profile import profile as make_profile
from ..train import checkpoint, data as data_mod, engine
from ..train.recipe import scheme_settings
from ..train.run import _KeepDeterminism, build_model, seed_everything
from .common import apply, to_plan
from .energy import energy_search
from .layerwise import layerwise

CALIB_SAMPLES = 256  # training images for the activation ranges, in one batch


def trained(recipe: dict, out: str, scheme: str):
    """(model, evaluate, calib, data) for scheme ``scheme`` trained into ``out``."""
    if scheme not in recipe["schemes"]:
        raise ValueError(f"--scheme {scheme!r} is not accepted: expected one of "
                         f"{list(recipe['schemes'])}")
    d = recipe["data"]
    if recipe["train"]["threads"]:  # the command's process only: it ends after the search
        torch.set_num_threads(recipe["train"]["threads"])
    data = data_mod.datasets(d["name"], d["dir"], d["download"], augment=False)
    path = os.path.join(out, scheme, "last.pt")
    if not os.path.exists(path):
        raise ValueError(f"{path!r} does not exist: train the scheme first "
                         f"(hwq train ... --out {out} --schemes {scheme})")
    model = build_model(recipe, scheme, data)
    model.load_state_dict(checkpoint.load(path)["model"])
    model.eval()
    n = min(CALIB_SAMPLES, len(data.train))
    calib = [torch.stack([data.train[i][0] for i in range(n)])]

    def evaluate(m: nn.Module) -> float:
        return engine.evaluate(m, data.test, d["test_batch_size"], torch.device("cpu"))["acc"]
    return model, evaluate, calib, data


def finetuner(recipe: dict, scheme: str, data, epochs: int) -> Callable[[nn.Module], None] | None:
    """Fine-tune a candidate in place for ``epochs`` epochs with the scheme's optimizer settings."""
    if epochs <= 0:
        return None
    st = scheme_settings(recipe, scheme)

    def tune(m: nn.Module) -> None:
        with _KeepDeterminism():
            _tune(m)

    def _tune(m: nn.Module) -> None:
        seed_everything(recipe["train"]["seed"], recipe["train"]["deterministic"])
        engine.fit(m, data.train, data.test, epochs=epochs, batch_size=recipe["data"]["batch_size"],
                   optim=st["optim"], schedule=st["schedule"], seed=recipe["train"]["seed"],
                   test_batch_size=recipe["data"]["test_batch_size"])
    return tune


def run_layerwise(recipe: dict, out: str, scheme: str, tolerance: float, start: int,
                  min_bits: int, log: Callable[[str], None] = print):
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

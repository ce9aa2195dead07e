"""Budgeted mixed precision on the digits CNN (3 float epochs): the allocation is the optimum found
by enumerating every plan (on the real sensitivities and Loom energies, and on random instances
with two budgets), the budget holds when the written plan is applied again with plain hwq calls and
mapped, pinned layers keep their pins, and bad budgets fail with clear errors."""
import itertools
import json
import os
import random

import pytest
import torch

import hwq
from hwq.cli import main
from hwq.search.budget import Budget, allocate, parse_budgets
from hwq.search.runner import trained
from hwq.train import recipe as recipes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTEUS = {"proteus": True}  # the digits recipe's Loom: values stored at their own precision


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("budget"))
    recipe = recipes.load(os.path.join(ROOT, "recipes", "digits.toml"),
                          ["train.epochs=3", "train.progress=false"])
    hwq.train.run(recipe, out, schemes=["float"], log=lambda s: None)
    model, evaluate, calib, data = trained(recipe, out, "float")
    x = torch.stack([data.train[i][0] for i in range(256)])
    y = torch.stack([torch.as_tensor(data.train[i][1]) for i in range(256)])
    batches = [(x[:128], y[:128]), (x[128:], y[128:])]
    sens = hwq.search.sensitivity(model, batches, bits=(2, 3, 4, 8), method="fisher")
    return recipe, out, model, calib, batches, sens


def mapped_energy(model, plan_path, calib):
    """The plan file applied with hwq.quantize (activation quantizers calibrated alone), profiled
    and mapped on Loom: independent of hwq.search."""
    import copy
    q = hwq.quantize(copy.deepcopy(model), plan=hwq.Plan.from_json(plan_path)).eval()
    for m in q.modules():
        if isinstance(m, hwq.quant.Quantizer):
            m.train()
    with torch.no_grad():
        for x in calib:
            q(x)
    q.eval()
    prof = hwq.profile(q, batches=calib[:1])
    return hwq.map(prof, "loom", config=PROTEUS), prof


def brute_force(omega, costs, limits):
    names = list(omega)
    best = None
    for combo in itertools.product(*[sorted(omega[n]) for n in names]):
        if all(sum(costs[n][p][m] for n, p in zip(names, combo)) <= lim
               for m, lim in limits.items()):
            val = sum(omega[n][p] for n, p in zip(names, combo))
            if best is None or val < best[0]:
                best = (val, dict(zip(names, combo)))
    return best


def test_optimal_against_brute_force_on_digits(digits, tmp_path):
    _, _, model, calib, batches, sens = digits
    res = hwq.search.budget(model, batches, "energy=0.45x", arch="loom", arch_config=PROTEUS,
                            w_bits=(2, 4, 8), a_bits=(2, 3, 8), pinned=None, sens=sens,
                            out=str(tmp_path), stem="bf")
    omega = {n: {p: res.omega(n, p) for p in res.candidates[n]} for n in res.bits}
    costs = {n: {p: res.costs[n][p] for p in res.candidates[n]} for n in res.bits}
    assert all(len(v) == 9 for v in omega.values()) and len(omega) == 4  # 9^4 = 6561 plans
    best_val, best_plan = brute_force(omega, costs, res.limits)
    assert res.objective == pytest.approx(best_val, rel=1e-12, abs=0)
    assert res.bits == best_plan
    # the budget binds: the unconstrained optimum (all 8-bit) would not fit
    assert res.limits["energy"] < res.uniform8["energy"]
    assert any(w < 8 or a < 8 for w, a in res.bits.values())


@pytest.mark.parametrize("seed", range(6))
def test_optimal_against_brute_force_random_two_budgets(seed):
    rng = random.Random(seed)
    pairs = [(w, a) for w in (2, 4, 8) for a in (2, 8)]
    names = [f"l{i}" for i in range(5)]  # 6^5 = 7776 plans
    omega = {n: {p: rng.random() / (p[0] * p[1]) for p in pairs} for n in names}
    costs = {n: {p: {"energy": rng.uniform(0.5, 1.5) * p[0] * p[1],
                     "size": rng.uniform(0.5, 1.5) * p[0]} for p in pairs} for n in names}
    full = {m: sum(max(costs[n][p][m] for p in pairs) for n in names) for m in ("energy", "size")}
    limits = {"energy": 0.3 * full["energy"], "size": 0.5 * full["size"]}
    best_val, best_plan = brute_force(omega, costs, limits)
    got = allocate(omega, costs, limits)
    assert got.objective == pytest.approx(best_val, rel=1e-12)
    assert got.choice == best_plan
    for m, lim in limits.items():
        assert got.totals[m] <= lim


def test_budget_met_when_plan_mapped_back_and_pins_kept(digits, tmp_path):
    _, _, model, calib, batches, sens = digits
    res = hwq.search.budget(model, batches, "energy=0.5x", arch="loom", arch_config=PROTEUS,
                            w_bits=(2, 3, 4, 8), sens=sens, out=str(tmp_path), stem="b")
    rep, prof = mapped_energy(model, str(tmp_path / "b.plan.json"), calib)
    u8 = hwq.map(hwq.profile(hwq.search.apply(model, {n: (8, 8) for n in res.bits}, calib),
                             batches=calib[:1]), "loom", config=PROTEUS)
    limit = 0.5 * u8.total.energy_pj.total
    assert res.limits["energy"] == pytest.approx(limit, rel=1e-12)
    assert rep.total.energy_pj.total <= limit
    assert rep.total.energy_pj.total == pytest.approx(res.totals["energy"], rel=1e-12)
    # pinned: the first and last layers in execution order stay at 8 bits, in the file too
    assert res.pinned == {"conv1": (8, 8), "fc": (8, 8)}
    plan = json.loads((tmp_path / "b.plan.json").read_text())["layers"]
    for n in ("conv1", "fc"):
        assert res.bits[n] == (8, 8)
        assert prof[n].w_bits == 8 and prof[n].a_bits == 8
        assert plan[n]["weights"]["bits"] == 8 if isinstance(plan[n]["weights"], dict) \
            else plan[n]["weights"] == "fixed:8"
    assert any(res.bits[n] != (8, 8) for n in ("conv2", "conv3"))
    for f in ("b.plan.json", "b.profile.json", "b.report.json", "b.json"):
        assert (tmp_path / f).exists()
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["bits"]["conv1"] == [8, 8] and d["sensitivity"]["method"] == "fisher"


def test_custom_pins_uniform_reference_and_size_budget(digits):
    _, _, model, calib, batches, sens = digits
    res = hwq.search.budget(model, batches, ["energy=w4a4", "size=0.008MB"], arch="loom",
                            arch_config=PROTEUS, w_bits=(2, 3, 4, 8), sens=sens,
                            pinned={"conv3": (4, 8)})
    assert res.bits["conv3"] == (4, 8)
    # energy=w4a4: the uniform W4A4 plan with the pin kept, mapped independently
    ref = {n: (4, 4) for n in res.bits}
    ref["conv3"] = (4, 8)
    rep = hwq.map(hwq.profile(hwq.search.apply(model, ref, calib), batches=calib[:1]), "loom",
                  config=PROTEUS)
    assert res.limits["energy"] == pytest.approx(rep.total.energy_pj.total, rel=1e-12)
    assert res.totals["energy"] <= res.limits["energy"]
    # size: weights * w_bits, summed by hand from the model's own weight tensors
    mods = dict(model.named_modules())
    size_bits = sum(mods[n].weight.numel() * w for n, (w, _) in res.bits.items())
    assert res.totals["size"] == size_bits <= 0.008 * 8e6


def test_quantizer_templates_reach_the_plan(digits, tmp_path):
    _, _, model, calib, batches, sens = digits
    with pytest.raises(ValueError, match="sens was computed with quantizers"):
        hwq.search.budget(model, batches, "bops=0.5x", arch=None, w_bits=(2, 4, 8), sens=sens,
                          weights="lsq", acts="lsq")
    res = hwq.search.budget(model, batches, "bops=0.5x", arch=None, w_bits=(2, 4, 8),
                            method="fisher", weights={"name": "lsq", "per_channel": True},
                            acts="lsq", out=str(tmp_path), stem="l")
    plan = hwq.Plan.from_json(str(tmp_path / "l.plan.json"))
    for n, (w, a) in res.bits.items():
        assert plan.layers[n]["weights"].kind == "lsq" and plan.layers[n]["weights"].bits == w
        assert plan.layers[n]["weights"].per_channel
        assert plan.layers[n]["acts"].kind == "lsq" and plan.layers[n]["acts"].bits == a
    assert res.profile["conv2"].w_quant.startswith("lsq")


def test_unresolved_sensitivity_warns(digits):
    import dataclasses
    _, _, model, calib, batches, sens = digits
    noisy = dataclasses.replace(sens, layers=[
        dataclasses.replace(l, a_trace_se=10 * abs(l.a_trace)) if l.name == "conv2" else l
        for l in sens.layers])
    with pytest.warns(hwq.search.UnresolvedSensitivityWarning,
                      match=r"\['conv2.acts'\]"):
        hwq.search.budget(model, batches, "bops=0.5x", arch=None, w_bits=(2, 4, 8), sens=noisy)
    # a pinned layer's noise does not matter: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hwq.search.budget(model, batches, "bops=0.8x", arch=None, w_bits=(2, 4, 8), sens=noisy,
                          pinned=["conv1", "conv2", "fc"])


def test_bops_budget_without_arch(digits):
    _, _, model, calib, batches, sens = digits
    res = hwq.search.budget(model, batches, "bops=0.004G", arch=None, w_bits=(2, 4, 8),
                            sens=sens)
    prof = hwq.profile(model, calib[0][:1])
    bops = sum(l.macs * res.bits[l.name][0] * res.bits[l.name][1] for l in prof)
    assert res.totals["bops"] == bops <= 0.004e9
    assert res.report is None and "energy" not in res.totals


@pytest.mark.parametrize("budgets, kwargs, match", [
    ("energy=0.05x", {}, r"budget 'energy=0.05x' is infeasible: energy <= .* the least energy "
                         r"any plan reaches .* is"),
    ("energy=-1uJ", {}, "negative or non-finite budget is not accepted"),
    ("energy=0.5x", {"arch": "tpu9"}, r"arch='tpu9' is not accepted: expected one of \["),
    ("power=1", {}, r"metric 'power' is not accepted: expected one of \['energy'"),
    ("energy=3furlongs", {}, "unit '.*furlongs' is not accepted for energy"),
    ("energy=1uJ,energy=2uJ", {}, "more than one budget for"),
    ("latency=0.1ms", {"arch": None}, "need an accelerator"),
    ("energy=0.5x", {"pinned": ["conv9"]}, r"pinned layer\(s\) \['conv9'\] are not accepted"),
    ("energy=0.5x", {"w_bits": (1, 4)}, "w_bits=1 is not accepted"),
    ("energy", {}, "expected METRIC=VALUE"),
])
def test_bad_budgets(digits, budgets, kwargs, match):
    _, _, model, calib, batches, sens = digits
    kw = dict(arch="loom", arch_config=PROTEUS, w_bits=(2, 4, 8), sens=sens)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hwq.search.budget(model, batches, budgets, **kw)


def test_jointly_infeasible_budgets():
    pairs = [(2, 2), (8, 8)]
    omega = {"a": {(2, 2): 1.0, (8, 8): 0.0}, "b": {(2, 2): 1.0, (8, 8): 0.0}}
    # (2,2) is cheap in energy but big in size, (8,8) the reverse: each budget alone is feasible
    costs = {n: {(2, 2): {"energy": 1.0, "size": 10.0}, (8, 8): {"energy": 10.0, "size": 1.0}}
             for n in omega}
    assert sorted(omega["a"]) == pairs
    with pytest.raises(ValueError, match="infeasible together"):
        allocate(omega, costs, {"energy": 5.0, "size": 5.0})
    got = allocate(omega, costs, {"energy": 11.0, "size": 11.0})  # one of each
    assert sorted(got.choice.values()) == [(2, 2), (8, 8)] and got.objective == 1.0


def test_budget_parsing_units():
    assert Budget.parse("energy=2.5uJ").value == pytest.approx(2.5e6)  # pJ
    assert Budget.parse("energy=2.5").value == pytest.approx(2.5e6)  # default uJ
    assert Budget.parse("latency=0.2ms").value == pytest.approx(2e-4)
    assert Budget.parse("latency=3us").value == pytest.approx(3e-6)
    assert Budget.parse("size=0.5MB").value == pytest.approx(4e6)  # bits
    assert Budget.parse("size=1000bits").value == 1000
    assert Budget.parse("bops=1.5G").value == pytest.approx(1.5e9)
    assert Budget.parse("bops=2e6").value == pytest.approx(2e6)
    assert Budget.parse("energy=0.5x").scale == 0.5
    assert Budget.parse("energy=W4A4").uniform == (4, 4)
    assert [b.metric for b in parse_budgets({"energy": "0.5x", "size": "1MB"})] == ["energy",
                                                                                   "size"]


def test_cli_budget_writes_plan_profile_report(digits):
    recipe, out, *_ = digits
    rc = main(["search", os.path.join(ROOT, "recipes", "digits.toml"), "--out", out,
               "--no-progress", "--mode", "budget", "--budget", "energy=0.5x", "--arch", "loom",
               "--sensitivity", "fisher", "--bits", "2,4,8", "--compare", "w4a4"])
    assert rc == 0
    folder = os.path.join(out, "search")
    for f in ("plan.json", "profile.json", "report.json", "json", "accuracy.json"):
        assert os.path.exists(os.path.join(folder, f"float.budget.{f}")), f
    res = json.loads(open(os.path.join(folder, "float.budget.json")).read())
    assert res["mapped"]["energy"] <= res["budgets"][0]["limit"]
    rows = json.loads(open(os.path.join(folder, "float.budget.accuracy.json")).read())
    assert [r["plan"] for r in rows] == ["allocated", "w4a4"]
    assert rows[1]["bits"]["conv1"] == [8, 8] and rows[1]["bits"]["conv2"] == [4, 4]
    # the measured loss rise as the sensitivity: same outputs, the budget met again
    assert main(["search", os.path.join(ROOT, "recipes", "digits.toml"), "--out", out,
                 "--no-progress", "--mode", "budget", "--budget", "energy=0.5x", "--arch", "loom",
                 "--sensitivity", "loss", "--bits", "2,4,8"]) == 0
    res = json.loads(open(os.path.join(folder, "float.budget.json")).read())
    assert res["sensitivity"]["method"] == "loss" and res["sensitivity"]["backward"] == 0
    assert res["mapped"]["energy"] <= res["budgets"][0]["limit"]
    assert main(["search", os.path.join(ROOT, "recipes", "digits.toml"), "--out", out,
                 "--mode", "budget", "--budget", "energy=-2uJ"]) == 2
    assert main(["search", os.path.join(ROOT, "recipes", "digits.toml"), "--out", out,
                 "--mode", "budget"]) == 2

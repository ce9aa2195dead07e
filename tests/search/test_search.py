"""Precision search on a small trained model (the digits CNN, 3 float epochs): the layer-wise plan
really meets its tolerance when re-applied and re-evaluated here with plain code; the energy search
picks the least-energy candidate meeting its target, and its Pareto front is checked against a
brute-force dominance test and a hand-worked case."""
import json
import os

import pytest
import torch

import hwq
from hwq.cli import main
from hwq.search import Candidate, energy_search, layerwise, pareto_front
from hwq.search.runner import trained
from hwq.train import recipe as recipes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("search"))
    recipe = recipes.load(os.path.join(ROOT, "recipes", "digits.toml"),
                          ["train.epochs=3", "train.progress=false"])
    hwq.train.run(recipe, out, schemes=["float"], log=lambda s: None)
    return recipe, out


def plain_accuracy(model, dataset):
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        return 100.0 * (model.eval()(x).argmax(1) == y).double().mean().item()


def requantized(model, plan, calib):
    """The plan applied again without hwq.search: quantize a copy, calibrate the activation
    quantizers alone in training mode, evaluate."""
    import copy
    q = hwq.quantize(copy.deepcopy(model), plan=plan).eval()
    for m in q.modules():
        if isinstance(m, hwq.quant.Quantizer):
            m.train()
    with torch.no_grad():
        for x in calib:
            q(x)
    return q.eval()


def test_layerwise_plan_meets_tolerance_when_reevaluated(run_dir, tmp_path):
    recipe, out = run_dir
    model, evaluate, calib, data = trained(recipe, out, "float")
    res = layerwise(model, evaluate, calib, tolerance=1.5, start=8)
    path = str(tmp_path / "plan.json")
    res.plan.to_json(path)
    names = ["conv1", "conv2", "conv3", "fc"]
    base_plan = hwq.Plan({n: {"weights": "fixed:8", "acts": "fixed:8"} for n in names})
    baseline = plain_accuracy(requantized(model, base_plan, calib), data.test)
    again = plain_accuracy(requantized(model, hwq.Plan.from_json(path), calib), data.test)
    assert baseline == pytest.approx(res.baseline, abs=1e-9)
    assert again == pytest.approx(res.accuracy, abs=1e-9)
    assert again >= baseline - 1.5
    assert set(res.bits) == set(names)
    assert any(w < 8 or a < 8 for w, a in res.bits.values())  # it did lower something
    rejected = [t for t in res.trace if not t["accepted"]]
    assert all(t["accuracy"] < res.baseline - 1.5 for t in rejected)


def test_layerwise_bad_arguments(run_dir):
    recipe, out = run_dir
    model, evaluate, calib, _ = trained(recipe, out, "float")
    with pytest.raises(ValueError, match="start=17 is not accepted.*2 to 16"):
        layerwise(model, evaluate, calib, start=17)
    with pytest.raises(ValueError, match="min_bits=9 is not accepted: expected at most start=8"):
        layerwise(model, evaluate, calib, start=8, min_bits=9)
    with pytest.raises(ValueError, match="tolerance=-1 is not accepted"):
        layerwise(model, evaluate, calib, tolerance=-1)


def test_pareto_front_hand_worked():
    c = lambda n, acc, e: Candidate(n, {}, acc, e, 0.0)  # noqa: E731
    cands = [c("a", 99.0, 10.0), c("b", 98.0, 5.0), c("c", 97.0, 6.0), c("d", 90.0, 1.0),
             c("e", 99.0, 12.0), c("f", 98.0, 5.0)]
    front = pareto_front(cands)
    # c is beaten by b (more accurate, less energy); e by a (same accuracy, less energy);
    # b and f tie exactly: neither dominates the other.
    assert [x.name for x in front] == ["d", "b", "f", "a"]
    for x in cands:  # brute force: on the front iff nobody is at least as good on both and better
        dominated = any(o.accuracy >= x.accuracy and o.energy_pj <= x.energy_pj
                        and (o.accuracy, o.energy_pj) != (x.accuracy, x.energy_pj) for o in cands)
        assert x.pareto == (not dominated)


def test_energy_search_picks_min_energy_meeting_target(run_dir):
    recipe, out = run_dir
    model, evaluate, calib, _ = trained(recipe, out, "float")
    res = energy_search(model, evaluate, calib, arch="loom", tolerance=2.0,
                        uniform_bits=(2, 4, 16), max_layerwise=4,
                        arch_config={"proteus": True})
    assert 9 <= len(res.candidates) <= 13  # 3 x 3 uniform pairs + up to 4 layer-wise ones
    assert any(c.name.startswith("layerwise-") for c in res.candidates)
    meeting = [c for c in res.candidates if c.accuracy >= res.target]
    assert res.target == pytest.approx(res.baseline - 2.0)
    assert res.chosen is not None and res.chosen in meeting
    assert res.chosen.energy_pj == min(c.energy_pj for c in meeting)
    assert res.chosen.pareto
    w16 = next(c for c in res.candidates if c.name == "w16a16")
    w2 = next(c for c in res.candidates if c.name == "w2a2")
    assert w2.energy_pj < w16.energy_pj  # lower precision, less energy on Loom
    assert "chosen" in res.table()


def test_cli_search_writes_plan_profile_front_and_plot(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    recipe, out = run_dir
    args = ["--out", out, "--set", "train.epochs=3", "--no-progress"]
    assert main(["search", "digits", *args, "--mode", "layerwise", "--start", "6",
                 "--tolerance", "2"]) == 0
    plan = hwq.Plan.from_json(os.path.join(out, "search", "float.layerwise.plan.json"))
    prof = hwq.Profile.from_json(os.path.join(out, "search", "float.layerwise.profile.json"))
    assert {l.name: (l.w_bits, l.a_bits) for l in prof.layers} == {
        n: (e["weights"].bits, e["acts"].bits) for n, e in plan.layers.items()}
    png = str(tmp_path / "front.png")
    assert main(["search", "digits", *args, "--mode", "energy", "--uniform-bits", "4,8",
                 "--tolerance", "3", "--plot", png]) == 0
    saved = json.load(open(os.path.join(out, "search", "float.energy.json")))
    assert saved["chosen"] and any(c["pareto"] for c in saved["candidates"])
    assert os.path.getsize(png) > 1000


def test_search_needs_a_trained_scheme(tmp_path, capsys):
    assert main(["search", "digits", "--out", str(tmp_path), "--scheme", "w4a4"]) == 2
    assert "train the scheme first" in capsys.readouterr().err

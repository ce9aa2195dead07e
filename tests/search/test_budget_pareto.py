"""scripts/budget_pareto.py on the digits recipe: the plans meet their budgets when mapped back
independently, finished rows are kept across runs, and rows of other settings are refused."""
import json
import os

import pytest

import hwq
from hwq.train import recipe as recipes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "recipes", "digits.toml")


@pytest.fixture(scope="module")
def trained_float(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pareto"))
    recipe = recipes.load(RECIPE, ["train.epochs=2", "train.progress=false"])
    hwq.train.run(recipe, out, schemes=["float"], log=lambda s: None)
    return out


def test_pareto_rows_budgets_and_resume(trained_float, capsys, load_script):
    out, script = trained_float, load_script("budget_pareto")
    args = [RECIPE, "--data-dir", "data", "--out", out, "--energies", "w4a4,0.45x",
            "--uniform", "w4a4,w2a2,w8a8", "--finetune", "0", "--seeds", "0"]
    assert script.main(args) == 0
    path = os.path.join(out, "search", "pareto.json")
    doc = json.loads(open(path).read())
    assert doc["format"] == "hwq.budget_pareto"
    rows = {r["plan"]: r for r in doc["rows"]}
    assert list(rows) == ["allocated@w4a4", "allocated@0.45x", "w4a4", "w2a2", "w8a8"]
    # the uniform rows are the uniform plans with the ends pinned at 8 bits
    assert rows["w2a2"]["bits"]["conv2"] == [2, 2] and rows["w2a2"]["bits"]["conv1"] == [8, 8]
    # each allocation meets its budget, measured on the applied model (measure_plan maps it)
    assert rows["allocated@w4a4"]["energy_pj"] <= rows["w4a4"]["energy_pj"] * (1 + 1e-9)
    u8 = rows["w8a8"]["energy_pj"]  # the uniform 8-bit plan, which 0.45x refers to
    assert rows["allocated@0.45x"]["energy_pj"] <= 0.45 * u8 * (1 + 1e-9)
    assert rows["w2a2"]["energy_pj"] < rows["w4a4"]["energy_pj"] < u8
    capsys.readouterr()
    before = open(path).read()
    assert script.main(args) == 0  # finished rows are skipped, not measured again
    assert "seed 0:" not in capsys.readouterr().out
    assert open(path).read() == before
    with pytest.raises(ValueError, match="other settings"):
        script.main(args[:-4] + ["--finetune", "1", "--seeds", "0"])
    with pytest.raises(ValueError, match="--seeds"):
        script.main(args[:-2] + ["--seeds", "-1"])


def test_pareto_plans_splits_the_work(trained_float, load_script):
    """--plans measures only the named plans (the rest of the work left to another process), and
    an unknown label is refused before anything is loaded."""
    out, script = trained_float, load_script("budget_pareto")
    args = [RECIPE, "--data-dir", "data", "--out", out, "--energies", "w4a4",
            "--uniform", "w4a4,w2a2", "--finetune", "0", "--seeds", "7"]
    assert script.main(args + ["--plans", "w2a2"]) == 0
    rows = json.loads(open(os.path.join(out, "search", "pareto.json")).read())["rows"]
    assert [r["plan"] for r in rows if r["seed"] == 7] == ["w2a2"]
    for bad in ["w3a3", "", "allocated@0.3x"]:
        with pytest.raises(ValueError, match=r"--plans .* not accepted: expected labels among "
                                             r"\['allocated@w4a4', 'w4a4', 'w2a2'\]"):
            script.main(args + ["--plans", bad])

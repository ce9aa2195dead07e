"""The recipe's typed views (issue 17, item 4): section() / scheme() give frozen dataclasses whose
fields are the schema, with the same checks and messages as the file form; the determinism helpers
are public and restore torch's settings."""
import dataclasses
import glob
import os

import pytest
import torch

from hwq.models.build import ACTS
from hwq.train import recipe as recipes
from hwq.train.determinism import KeepDeterminism, seed_everything

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.toml")))


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_sections_and_schemes_are_the_file_form_read_by_hand(path):
    r = recipes.load(path)
    for name in recipes.SECTION_TYPES:
        sec = recipes.section(r, name)
        assert dataclasses.is_dataclass(sec) and sec.to_table() == r[name]
    for name, raw in r["schemes"].items():
        s = recipes.scheme(r, name)
        # the effective settings merged by hand from the file form
        assert s.epochs == (raw["epochs"] or r["train"]["epochs"])
        assert s.optim.to_table() == {**r["optim"], **(raw["optim"] or {})}
        assert s.schedule.to_table() == {**r["schedule"], **(raw["schedule"] or {})}
        assert s.act == (raw["act"] or r["model"]["act"])
        assert (s.weights, s.acts, s.layers, s.plan, s.init) == (
            raw["weights"], raw["acts"], raw["layers"], raw["plan"], raw["init"])
        assert s.skip == tuple(raw["skip"] or ())
        assert recipes.scheme_settings(r, name) == {
            "epochs": s.epochs, "optim": s.optim.to_table(), "schedule": s.schedule.to_table(),
            "act": s.act}


def test_sections_are_frozen():
    r = recipes.load(recipes.find("digits"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipes.section(r, "optim").lr = 1.0


def test_schema_is_the_dataclass_fields():
    # the keys in the order the messages list them, the defaults of the fields
    assert list(recipes.SECTIONS["optim"]) == ["name", "lr", "momentum", "weight_decay", "nesterov"]
    assert recipes.SECTIONS["optim"]["lr"] == ((float, int), 0.1)
    assert recipes.SECTIONS["model"]["channels"] == ((list,), None)
    assert recipes.SECTIONS["train"]["deterministic"] == ((bool,), True)


@pytest.mark.parametrize("make,match", [
    (lambda: recipes.OptimConfig(lr=-1), r"recipe key optim.lr = -1 is not accepted: expected a "
                                         r"value > 0"),
    (lambda: recipes.OptimConfig(name="lamb"), r"optim.name = 'lamb' is not accepted: expected one "
                                               r"of \['sgd', 'adam', 'adamw'\]"),
    (lambda: recipes.ModelConfig(act="gelu"), r"model.act = 'gelu' is not accepted: expected one "
                                              r"of \['relu', 'hardtanh'\]"),
    (lambda: recipes.TrainConfig(epochs=True), r"train.epochs = True is not accepted: expected an "
                                               r"integer"),
    (lambda: recipes.TrainConfig(label_smoothing=1.0), r"expected a value in \[0, 1\)"),
    (lambda: recipes.ScheduleConfig.from_table({"nme": "step"}, "schemes.q.schedule"),
     r"unknown key\(s\) \['schemes.q.schedule.nme'\]; valid keys in \[schemes.q.schedule\]"),
    (lambda: recipes.ScheduleConfig.from_table({"gamma": float("inf")}, "schemes.q.schedule"),
     r"schemes.q.schedule.gamma = inf is not accepted: expected a finite number"),
])
def test_direct_construction_runs_the_recipe_checks(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_activation_choices_are_the_models_own():
    assert recipes.CHOICES[("model", "act")] == tuple(ACTS) == ("relu", "hardtanh")


def test_section_of_an_earlier_runs_recipe_json_fills_new_keys():
    old = {"data": {"name": "cifar10", "dir": "d", "batch_size": 128}}  # no cache_dir, subset...
    d = recipes.section(old, "data")
    assert (d.name, d.batch_size, d.cache_dir, d.subset) == ("cifar10", 128, "", 0)
    assert recipes.section({}, "train") == recipes.TrainConfig()
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['data.colour'\]"):
        recipes.section({"data": {"colour": 1}}, "data")
    with pytest.raises(ValueError, match=r"recipe section 'optimizer' is not accepted"):
        recipes.section({}, "optimizer")
    with pytest.raises(ValueError, match=r"scheme 'w9' is not accepted: expected one of"):
        recipes.scheme(recipes.load(recipes.find("digits")), "w9")


def test_keep_determinism_restores_torch_settings():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.get_num_threads())
    torch.backends.cudnn.benchmark = True
    try:
        with KeepDeterminism():
            seed_everything(3, deterministic=True)
            torch.set_num_threads(1)
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.backends.cudnn.benchmark
            a = torch.rand(3)
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        assert torch.backends.cudnn.benchmark and torch.get_num_threads() == before[2]
        seed_everything(3, deterministic=False)
        assert torch.equal(a, torch.rand(3))  # the same seed, the same draws
    finally:
        torch.backends.cudnn.benchmark = before[1]

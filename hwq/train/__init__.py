"""The training engine the recipes use: recipes (TOML), data sets, the loop with checkpoints and
TensorBoard logs, multi-process training, and ``run`` (what ``hwq train`` does).

    recipe = hwq.train.load_recipe("recipes/digits.toml", ["optim.lr=0.01"])
    hwq.train.section(recipe, "optim").lr, hwq.train.scheme(recipe, "w4a4").epochs  # typed views
    results = hwq.train.run(recipe, "runs/digits")
"""
from .checkpoint import load as load_checkpoint, save as save_checkpoint
from .data import datasets
from .determinism import KeepDeterminism, seed_everything
from .engine import evaluate, fit
from .recipe import Scheme, load as load_recipe, scheme, section, validate as validate_recipe
from .run import build_model, run

__all__ = ["load_recipe", "validate_recipe", "section", "scheme", "Scheme", "datasets", "fit",
           "evaluate", "run", "build_model", "load_checkpoint", "save_checkpoint",
           "seed_everything", "KeepDeterminism"]

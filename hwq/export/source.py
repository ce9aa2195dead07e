"""What ``hwq export`` exports: a trained model and an example input, from a run folder, a checkpoint
file or a zoo name.

  run folder      what ``hwq train`` wrote (recipe.json, <scheme>/last.pt): the scheme's model is
                  rebuilt from the recipe and its checkpoint loaded; the example input is the first
                  test images of the recipe's data set, or N(0, 1) noise of its input shape when
                  the data set is not on this machine (said so).
  checkpoint      a state_dict file (or a dict with 'model' or 'state_dict'), with the model, its
                  activation function and its quantizers named on the command line (--model,
                  --act, --shortcut, --weights, --acts, --plan): a state_dict does not record them
                  (a Bi-Real ResNet-20's blocks mark their structure, so it cannot be mistaken).
  zoo name        an entry of hwq.zoo (example input: N(0, 1) noise of its input shape), or what
                  the function given to ``set_zoo_resolver`` returns for the name.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

# Input shape (C, H, W) and classes of the data sets a recipe may name, when the data set itself
# is not loaded (hwq.train.data's module docstring).
DATA_SHAPES = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10),
               "cifar10": ((3, 32, 32), 10), "imagenet": ((3, 224, 224), 1000)}


class Source(NamedTuple):
    model: nn.Module
    example_input: torch.Tensor
    description: str  # where the model and the example input come from, for the user


_zoo_resolver: Callable[[str], Any] | None = None


def set_zoo_resolver(resolver: Callable[[str], Any] | None) -> None:
    """Resolve names with ``resolver(name)`` -> (model, example_input), raising ValueError for an
    unknown name, instead of hwq.zoo; None goes back to hwq.zoo."""
    global _zoo_resolver
    if resolver is not None and not callable(resolver):
        raise ValueError(f"resolver={resolver!r} is not accepted: expected a function "
                         "name -> (model, example_input)")
    _zoo_resolver = resolver


def _state_dict(path: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                return state[key]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds a {type(state).__name__}: expected a "
                         "state_dict (a dict of tensors), or a dict with 'model' or 'state_dict'")
    return state


def _load_into(model: nn.Module, state: dict, path: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [s.strip() for s in str(e).splitlines() if s.strip()]
        # "_extra_state" keys mark a structure that parameter names cannot tell apart (a
        # ResNet-20 with shortcut = "every" has the pair ResNet-20's parameters)
        hint = (" (its '_extra_state' entries mark a block structure other than the model's: "
                "for a ResNet-20 trained with shortcut = 'every' give --shortcut every)"
                if "_extra_state" in str(e) else "")
        raise ValueError(f"checkpoint {path!r} does not fit the model: "
                         f"{' '.join(lines[1:3])[:300] or lines[0][:300]}{hint}") from None


def from_run(folder: str, scheme: str | None, batch: int,
             input_size: tuple[int, ...] | None) -> Source:
    from ..train import data as data_mod
    from ..train.run import build_model
    recipe_path = os.path.join(folder, "recipe.json")
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    trained = [s for s in recipe.get("schemes", {})
               if os.path.exists(os.path.join(folder, s, "last.pt"))]
    if scheme is None:
        if len(trained) != 1:
            raise ValueError(f"run folder {folder!r} holds {len(trained)} trained schemes "
                             f"({', '.join(trained) or 'none'}): name one with --scheme")
        scheme = trained[0]
    if scheme not in trained:
        raise ValueError(f"--scheme {scheme!r} is not accepted for run folder {folder!r}: trained "
                         f"schemes are {trained or 'none'}")
    own = os.path.join(folder, scheme, "recipe.json")  # the recipe the scheme was trained with
    if os.path.exists(own):
        with open(own, encoding="utf-8") as f:
            recipe = json.load(f)
    d = recipe["data"]
    example, note = None, ""
    try:
        data = data_mod.datasets(d["name"], d["dir"], False, False)
        xs = [data.test[i][0] for i in range(min(batch, len(data.test)))]
        example = torch.stack(xs)
        note = f"the first {len(xs)} test images of {d['name']}"
    except (ValueError, OSError, ImportError) as e:
        if d["name"] not in DATA_SHAPES and input_size is None:
            raise ValueError(f"the data set of run folder {folder!r} cannot be loaded ({e}), so "
                             "its input shape is unknown: give --input-size") from None
        shape, classes = DATA_SHAPES.get(d["name"], (tuple(input_size[1:]), None))
        data = data_mod.Data(None, None, shape, classes)
        note = f"N(0, 1) noise ({d['name']} is not loadable here: {str(e).splitlines()[0][:120]})"
    if input_size is not None:
        example = torch.randn(input_size, generator=torch.Generator().manual_seed(0))
        note = f"N(0, 1) noise of --input-size {input_size}"
    elif example is None:
        example = torch.randn((batch,) + tuple(data.input_shape),
                              generator=torch.Generator().manual_seed(0))
    if data.num_classes is None:
        raise ValueError(f"run folder {folder!r}: the number of classes of data set "
                         f"{d['name']!r} is unknown without the data; it cannot be rebuilt here")
    model = build_model(recipe, scheme, data)
    ckpt = os.path.join(folder, scheme, "last.pt")
    from ..train import checkpoint
    state = checkpoint.load(ckpt)
    if "model" not in state:
        raise ValueError(f"checkpoint {ckpt!r} has no 'model' entry: not written by hwq train")
    _load_into(model, state["model"], ckpt)
    return Source(model.eval(), example, f"scheme {scheme!r} of run {folder!r}; example input: "
                                         f"{note}")


def from_checkpoint(path: str, model_name: str, weights: Any, acts: Any, plan: str | None,
                    num_classes: int, input_size: tuple[int, ...], act: str = "relu",
                    shortcut: str | None = None) -> Source:
    from .. import models
    from ..convert import quantize
    from ..models.build import OPTION_OWNERS
    if model_name is None:
        raise ValueError(f"checkpoint {path!r}: give --model (one of {list(models.NAMES)}) and the "
                         "quantizers it was trained with (--weights, --acts, --plan)")
    if input_size is None:
        raise ValueError(f"checkpoint {path!r}: give --input-size, e.g. 1,3,32,32")
    options = {}
    if shortcut is not None:
        owner = OPTION_OWNERS["shortcut"]
        if model_name != owner:
            raise ValueError(f"--shortcut {shortcut!r} is not accepted for model {model_name!r}: "
                             f"only {owner} takes shortcut")
        options["shortcut"] = shortcut
    model = models.build(model_name, num_classes=num_classes, in_channels=input_size[1], act=act,
                         **options)
    quantize(model, weights=weights, acts=acts, plan=plan)
    _load_into(model, _state_dict(path), path)
    example = torch.randn(input_size, generator=torch.Generator().manual_seed(0))
    return Source(model.eval(), example, f"checkpoint {path!r} as {model_name}; example input: "
                                         f"N(0, 1) noise of shape {input_size}")


def _hwq_zoo(name: str):
    """The default resolver: an entry of hwq.zoo, with N(0, 1) noise of its input shape (one
    image) as the example input."""
    from .. import zoo
    meta = zoo.info(name)
    example = torch.randn((1,) + tuple(meta["input_shape"]),
                          generator=torch.Generator().manual_seed(0))
    return zoo.load(name), example


def from_zoo(name: str) -> Source:
    resolver = _zoo_resolver or _hwq_zoo
    try:
        got = resolver(name)
    except ValueError as e:
        raise ValueError(f"SOURCE {name!r} is neither a checkpoint file nor a run folder (with "
                         f"recipe.json), nor a zoo entry: {e}") from None
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], nn.Module)
            and isinstance(got[1], torch.Tensor)):
        raise ValueError(f"the zoo resolver returned {type(got).__name__} for {name!r}: expected "
                         "(model, example_input)")
    return Source(got[0].eval(), got[1], f"zoo entry {name!r}; example input: N(0, 1) noise of "
                                         f"shape {tuple(got[1].shape)}")


def resolve(text: str, *, scheme: str | None = None, model_name: str | None = None,
            weights: Any = None, acts: Any = None, plan: str | None = None,
            num_classes: int = 10, input_size: tuple[int, ...] | None = None,
            batch: int = 1, act: str = "relu", shortcut: str | None = None) -> Source:
    """The model and example input that SOURCE ``text`` names (see the module docstring)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch {batch!r} is not accepted: expected a number of images >= 1")
    if os.path.isdir(text):
        if not os.path.exists(os.path.join(text, "recipe.json")):
            raise ValueError(f"folder {text!r} has no recipe.json: expected a folder written by "
                             "hwq train")
        return from_run(text, scheme, batch, input_size)
    if os.path.isfile(text):
        return from_checkpoint(text, model_name, weights, acts, plan, num_classes, input_size,
                               act, shortcut)
    return from_zoo(text)

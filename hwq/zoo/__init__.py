"""The model zoo: trained checkpoints that ship with hwq, loaded by name.

``hwq.zoo.load("cifar10/resnet20-w4a4")`` returns the QAT model (hwq's quantized modules, eval
mode), ready for evaluation, ``hwq.deploy``, ``hwq.profile`` and export. ``hwq.zoo.info(name)``
gives what the entry records: the recipe and scheme that trained it, the bit widths, the test
accuracy measured when it was added, epochs, wall time, machine, the commit, and the data
statistics its inputs are normalised with (``mean`` / ``std`` per channel, in [0, 1] units).
``hwq.zoo.names()`` lists the entries. ``hwq eval NAME --data-dir DIR`` re-measures the accuracy.

An entry is one file ``hwq/zoo/<data set>/<name>.pt`` holding plain data only (read with
``torch.load(weights_only=True)``): {"format": "hwq.zoo", "version": 1, "model": state_dict,
"meta": {...}}. ``add`` writes one from a finished ``hwq train`` run (scripts/zoo_add.py).
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .._io import atomic_torch_save

FORMAT = "hwq.zoo"
VERSION = 1
ZOO_DIR = os.path.dirname(os.path.abspath(__file__))


def names(zoo_dir: str = ZOO_DIR) -> list[str]:
    """The names of the entries, e.g. ["cifar10/resnet20-float", ...], sorted."""
    out = []
    for sub in sorted(os.listdir(zoo_dir)):
        folder = os.path.join(zoo_dir, sub)
        if os.path.isdir(folder) and not sub.startswith(("_", ".")):
            out += [f"{sub}/{f[:-3]}" for f in sorted(os.listdir(folder)) if f.endswith(".pt")]
    return out


def path_of(name: str, zoo_dir: str = ZOO_DIR) -> str:
    """The file of entry ``name``; a path to an entry file is returned as it is."""
    if name.endswith(".pt") and os.path.isfile(name):
        return name
    known = names(zoo_dir)
    if name not in known:
        raise ValueError(f"zoo entry {name!r} does not exist: expected one of {known} (or the "
                         "path of an entry file)")
    return os.path.join(zoo_dir, name + ".pt")


def read(name: str, zoo_dir: str = ZOO_DIR) -> dict[str, Any]:
    """The whole entry (model state_dict and meta), checked."""
    path = path_of(name, zoo_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt or not a torch file
        raise ValueError(f"zoo entry {path!r} cannot be read ({type(e).__name__}: "
                         f"{str(e)[:120]})") from None
    if not (isinstance(state, dict) and state.get("format") == FORMAT
            and isinstance(state.get("meta"), dict) and isinstance(state.get("model"), dict)):
        raise ValueError(f"zoo entry {path!r} is not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise ValueError(f"zoo entry {path!r} has version {state.get('version')!r}; this hwq "
                         f"reads version {VERSION}")
    return state


def info(name: str, zoo_dir: str = ZOO_DIR) -> dict[str, Any]:
    """What entry ``name`` records (see the module docstring)."""
    return read(name, zoo_dir)["meta"]


def build(meta: dict[str, Any]) -> nn.Module:
    """The untrained QAT model an entry's meta describes (its recipe's scheme)."""
    from ..train import data as data_mod
    from ..train.run import build_model
    shape = tuple(meta["input_shape"])
    return build_model(meta["recipe"], meta["scheme"],
                       data_mod.Data(None, None, shape, int(meta["num_classes"])))


def load(name: str, zoo_dir: str = ZOO_DIR) -> nn.Module:
    """The trained QAT model of entry ``name`` (a name of ``names()`` or an entry file), in eval
    mode on the CPU. Its inputs are normalised with ``info(name)["mean"]`` / ``["std"]``."""
    state = read(name, zoo_dir)
    model = build(state["meta"])
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"zoo entry {name!r} does not fit the model its recipe builds (missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}): it was written by another "
                         "version of hwq")
    return model.eval()


def test_set(meta: dict[str, Any], data_dir: str):
    """The test split under ``data_dir`` normalised with the entry's own statistics."""
    from ..train import data as data_mod
    from ..train import images
    d = meta["recipe"]["data"]
    if images.is_image_folder(data_dir):  # the test split alone: the entry carries its statistics
        cache = images.default_cache_dir() if d["cache_dir"] == "" else d["cache_dir"]
        split = os.path.join(data_dir, images.find_test_split(data_dir))
        x, y, classes = images.load_split(split, cache, list(meta["classes"]))
    else:  # torchvision's files
        t = data_mod.datasets(d["name"], data_dir, cache_dir=d["cache_dir"]).test
        x, y, classes = t.images, t.labels, t.classes
    if tuple(x.shape[1:]) != tuple(meta["input_shape"]):
        raise ValueError(f"data.dir = {data_dir!r} holds images of shape {tuple(x.shape[1:])}"
                         f" (C, H, W), but zoo entry {meta['name']!r} takes "
                         f"{tuple(meta['input_shape'])}")
    return images.ImageTensors(x, y, meta["mean"], meta["std"], classes)


def evaluate(name: str, data_dir: str, deploy: bool = False, batch_size: int = 500,
             zoo_dir: str = ZOO_DIR) -> dict[str, float]:
    """Test loss and top-1 accuracy (%) of entry ``name`` on the test split under ``data_dir``;
    ``deploy=True`` evaluates ``hwq.deploy(model)`` (the packed kernels) instead."""
    from ..train.engine import evaluate as run_eval
    meta = info(name, zoo_dir)
    model = load(name, zoo_dir)
    if deploy:
        from ..deploy import deploy as make_deploy
        model = make_deploy(model)
    return run_eval(model, test_set(meta, data_dir), batch_size, torch.device("cpu"))


def add(run_dir: str, scheme: str, name: str, data_dir: str, zoo_dir: str = ZOO_DIR,
        **extra: Any) -> dict[str, Any]:
    """Write zoo entry ``name`` ("<data set>/<model>-<scheme>") from scheme ``scheme`` of the
    finished ``hwq train`` run in ``run_dir``, re-measuring its test accuracy on ``data_dir``
    (which must give the accuracy the run recorded). ``extra`` goes into the meta (e.g. notes).
    Returns the meta."""
    import json

    from ..train import checkpoint
    from ..train import data as data_mod
    # the recipe the scheme was trained with (hwq train writes it per scheme), else the run's
    recipe_path = os.path.join(run_dir, scheme, "recipe.json")
    if not os.path.isfile(recipe_path):
        recipe_path = os.path.join(run_dir, "recipe.json")
    ckpt_path = os.path.join(run_dir, scheme, "last.pt")
    for p in (recipe_path, ckpt_path):
        if not os.path.isfile(p):
            raise ValueError(f"run_dir = {run_dir!r} has no {os.path.relpath(p, run_dir)}: "
                             "expected the output folder of a finished hwq train run")
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    results_path = os.path.join(run_dir, "results.json")
    results = {}
    if os.path.isfile(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f).get(scheme, {})
    state = checkpoint.load(ckpt_path)
    d = recipe["data"]
    if d.get("subset"):
        raise ValueError(f"run_dir = {run_dir!r} trained on data.subset = {d['subset']}: a zoo "
                         "entry must be trained on the whole training split")
    data = data_mod.datasets(d["name"], data_dir, cache_dir=d["cache_dir"])
    history = state["metrics"]
    meta = {"name": name, "recipe": recipe, "scheme": scheme, "model": recipe["model"]["name"],
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "classes": data.train.classes, "mean": data.train.mean.tolist(),
            "std": data.train.std.tolist(), "epochs": int(state["epoch"]),
            "train_s": round(sum(h.get("train_s", 0.0) for h in history), 1),
            "recorded_test_acc": history[-1]["test_acc"], **extra}
    from ..train.run import bit_widths, provenance
    model = build(meta)
    meta["w_bits"], meta["a_bits"] = bit_widths(model, "w_bits"), bit_widths(model, "a_bits")
    here = provenance()  # the machine adding the entry: used only where the run recorded none
    for key in ("machine", "commit", "torch"):
        if key not in meta:
            meta[key] = results.get(key, here[key])
    entry = {"format": FORMAT, "version": VERSION, "model": state["model"], "meta": meta}
    folder = os.path.join(zoo_dir, name.split("/")[0])
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, ".check-" + name.split("/")[-1] + ".pt")
    try:  # re-measure from the file as it will be read back
        atomic_torch_save(tmp, entry)
        acc = evaluate(tmp, data_dir, zoo_dir=zoo_dir)["acc"]
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if abs(acc - meta["recorded_test_acc"]) > 0.05:
        raise ValueError(f"zoo entry {name!r}: re-measured test accuracy {acc:.2f}% differs from "
                         f"the run's {meta['recorded_test_acc']:.2f}%: is data_dir the data the "
                         "run was trained on?")
    meta["test_acc"] = round(acc, 2)
    atomic_torch_save(os.path.join(folder, name.split("/")[-1] + ".pt"), entry)
    return meta

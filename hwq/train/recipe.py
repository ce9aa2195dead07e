"""Recipes: TOML files (read with the standard library's tomllib) that say what to train and how.

A recipe has six sections and a table of quantization schemes::

    name = "digits"
    [data]      name, dir, download, batch_size, test_batch_size, workers, augment,
                crop_padding, flip, cache_dir ("" = $HWQ_CACHE or ~/.cache/hwq),
                subset (train on a random subset of this many images; 0 = all)
    [model]     name, act, channels (digits_cnn), shortcut (resnet20: "pair" or "every")
    [train]     epochs, seed, deterministic, device, progress, label_smoothing, sync_bn,
                threads (CPU threads of torch; 0 = torch's default)
    [optim]     name (sgd, adam, adamw), lr, momentum, weight_decay, nesterov
    [schedule]  name (cosine, step, constant), warmup_epochs, step_size, gamma, min_lr
    [report]    arch, baseline, config (the arch's options, as for hwq.map), stats_batches
    [schemes.<name>]  weights, acts, layers, skip, plan, init, act, epochs, clip_weights,
                      optim = {...}, schedule = {...}

Each scheme trains one model. ``weights`` / ``acts`` / ``layers`` / ``skip`` / ``plan`` go to
hwq.quantize (TOML has no null: "float" means no quantizer); ``init = "float"`` starts from the
trained weights of the scheme named "float" (any scheme name works); ``act`` replaces the model's
activation; ``epochs``, ``optim`` and ``schedule`` override the top-level ones for this scheme;
``clip_weights = c`` clips the latent float weights of binary-weight layers to [-c, c] after each
step (BNN practice, Courbariaux et al. 2016).

``extends = "base.toml"`` at the top takes every table of another recipe (relative to this file's
folder) and lays this file's keys on top, table by table.

Every key is checked: an unknown one is refused with the list of valid ones. Overrides from the
command line (``--set optim.lr=0.01``) are applied before the check; their values are read as
TOML values (0.01, true, [16, 32]) and, when that fails, as plain strings (lsq:4).

Two forms, one schema. ``load`` / ``validate`` give the recipe as a dict of tables: the file form,
written to ``recipe.json`` and kept in zoo entries. Code reads it through frozen dataclasses, one
per section (``DataConfig`` ... ``ReportConfig``, as hwq.hw's ``ArchConfig``): ``section(recipe,
"train").seed``, and ``scheme(recipe, name)`` for a scheme's effective settings (``Scheme``). The
dataclasses' fields are the schema: ``SECTIONS`` (key -> accepted TOML types, default) is derived
from them.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import math
import os
from typing import Any, ClassVar

from .._io import read_toml, tomllib
from ..models.build import ACTS
from ..models.resnet_cifar import SHORTCUTS

# The TOML types a field's annotation accepts (an int where a float is meant; an array where a
# tuple is meant). None is "not set": TOML has no null, so a file cannot write it. A field with an
# annotation not listed here fails at import (Section.keys), not in a user's run.
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str,), "bool": (bool,), "int": (int,), "float": (float, int),
    "tuple[int, ...] | None": (list,), "dict | None": (dict,)}


class Section:
    """Base of the recipe's section dataclasses: ``section`` names the table; the fields are its
    keys, with their defaults. ``from_table`` checks a table of the file form and builds the
    dataclass; constructing one directly runs the same value checks."""

    section: ClassVar[str]

    @classmethod
    def keys(cls) -> dict[str, tuple[tuple[type, ...], Any]]:
        """key -> (accepted TOML types, default); a default of None means "not set"."""
        return {f.name: (_TOML_TYPES[f.type], f.default) for f in dataclasses.fields(cls)}

    @classmethod
    def from_table(cls, table: Any, where: str | None = None) -> "Section":
        """``table`` (a dict of the file form) checked as this section, defaults filled in.
        ``where``: the table's place in the recipe for messages (default: the section name,
        e.g. "schemes.w4.optim" for a scheme's own optimizer). Raises ValueError naming the key,
        the value and what is accepted."""
        where = where or cls.section
        check_table(where, table, cls.keys())
        check_section_values(where, cls.section, table)
        return cls(**table)

    def __post_init__(self):
        set_values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # the file form's arrays: a frozen config holds tuples
                object.__setattr__(self, f.name, v := tuple(v))
            if v is not None or f.default is not None:  # None passes only as "not set"
                set_values[f.name] = list(v) if isinstance(v, tuple) else v
        check_table(self.section, set_values, self.keys())
        check_section_values(self.section, self.section, set_values)

    def to_table(self) -> dict[str, Any]:
        """The file form: a dict of this section's keys (tuples as lists, as JSON and TOML have)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple)
                else copy.deepcopy(v) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """[data]: the data set (hwq.train.data.datasets) and its batches. ``subset``: train on a random
    subset of this many images (0 = all); ``cache_dir`` "" = $HWQ_CACHE or ~/.cache/hwq."""
    section: ClassVar[str] = "data"
    name: str = "digits"
    dir: str = "data"
    download: bool = False
    batch_size: int = 64
    test_batch_size: int = 256
    workers: int = 0
    augment: bool = False
    crop_padding: int = 4
    flip: bool = True
    cache_dir: str = ""
    subset: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """[model]: hwq.models.build's name and activation; ``channels`` for digits_cnn only;
    ``shortcut`` for resnet20 only: "pair" (He et al.'s block, the default when not set) or "every"
    (Bi-Real Net's shortcut around every conv, hwq.models.resnet_cifar)."""
    section: ClassVar[str] = "model"
    name: str = "digits_cnn"
    act: str = "relu"
    channels: tuple[int, ...] | None = None
    shortcut: str | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    """[train]: the loop's settings (hwq.train.engine.fit). ``threads``: CPU threads of torch
    (0 = torch's default)."""
    section: ClassVar[str] = "train"
    epochs: int = 10
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    progress: bool = True
    label_smoothing: float = 0.0
    sync_bn: bool = False
    threads: int = 0


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
    """[optim]: the optimizer (hwq.train.engine.make_optimizer); lr in units of the loss."""
    section: ClassVar[str] = "optim"
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(Section):
    """[schedule]: the learning-rate schedule (hwq.train.engine.lr_factor), per step."""
    section: ClassVar[str] = "schedule"
    name: str = "cosine"
    warmup_epochs: int = 0
    step_size: int = 30
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclasses.dataclass(frozen=True)
class ReportConfig(Section):
    """[report]: the accelerator model of each scheme's report (hwq.map) and the test batches of
    its run-time statistics. ``config``: the arch's options, as for hwq.map."""
    section: ClassVar[str] = "report"
    arch: str = "loom"
    baseline: str = "dadiannao"
    config: dict | None = None
    stats_batches: int = 2


SECTION_TYPES: dict[str, type[Section]] = {c.section: c for c in (
    DataConfig, ModelConfig, TrainConfig, OptimConfig, ScheduleConfig, ReportConfig)}
# key -> (accepted types, default) per section, derived from the dataclasses above.
SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    name: cls.keys() for name, cls in SECTION_TYPES.items()}
SCHEME_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "weights": ((str, dict), "float"), "acts": ((str, dict), "float"), "layers": ((dict,), None),
    "skip": ((list,), None), "plan": ((str,), None), "init": ((str,), None),
    "act": ((str,), None), "epochs": ((int,), None), "clip_weights": ((float, int), None),
    "optim": ((dict,), None), "schedule": ((dict,), None),
}
TOP_KEYS = ("name", *SECTIONS, "schemes")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
CHOICES = {("optim", "name"): OPTIMIZERS,
           ("schedule", "name"): SCHEDULES,
           ("model", "act"): tuple(ACTS),  # the activations hwq.models.build knows
           ("model", "shortcut"): SHORTCUTS}  # resnet20's block structures
POSITIVE = {("data", "batch_size"), ("data", "test_batch_size"), ("train", "epochs"),
            ("optim", "lr")}


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true/false", int: "an integer", float: "a number",
             list: "an array", dict: "a table"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_value(where: str, value: Any, types: tuple[type, ...]) -> None:
    # bool is a subclass of int in Python, but epochs = true is a mistake.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ValueError(f"recipe key {where} = {value!r} is not accepted: expected "
                         f"{_type_names(types)}")


def check_table(where: str, table: Any, schema: dict) -> None:
    """Check a table of the file form against ``schema`` (key -> (types, default)): a dict, no
    unknown key, every value of an accepted type. ``where`` names the table in messages."""
    if not isinstance(table, dict):
        raise ValueError(f"recipe key {where} = {table!r} is not accepted: expected a table")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ValueError(f"recipe: unknown key(s) {[f'{where}.{k}' for k in unknown]}; valid keys "
                         f"in [{where}]: {list(schema)}")
    for key, value in table.items():
        _check_value(f"{where}.{key}", value, schema[key][0])


def check_section_values(where: str, section: str, table: dict) -> None:
    """Check the values of a table of section ``section``: choices, finite, positive, ranges."""
    for key, value in table.items():
        choices = CHOICES.get((section, key))
        if choices is not None and value not in choices:
            raise ValueError(f"recipe key {where}.{key} = {value!r} is not accepted: expected "
                             f"one of {list(choices)}")
        if isinstance(value, float) and not math.isfinite(value):  # lr = inf passes "> 0"
            raise ValueError(f"recipe key {where}.{key} = {value!r} is not accepted: expected a "
                             "finite number")
        if (section, key) in POSITIVE and not value > 0:
            raise ValueError(f"recipe key {where}.{key} = {value!r} is not accepted: expected a "
                             "value > 0")
        if (section, key) == ("train", "label_smoothing") and not value < 1:
            raise ValueError(f"recipe key {where}.{key} = {value!r} is not accepted: expected a "
                             "value in [0, 1)")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"recipe key {where}.{key} = {value!r} is not accepted: expected a "
                             "value >= 0")


def validate(recipe: dict) -> dict:
    """Check every key and value of a recipe dict and return it with the defaults filled in.

    Raises ValueError naming the key, the value and what is accepted."""
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe: expected a table at the top level, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"recipe: unknown top-level key(s) {unknown}; valid: {list(TOP_KEYS)}")
    out: dict[str, Any] = {"name": recipe.get("name", "recipe")}
    _check_value("name", out["name"], (str,))
    for section, cls in SECTION_TYPES.items():  # checked and filled in by the dataclasses
        out[section] = cls.from_table(recipe.get(section, {})).to_table()
    schemes = recipe.get("schemes")
    if not isinstance(schemes, dict) or not schemes:
        raise ValueError(f"recipe key schemes = {schemes!r} is not accepted: expected a table "
                         "with at least one [schemes.<name>] table, e.g. [schemes.float]")
    out["schemes"] = {}
    for name, scheme in schemes.items():
        where = f"schemes.{name}"
        check_table(where, scheme, SCHEME_KEYS)
        for sub in ("optim", "schedule"):
            if sub in scheme:
                check_table(f"{where}.{sub}", scheme[sub], SECTIONS[sub])
                check_section_values(f"{where}.{sub}", sub, scheme[sub])
        if "act" in scheme:
            check_section_values(where, "model", {"act": scheme["act"]})
        for key in ("epochs", "clip_weights"):
            if key in scheme and not 0 < scheme[key] < math.inf:
                raise ValueError(f"recipe key {where}.{key} = {scheme[key]!r} is not accepted: "
                                 "expected a finite value > 0")
        init = scheme.get("init") or None  # "" (e.g. --set schemes.x.init='') means none
        if init is not None and init not in schemes:
            raise ValueError(f"recipe key {where}.init = {init!r} is not accepted: expected the "
                             f"name of a scheme of this recipe: {list(schemes)}")
        if init == name:
            raise ValueError(f"recipe key {where}.init = {init!r}: a scheme cannot start from itself")
        out["schemes"][name] = {k: copy.deepcopy(scheme.get(k, d))
                                for k, (_, d) in SCHEME_KEYS.items()}
        out["schemes"][name]["init"] = init
    return out


def parse_value(text: str) -> Any:
    """A --set value: a TOML value when it parses as one (0.01, 3, true, [16, 32], "x"), otherwise
    the text itself (lsq:4, cosine)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_key(recipe: dict, key: str, value: Any, what: str = "") -> None:
    """Set ``recipe[a][b][c] = value`` for key "a.b.c" in place, creating tables on the way."""
    what = what or key
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set {what!r} is not accepted: expected key.sub=value, "
                         "e.g. optim.lr=0.01 or schemes.w4a4.epochs=5")
    table = recipe
    for i, p in enumerate(parts[:-1]):
        child = table.setdefault(p, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {what!r}: {'.'.join(parts[:i + 1])} is a value, not a table")
        table = child
    table[parts[-1]] = value


def apply_override(recipe: dict, item: str | tuple[str, Any]) -> None:
    """Apply one override in place (before validation, which checks it): a string
    ``"key.sub=value"`` (the value read by parse_value) or a pair (key, value) taken as is."""
    if isinstance(item, tuple):
        set_key(recipe, item[0], item[1])
        return
    key, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"--set {item!r} is not accepted: expected key.sub=value, "
                         "e.g. optim.lr=0.01 or schemes.w4a4.epochs=5")
    set_key(recipe, key, parse_value(text.strip()), item)


def load(path: str | os.PathLike, overrides: list = ()) -> dict:
    """Read a recipe TOML file, apply ``overrides`` ("key.sub=value" strings or (key, value)
    pairs, see apply_override) and validate it.

    A relative ``plan`` path in a scheme is taken relative to the recipe file's folder."""
    path = os.fspath(path)
    try:
        recipe = read_toml(path, "recipe")
    except FileNotFoundError:
        raise ValueError(f"recipe {path!r} does not exist") from None
    recipe = _extended(recipe, path, ())
    for item in overrides:
        apply_override(recipe, item)
    try:
        out = validate(recipe)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    folder = os.path.dirname(os.path.abspath(path))
    for scheme in out["schemes"].values():
        if scheme["plan"] is not None and not os.path.isabs(scheme["plan"]):
            scheme["plan"] = os.path.join(folder, scheme["plan"])
    return out


def _merged(base: dict, over: dict) -> dict:
    """``base`` with ``over`` laid on top, table by table (a key of ``over`` wins)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _extended(recipe: dict, path: str, chain: tuple[str, ...]) -> dict:
    """Resolve ``extends = "other.toml"`` (a path relative to this recipe's folder): the other
    recipe's tables with this one's keys laid on top, so that a recipe can change a schedule
    without repeating every scheme. Chains are followed; a cycle is refused."""
    base = recipe.pop("extends", None)
    if base is None:
        return recipe
    if not isinstance(base, str) or not base:
        raise ValueError(f"recipe {path!r}: extends = {base!r} is not accepted: expected the file "
                         "name of another recipe, relative to this one's folder")
    here = os.path.abspath(path)
    base_path = os.path.join(os.path.dirname(here), base)
    if os.path.abspath(base_path) in chain + (here,):
        raise ValueError(f"recipe {path!r}: extends = {base!r} makes a cycle "
                         f"({' -> '.join(chain + (here, os.path.abspath(base_path)))})")
    try:
        parent = read_toml(base_path, "recipe")
    except FileNotFoundError:
        raise ValueError(f"recipe {path!r}: extends = {base!r}, but {base_path!r} does not "
                         "exist") from None
    return _merged(_extended(parent, base_path, chain + (here,)), recipe)


def section(recipe: dict, name: str) -> Section:
    """Section ``name`` ("data", "model", "train", "optim", "schedule", "report") of a validated
    recipe as its frozen dataclass (``section(recipe, "train").seed``). Keys a recipe.json of an
    earlier run lacks take their defaults; an unknown key or a bad value raises ValueError."""
    if name not in SECTION_TYPES:
        raise ValueError(f"recipe section {name!r} is not accepted: expected one of "
                         f"{list(SECTION_TYPES)}")
    cls = SECTION_TYPES[name]
    table = recipe.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"recipe key {name} = {table!r} is not accepted: expected a table")
    check_table(name, {k: v for k, v in table.items() if v is not None}, cls.keys())
    return cls(**table)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """One scheme as ``hwq train`` runs it: its own keys, with the recipe's [train] epochs,
    [optim], [schedule] and [model] act where the scheme sets none (its own optim / schedule
    tables laid over the recipe's, key by key).

    weights, acts, layers, skip, plan: the arguments of hwq.quantize ("float" = no quantizer);
    init: the scheme whose trained weights it starts from (None: fresh weights);
    clip_weights: clip binary layers' latent weights to [-c, c] after each step (None: no clip)."""
    name: str
    weights: str | dict
    acts: str | dict
    layers: dict | None
    skip: tuple[str, ...]
    plan: str | None
    init: str | None
    clip_weights: float | None
    epochs: int
    optim: OptimConfig
    schedule: ScheduleConfig
    act: str

    @property
    def is_float(self) -> bool:
        """No quantizer at all: the float reference scheme."""
        return (self.weights == "float" and self.acts == "float" and not self.layers
                and self.plan is None)


def scheme(recipe: dict, name: str) -> Scheme:
    """Scheme ``name`` of a validated recipe with its effective settings (see ``Scheme``)."""
    schemes = recipe.get("schemes") or {}
    if name not in schemes:
        raise ValueError(f"scheme {name!r} is not accepted: expected one of {list(schemes)}")
    s = {k: schemes[name].get(k, d) for k, (_, d) in SCHEME_KEYS.items()}
    where = f"schemes.{name}"
    return Scheme(
        name=name, weights=s["weights"], acts=s["acts"], layers=s["layers"],
        skip=tuple(s["skip"] or ()), plan=s["plan"], init=s["init"] or None,
        clip_weights=s["clip_weights"], epochs=s["epochs"] or section(recipe, "train").epochs,
        optim=OptimConfig.from_table({**section(recipe, "optim").to_table(), **(s["optim"] or {})},
                                     f"{where}.optim"),
        schedule=ScheduleConfig.from_table(
            {**section(recipe, "schedule").to_table(), **(s["schedule"] or {})},
            f"{where}.schedule"),
        act=s["act"] or section(recipe, "model").act)


def scheme_settings(recipe: dict, name: str) -> dict:
    """The effective settings of one scheme as plain dicts (epochs, optim, schedule, act): the
    file form of ``scheme(recipe, name)``, which code should read instead."""
    s = scheme(recipe, name)
    return {"epochs": s.epochs, "optim": s.optim.to_table(), "schedule": s.schedule.to_table(),
            "act": s.act}


def _shipped_dir() -> str:
    """The folder of the shipped recipes: package data of hwq (``hwq/recipes``, a link to the
    repository's recipes/ folder in a source tree, real files in an installed wheel)."""
    return os.fspath(importlib.resources.files("hwq").joinpath("recipes"))


RECIPES_DIR = _shipped_dir()


def find(text: str) -> str:
    """The path of a recipe: ``text`` itself when it is a file, else the shipped recipe of that
    name (hwq's package data, recipes/<text>.toml in the source tree, e.g. "digits")."""
    if os.path.isfile(text):
        return text
    shipped = os.path.join(RECIPES_DIR, f"{text}.toml")
    if os.path.isfile(shipped):
        return shipped
    names = sorted(f[:-5] for f in os.listdir(RECIPES_DIR) if f.endswith(".toml")) \
        if os.path.isdir(RECIPES_DIR) else []
    raise ValueError(f"recipe {text!r} is neither a file nor a shipped recipe; shipped: {names}")

"""hwq.quantize: swap a model's Conv2d / Linear modules for their quantized twins, in place.

No graph tracing: modules are found with ``named_modules()`` and replaced on their parent, so any
model works, Python control flow included. Rules pick the quantizers per layer by module-name glob
(fnmatch: ``*`` matches dots too, so "layer1.*" is the whole stage):

    defaults (weights=, acts=)  <  layers={glob: {...}} in order  <  plan (exact names)

Every rule is checked before anything is swapped: a glob that matches no layer, a plan entry that
names no layer, or a bad spec raises ValueError and leaves the model untouched.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from typing import Any, Iterable

from torch import nn

from . import quant
from .nn import QuantConv2d, QuantLayer, QuantLinear
from .plan import KEYS, Plan

# Exactly these types are swapped; a subclass may change forward (nn.MultiheadAttention's out_proj
# is a Linear subclass it never calls), so it is left float and reported.
SWAPPABLE = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}

# Layers that do multiply-accumulates but that hwq cannot quantize: left float, reported.
COMPUTE_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.MultiheadAttention,
                 nn.RNNBase)


class UnquantizedLayersWarning(UserWarning):
    """Issued by hwq.quantize when compute layers of the model stay float."""


def _is_candidate(m: nn.Module) -> bool:
    return type(m) in SWAPPABLE or isinstance(m, QuantLayer)


def _no_match(kind: str, pattern: str, names: list[str]) -> ValueError:
    close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
    hint = f"; did you mean {close}?" if close else ""
    shown = names if len(names) <= 12 else names[:12] + [f"... ({len(names)} in all)"]
    return ValueError(f"{kind} {pattern!r} matches no quantizable layer{hint} "
                      f"Quantizable layers: {shown}")


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """{first name: every name} of the quantizable layers. A module registered twice
    (``self.b = self.a``, ``nn.Sequential(c, nn.ReLU(), c)``) is one layer: quantized once, under
    every name, and found by rules through any of them."""
    by_id: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if _is_candidate(m):
            by_id.setdefault(id(m), []).append(name)
    return {names[0]: names for names in by_id.values()}


def _hits(pattern: Any, where: str, aliases: dict[str, list[str]]) -> list[str]:
    """First names of the layers one of whose names matches the glob ``pattern``."""
    if not isinstance(pattern, str):
        raise ValueError(f"{where} {pattern!r} (type {type(pattern).__name__}) is not accepted: "
                         "expected a module-name glob string such as 'layer1.*'")
    hits = [first for first, names in aliases.items() if fnmatch.filter(names, pattern)]
    if not hits:
        raise _no_match(where, pattern, [n for names in aliases.values() for n in names])
    return hits


def _parse_rule(where: str, rule: Any) -> dict[str, quant.QuantConfig]:
    if not isinstance(rule, dict):
        raise ValueError(f"{where}: {rule!r} is not accepted: expected a dict with keys among "
                         f"{list(KEYS)}, e.g. dict(weights='fixed:8', acts=None)")
    unknown = sorted(set(rule) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; accepted: {list(KEYS)}")
    out = {}
    for key, spec in rule.items():
        try:
            out[key] = quant.parse(spec, "weight" if key == "weights" else "act")
        except ValueError as e:
            raise ValueError(f"{where}, {key}: {e}") from None
    return out


def resolve(model: nn.Module, weights: Any = None, acts: Any = None,
            layers: dict[str, dict] | None = None, skip: Iterable[str] = (),
            plan: Plan | dict | str | os.PathLike | None = None
            ) -> dict[str, dict[str, quant.QuantConfig]]:
    """The configs hwq.quantize would give each layer: {name: {"weights": cfg, "acts": cfg}}.
    Skipped layers are absent. Raises ValueError on any bad rule; changes nothing."""
    if not isinstance(model, nn.Module):  # TypeError, as hwq.deploy raises for the same mistake
        raise TypeError(f"model={type(model).__name__} is not accepted: expected a torch.nn.Module")
    aliases = _aliases(model)
    first_of = {n: first for first, names in aliases.items() for n in names}
    default = _parse_rule("weights/acts", {"weights": weights, "acts": acts})
    chosen = {n: dict(default) for n in aliases}

    if layers is not None and not isinstance(layers, dict):
        raise ValueError(f"layers={layers!r} is not accepted: expected a dict of "
                         "glob pattern -> dict(weights=..., acts=...)")
    for pattern, rule in (layers or {}).items():
        hits = _hits(pattern, "layers pattern", aliases)
        parsed = _parse_rule(f"layers[{pattern!r}]", rule)
        for n in hits:
            chosen[n].update(parsed)

    if plan is not None:
        if isinstance(plan, (str, os.PathLike)):
            plan = Plan.from_json(plan)
        elif isinstance(plan, dict):
            plan = Plan.from_dict(plan)
        elif not isinstance(plan, Plan):
            raise ValueError(f"plan={plan!r} is not accepted: expected a hwq.Plan, a dict in the "
                             "plan format or the path of a plan JSON file")
        for n, entry in plan.layers.items():
            if n not in first_of:
                raise _no_match("plan layer", n, list(first_of))
            chosen[first_of[n]].update(entry)

    for pattern in _skip_patterns(skip):
        for n in _hits(pattern, "skip pattern", aliases):
            chosen.pop(n, None)
    return chosen


def _skip_patterns(skip: Any) -> list:
    if isinstance(skip, str):
        return [skip]
    try:
        return list(skip)
    except TypeError:
        raise ValueError(f"skip={skip!r} is not accepted: expected a glob string or a list of "
                         "them") from None


def unquantized_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of the compute layers that are not hwq quantized layers, in module order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, COMPUTE_TYPES) and not isinstance(m, QuantLayer):
            out.append((name, type(m).__name__))
    return out


def quantize(model: nn.Module, weights: Any = None, acts: Any = None,
             layers: dict[str, dict] | None = None, skip: Iterable[str] = (),
             plan: Plan | dict | str | os.PathLike | None = None) -> nn.Module:
    """Quantize ``model`` in place and return it.

    weights, acts: default quantizer specs for every Conv2d / Linear ("fixed:4", "binary",
        "lsq:4", dict or config; None = float). ``acts`` quantizes each layer's input.
    layers: {glob: dict(weights=..., acts=...)}; later rules win; a rule may set one key only.
    skip: globs of layers to leave as they are (not swapped).
    plan: a per-layer Plan (or its JSON path), applied after ``layers``.

    Trained float weights are kept (the same Parameter objects). Layers already quantized get the
    new quantizers. Compute layers that cannot be quantized (Conv1d/3d, transposed convs, Linear
    subclasses, attention, RNNs) stay float and are listed in an UnquantizedLayersWarning.
    Raises TypeError when ``model`` is not an nn.Module, ValueError on a bad rule.
    """
    if not isinstance(model, nn.Module):  # TypeError, as hwq.deploy raises for the same mistake
        raise TypeError(f"model={type(model).__name__} is not accepted: expected a torch.nn.Module")
    skip = _skip_patterns(skip)  # read once: a generator would be empty the second time
    chosen = resolve(model, weights, acts, layers, skip, plan)
    if "" in chosen and not isinstance(model, QuantLayer):
        raise ValueError(f"model is itself a {type(model).__name__}: wrap it in a container, or use "
                         "hwq.nn.QuantConv2d / QuantLinear.from_float directly")
    modules = dict(model.named_modules())
    skipped = set()
    for pattern in skip:
        for name, m in model.named_modules(remove_duplicate=False):
            if fnmatch.fnmatchcase(name, pattern):
                skipped.add(id(m))
    for name, cfg in chosen.items():
        m = modules[name]
        if isinstance(m, QuantLayer):
            m.set_quantizers(cfg["weights"], cfg["acts"])
            continue
        new = SWAPPABLE[type(m)].from_float(m, cfg["weights"], cfg["acts"])
        for parent in list(model.modules()):  # every name the module is registered under
            for child, sub in list(parent._modules.items()):
                if sub is m:
                    setattr(parent, child, new)

    left = [(n, t) for n, t in unquantized_layers(model)
            if id(model.get_submodule(n)) not in skipped]
    if left:
        shown = ", ".join(f"{n} ({t})" for n, t in left[:20])
        more = f" and {len(left) - 20} more" if len(left) > 20 else ""
        warnings.warn(f"hwq.quantize left {len(left)} compute layer(s) float, not quantizable: "
                      f"{shown}{more}", UnquantizedLayersWarning, stacklevel=2)
    return model

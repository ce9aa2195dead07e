"""Per-layer precision plans: every layer its own weight and activation quantizer (the Proteus /
Tartan idea of per-layer precisions), stored as JSON and applied with ``hwq.quantize(model, plan=...)``.

File format (version 1)::

    {"format": "hwq.plan", "version": 1,
     "layers": {"conv1": {"weights": "fixed:8", "acts": null},
                "layer1.0.conv1": {"weights": {"name": "lsq", "bits": 4, "per_channel": true}},
                ...}}

A layer entry may give "weights", "acts" or both; a missing key keeps what the other rules of
hwq.quantize give that layer. Values are quantizer specs (see hwq.quant.parse); null means float.
"""
from __future__ import annotations

import json
import os
from typing import Any

from torch import nn

from . import quant
from ._io import atomic_write_text, read_json

FORMAT = "hwq.plan"
VERSION = 1
KEYS = ("weights", "acts")


class Plan:
    """Mapping layer name -> {"weights": QuantConfig, "acts": QuantConfig} (either key optional)."""

    def __init__(self, layers: dict[str, dict[str, Any]] | None = None):
        self.layers: dict[str, dict[str, quant.QuantConfig]] = {}
        for name, entry in (layers or {}).items():
            if not isinstance(entry, dict):
                raise ValueError(f"plan layer {name!r}: entry {entry!r} is not accepted: expected "
                                 f"an object with keys among {list(KEYS)}")
            self.set(name, **entry)

    def set(self, name: str, **entry: Any) -> None:
        """Set (or update) one layer: ``plan.set("fc", weights="fixed:8", acts="fixed:8")``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"plan layer name {name!r} is not accepted: expected a module name")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise ValueError(f"plan layer {name!r}: unknown key(s) {unknown}; accepted: {list(KEYS)}")
        parsed = {}
        for key, spec in entry.items():
            role = "weight" if key == "weights" else "act"
            try:
                parsed[key] = quant.parse(spec, role)
            except ValueError as e:
                raise ValueError(f"plan layer {name!r}, field {key!r}: {e}") from None
        self.layers.setdefault(name, {}).update(parsed)

    def __len__(self):
        return len(self.layers)

    def __eq__(self, other):
        return isinstance(other, Plan) and self.layers == other.layers

    def __repr__(self):
        return f"Plan({self.to_dict()['layers']!r})"

    @classmethod
    def from_model(cls, model: nn.Module) -> "Plan":
        """The plan a quantized model follows now: one entry per QuantConv2d / QuantLinear."""
        from .nn import QuantLayer
        plan = cls()
        for name, m in model.named_modules():
            if isinstance(m, QuantLayer):
                plan.layers[name] = {"weights": m.weight_quant.config, "acts": m.act_quant.config}
        return plan

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "layers": {n: {k: c.spec() for k, c in e.items()} for n, e in self.layers.items()}}

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        if not isinstance(data, dict):
            raise ValueError(f"plan: expected a JSON object at the top level, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"plan field 'format': {data.get('format')!r} is not accepted: "
                             f"expected {FORMAT!r}")
        version = data.get("version")
        if type(version) is not int or version != VERSION:  # true and 1.0 == 1 in Python
            raise ValueError(f"plan field 'version': {data.get('version')!r} is not accepted: "
                             f"this hwq reads version {VERSION}")
        unknown = sorted(set(data) - {"format", "version", "layers"})
        if unknown:
            raise ValueError(f"plan: unknown field(s) {unknown}; accepted: format, version, layers")
        layers = data.get("layers")
        if not isinstance(layers, dict):
            raise ValueError(f"plan field 'layers': expected an object of layer name -> entry, "
                             f"got {type(layers).__name__}")
        return cls(layers)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The plan as JSON text; written to ``path`` when given (atomically: the file is complete
        or untouched), as every hwq to_json does."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Plan":
        data = read_json(path, "plan file")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"plan file {os.fspath(path)!r}: {e}") from None

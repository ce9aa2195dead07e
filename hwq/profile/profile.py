"""Profile: the layers of a network in execution order, with JSON / CSV / DNNsim files.

JSON layout (``VERSION`` 1)::

    {"format": "hwq.profile", "version": 1, "name": "resnet50", "input_shape": [3, 224, 224],
     "meta": {...}, "layers": [{"name": "conv1", "kind": "conv", ...}, ...]}

The header is ``"format"``, as in every hwq file (plans, checkpoints, zoo entries); profiles written
by earlier versions of hwq named it ``"schema"`` and are still read. A file that does not follow the
layout is refused with a ProfileError naming the field and the layer.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Iterator

from .._io import atomic_write_text, read_json
from .._table import text_table
from .layer import LayerProfile, ProfileError

FORMAT = "hwq.profile"
VERSION = 1
SCHEMA, SCHEMA_VERSION = FORMAT, VERSION  # the names of earlier versions, kept for importers
LEGACY_HEADER = "schema"  # the header key earlier versions wrote instead of "format"

CSV_COLUMNS = ("name", "kind", "in_shape", "out_shape", "kernel", "stride", "padding", "dilation",
               "groups", "macs", "weights", "w_bits", "a_bits", "w_quant", "a_quant", "w_float",
               "a_float",
               "a_zero_frac", "a_essential_mean", "a_group_prec_mean", "a_pallet_prec_mean",
               "w_zero_frac", "w_essential_mean", "w_group_prec_mean")


@dataclasses.dataclass
class Profile:
    """Layers (LayerProfile) in execution order. ``input_shape``: one sample's input, no batch dim.
    ``meta``: free-form provenance (source model, batches seen, skipped layers)."""

    layers: list[LayerProfile]
    name: str = "model"
    input_shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    # -- container -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerProfile]:
        return iter(self.layers)

    def __getitem__(self, key: int | str) -> LayerProfile:
        """A layer by position or by name."""
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer named {key!r}; layers: {[l.name for l in self.layers]}")
        return self.layers[key]

    @property
    def macs(self) -> int:
        """MACs per sample, all layers."""
        return sum(l.macs for l in self.layers)

    @property
    def weights(self) -> int:
        return sum(l.weights for l in self.layers)

    @property
    def has_stats(self) -> bool:
        """True when every layer carries run-time statistics."""
        return bool(self.layers) and all(l.stats is not None for l in self.layers)

    def set_bits(self, a_bits: dict[str, int] | list[int] | None = None,
                 w_bits: dict[str, int] | list[int] | None = None) -> "Profile":
        """Type in a precision table: by layer name (dict) or in layer order (list, one per layer).
        Returns self."""
        for attr, table in (("a_bits", a_bits), ("w_bits", w_bits)):
            if table is None:
                continue
            if isinstance(table, dict):
                for k, v in table.items():
                    setattr(self[k], attr, v)
            else:
                if len(table) != len(self.layers):
                    raise ValueError(f"{attr}: a list of {len(table)} values is not accepted for "
                                     f"{len(self.layers)} layers: give one per layer, or a dict "
                                     "by layer name")
                for layer, v in zip(self.layers, table):
                    setattr(layer, attr, v)
        self.validate()
        return self

    def validate(self) -> None:
        """Raise ProfileError when a layer breaks the schema (hwq.map calls this)."""
        if not isinstance(self.layers, list) or not self.layers:
            raise ProfileError(f"field 'layers' = {self.layers!r} is not accepted: expected a "
                               "non-empty list of layers")
        seen = set()
        for layer in self.layers:
            if not isinstance(layer, LayerProfile):
                raise ProfileError(f"field 'layers' holds {type(layer).__name__}: expected "
                                   "LayerProfile entries")
            layer.validate()
            if layer.name in seen:
                raise ProfileError(f"layer {layer.name!r}: field 'name' is not unique")
            seen.add(layer.name)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.name,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "meta": self.meta, "layers": [l.to_dict() for l in self.layers]}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The profile as JSON text; written to ``path`` (atomically) when given."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: Any) -> "Profile":
        if not isinstance(d, dict):
            raise ProfileError(f"a profile must be a JSON object, got {type(d).__name__}")
        # An older file names its header "schema"; a file with both has "schema" as an unknown field.
        header = LEGACY_HEADER if LEGACY_HEADER in d and "format" not in d else "format"
        if d.get(header) != FORMAT:
            raise ProfileError(f"field {header!r} = {d.get(header)!r} is not accepted: expected "
                               f"{FORMAT!r} (is this an hwq profile?)")
        if type(d.get("version")) is not int or d["version"] != VERSION:  # not true, 1.0
            raise ProfileError(f"field 'version' = {d.get('version')!r} is not accepted: this hwq "
                               f"reads profile version {VERSION}")
        unknown = sorted(set(d) - {header, "version", "name", "input_shape", "meta", "layers"})
        if unknown:
            raise ProfileError(f"unknown top-level field(s) {unknown}")
        layers = d.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ProfileError(f"field 'layers' = {layers!r} is not accepted: expected a non-empty "
                               "list")
        name = d.get("name", "model")
        if not isinstance(name, str):
            raise ProfileError(f"field 'name' = {name!r} is not accepted: expected a string")
        shape = d.get("input_shape")
        if shape is not None and (not isinstance(shape, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in shape)):
            raise ProfileError(f"field 'input_shape' = {shape!r} is not accepted: expected a list "
                               "of positive integers or null")
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise ProfileError(f"field 'meta' = {meta!r} is not accepted: expected an object")
        out = cls([LayerProfile.from_dict(l, where=f"#{i}") for i, l in enumerate(layers)],
                  name=name, input_shape=tuple(shape) if shape else None, meta=meta)
        out.validate()
        return out

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Profile":
        """Read a profile written by ``to_json``; ProfileError names the field and layer of a
        malformed file."""
        if os.path.isdir(path):
            raise ProfileError(f"profile {os.fspath(path)!r} is a directory: expected a JSON file")
        try:
            d = read_json(path, "profile")
        except ValueError as e:
            raise ProfileError(str(e)) from None
        try:
            return cls.from_dict(d)
        except ProfileError as e:
            raise ProfileError(f"{os.fspath(path)}: {e}") from None

    # -- CSV ------------------------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """One row per layer: the static fields and the means of the run-time statistics (empty
        without statistics). Shapes are written as 3x224x224."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for l in self.layers:
            row = []
            for c in CSV_COLUMNS:
                if c in ("in_shape", "out_shape", "kernel", "stride", "padding", "dilation"):
                    row.append("x".join(str(v) for v in getattr(l, c)))
                elif hasattr(l, c):
                    row.append(getattr(l, c))
                elif l.stats is None:
                    row.append("")
                else:
                    v = getattr(l.stats, c)
                    row.append("" if math.isnan(v) else f"{v:.4f}")
            w.writerow(row)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    # -- DNNsim ---------------------------------------------------------------------------------
    def to_dnnsim(self, path: str | os.PathLike | None = None) -> str:
        """DNNsim's ``precision.txt`` (isakedo/DNNsim, read by NetReader::read_precision): a header
        line, then four ';'-separated lines with one entry per layer in order: activation magnitude
        bits, activation fraction bits, weight magnitude bits, weight fraction bits. DNNsim takes
        precision = magnitude + fraction (magnitude includes the sign bit).

        The total precision per layer is exact. The split needs the fraction bits, known when the
        layer was profiled from a fixed-point quantizer with one power-of-two scale (``a_frac``,
        ``w_frac``); otherwise all bits are written as magnitude bits (fraction 0), which DNNsim's
        timing models do not distinguish."""
        def split(bits: int, frac: int | None) -> tuple[int, int]:
            f = frac if frac is not None and 0 <= frac <= bits else 0
            return bits - f, f

        a = [split(l.a_bits, l.a_frac) for l in self.layers]
        w = [split(l.w_bits, l.w_frac) for l in self.layers]
        lines = [f"hwq profile {self.name}: act magnitude; act fraction; wgt magnitude; "
                 "wgt fraction (one entry per layer: " + ";".join(l.name for l in self.layers) + ")",
                 ";".join(str(m) for m, _ in a), ";".join(str(f) for _, f in a),
                 ";".join(str(m) for m, _ in w), ";".join(str(f) for _, f in w)]
        text = "\n".join(lines) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    # -- display --------------------------------------------------------------------------------
    def __str__(self) -> str:
        head = ["layer", "kind", "in", "out", "k", "s", "g", "MACs", "w_bits", "a_bits"]
        body = [[l.name, l.kind, "x".join(map(str, l.in_shape)), "x".join(map(str, l.out_shape)),
                 "x".join(map(str, l.kernel)), "x".join(map(str, l.stride)), str(l.groups),
                 f"{l.macs:,}", str(l.w_bits) + ("f" if l.w_float else ""),
                 str(l.a_bits) + ("f" if l.a_float else "")] for l in self.layers]
        total = ["total", "", "", "", "", "", "", f"{self.macs:,}", "", ""]
        return (f"profile {self.name} ({len(self.layers)} layers; 'f': float layer at the 16-bit "
                "baseline)\n" + text_table(head, body, total=total, left=2))

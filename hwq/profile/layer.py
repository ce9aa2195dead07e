"""One compute layer of a Profile: its shapes, MACs and precisions, plain data.

Shape conventions (per sample, no batch dimension):
    conv: in_shape = (C, H, W), out_shape = (K, Ho, Wo)
    fc:   in_shape = (..., F),  out_shape = (..., K)   (leading dims are tokens / windows)
MACs per sample: conv = K*Ho*Wo * (C/groups) * kh*kw; fc = prod(out_shape) * F.

Bit widths: ``w_bits`` / ``a_bits`` are the precisions the hardware models use. A float layer gets
16, the fixed point of the DaDianNao baseline (Chen et al., MICRO 2014), and is marked with
``w_float`` / ``a_float``. The layers are editable (``layer.a_bits = 9``) so that a paper's
per-layer precision table can be typed in; ``validate()`` checks them again (hwq.map calls it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .stats import COUNT_FIELDS, HIST_FIELDS, LayerStats

KINDS = ("conv", "fc")
BASELINE_BITS = 16
"""Fixed-point width given to float layers: DaDianNao's 16-bit datapath (MICRO 2014)."""
MAX_BITS = 32


class ProfileError(ValueError):
    """A profile (file or object) that does not follow the schema; the message names the field and
    the layer."""


def _fail(layer: str, field: str, value: Any, expected: str) -> ProfileError:
    return ProfileError(f"layer {layer!r}: field {field!r} = {value!r} is not accepted: "
                        f"expected {expected}")


def _int(layer: str, field: str, v: Any, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        raise _fail(layer, field, v, rng)
    return v


def _ints(layer: str, field: str, v: Any, length: int | None, lo: int) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length) or not v:
        n = f"{length} " if length is not None else ""
        raise _fail(layer, field, v, f"a list of {n}integers >= {lo}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int) or x < lo:
            raise _fail(layer, field, v, f"a list of integers >= {lo}")
    return tuple(v)


@dataclasses.dataclass
class LayerProfile:
    """A conv or fully-connected layer. Sizes in elements, MACs per sample, bits per value."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    """Spacing of a conv's taps (PyTorch's ``dilation``). It moves which input pixels a window
    reads, not the MACs. Written to a file only when it is not (1, 1), so profiles of undilated
    networks stay readable by earlier versions of hwq."""
    groups: int = 1
    macs: int = 0
    weights: int = 0
    w_bits: int = BASELINE_BITS
    a_bits: int = BASELINE_BITS
    w_quant: str = "fixed:16"
    a_quant: str = "fixed:16"
    w_float: bool = False
    w_pow2: bool = False
    """Every weight is 0 or +/-2^k times a scale (the quantizer's ``power_of_two``): a MAC is a
    shift and an add, as the shift design of hwq.hw assumes."""
    a_float: bool = False
    w_frac: int | None = None
    """Fraction bits of the weight codes (scale = 2^-w_frac) when one power-of-two scale is used."""
    a_frac: int | None = None
    stats: LayerStats | None = None

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.in_shape[0] if self.kind == "conv" else self.in_shape[-1]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0] if self.kind == "conv" else self.out_shape[-1]

    @property
    def windows(self) -> int:
        """Output positions per sample: Ho*Wo for a conv, tokens (1 for a plain FC) for an fc."""
        return math.prod(self.out_shape) // self.out_channels

    @property
    def channels_per_group(self) -> int:
        """Input channels each filter sees (C / groups)."""
        return self.in_channels // self.groups

    @property
    def filters_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def inputs(self) -> int:
        """Input activations per sample."""
        return math.prod(self.in_shape)

    @property
    def outputs(self) -> int:
        return math.prod(self.out_shape)

    def expected_macs(self) -> int:
        kh, kw = self.kernel
        return self.outputs * self.channels_per_group * kh * kw

    def expected_weights(self) -> int:
        kh, kw = self.kernel
        return self.out_channels * self.channels_per_group * kh * kw

    # -- checking ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ProfileError naming the field and this layer when a value is out of the schema."""
        name = self.name
        if not isinstance(name, str) or not name:
            raise ProfileError(f"layer {name!r}: field 'name' must be a non-empty string")
        if self.kind not in KINDS:
            raise _fail(name, "kind", self.kind, f"one of {KINDS}")
        if self.kind == "conv":
            _ints(name, "in_shape", self.in_shape, 3, 1)
            _ints(name, "out_shape", self.out_shape, 3, 1)
        else:
            _ints(name, "in_shape", self.in_shape, None, 1)
            _ints(name, "out_shape", self.out_shape, None, 1)
            if tuple(self.in_shape[:-1]) != tuple(self.out_shape[:-1]):
                raise _fail(name, "out_shape", self.out_shape,
                            f"the leading dims of in_shape {tuple(self.in_shape)} for an fc layer")
        _ints(name, "kernel", self.kernel, 2, 1)
        _ints(name, "stride", self.stride, 2, 1)
        _ints(name, "padding", self.padding, 2, 0)
        _ints(name, "dilation", self.dilation, 2, 1)
        _int(name, "groups", self.groups, 1)
        if self.kind == "fc" and tuple(self.kernel) != (1, 1):
            raise _fail(name, "kernel", self.kernel, "(1, 1) for an fc layer")
        if self.kind == "fc" and tuple(self.dilation) != (1, 1):
            raise _fail(name, "dilation", self.dilation, "(1, 1) for an fc layer")
        if self.kind == "fc" and self.groups != 1:
            raise _fail(name, "groups", self.groups, "1 for an fc layer")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise _fail(name, "groups", self.groups,
                        f"a divisor of in_channels {self.in_channels} and out_channels "
                        f"{self.out_channels}")
        _int(name, "macs", self.macs, 0)
        if self.macs != self.expected_macs():
            raise _fail(name, "macs", self.macs,
                        f"{self.expected_macs()} (out elements x in channels per group x kernel)")
        _int(name, "weights", self.weights, 0)
        if self.weights != self.expected_weights():
            raise _fail(name, "weights", self.weights,
                        f"{self.expected_weights()} (filters x in channels per group x kernel)")
        _int(name, "w_bits", self.w_bits, 1, MAX_BITS)
        _int(name, "a_bits", self.a_bits, 1, MAX_BITS)
        for f in ("w_quant", "a_quant"):
            if not isinstance(getattr(self, f), str):
                raise _fail(name, f, getattr(self, f), "a string such as 'fixed:8'")
        for f in ("w_float", "a_float", "w_pow2"):
            if not isinstance(getattr(self, f), bool):
                raise _fail(name, f, getattr(self, f), "true or false")
        for f in ("w_frac", "a_frac"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise _fail(name, f, v, "an integer or null")
        if self.stats is not None:
            if not isinstance(self.stats, LayerStats):
                raise _fail(name, "stats", self.stats, "a LayerStats or null")
            for f in COUNT_FIELDS:
                _int(name, f"stats.{f}", getattr(self.stats, f), 0)
            for f in HIST_FIELDS:
                v = getattr(self.stats, f)
                if not isinstance(v, list):
                    raise _fail(name, f"stats.{f}", v, "a list of counts indexed by bits")
                if v:
                    _ints(name, f"stats.{f}", v, None, 0)
                    # statistics are taken on the layer's codes or on 16-bit fixed point, so a
                    # group needs at most max(16, bits) bits and a sign bit; more is corrupt
                    bits = self.w_bits if f.startswith("w_") else self.a_bits
                    top = max(16, bits) + 1
                    past = [i for i, c in enumerate(v) if c and i > top]
                    if past:
                        raise _fail(name, f"stats.{f}", v, f"counts only at bits 0..{top} "
                                    f"(max(16, {f[0]}_bits) + 1 for a sign); bit {past[-1]} has "
                                    f"{v[past[-1]]}")
            if self.stats.a_zeros > self.stats.a_values or self.stats.w_zeros > self.stats.w_values:
                raise _fail(name, "stats.a_zeros", self.stats.a_zeros,
                            "at most stats.a_values (and w_zeros at most w_values)")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for f in ("in_shape", "out_shape", "kernel", "stride", "padding", "dilation"):
            d[f] = list(d[f])
        if d["dilation"] == [1, 1]:
            del d["dilation"]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "?") -> "LayerProfile":
        """Build and validate a layer from a dict (a JSON object). ``where``: the layer's position,
        used in messages before its name is known."""
        if not isinstance(d, dict):
            raise ProfileError(f"layer {where}: expected a JSON object, got {type(d).__name__}")
        name = d.get("name", where)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ProfileError(f"layer {name!r}: unknown field(s) {unknown}; accepted: "
                               f"{sorted(fields)}")
        required = ("name", "kind", "in_shape", "out_shape", "macs", "weights", "w_bits", "a_bits")
        for f in required:
            if f not in d:
                raise ProfileError(f"layer {name!r}: field {f!r} is missing")
        kw = dict(d)
        for f in ("in_shape", "out_shape", "kernel", "stride", "padding", "dilation"):
            if f in kw:
                _ints(name, f, kw[f], None, 0)
                kw[f] = tuple(kw[f])
        stats = kw.get("stats")
        if stats is not None:
            if not isinstance(stats, dict):
                raise _fail(name, "stats", stats, "an object or null")
            sfields = {f.name for f in dataclasses.fields(LayerStats)}
            bad = sorted(set(stats) - sfields)
            if bad:
                raise ProfileError(f"layer {name!r}: unknown field(s) {['stats.' + b for b in bad]}; "
                                   f"accepted: {sorted(sfields)}")
            kw["stats"] = LayerStats(**stats)
        layer = cls(**kw)
        layer.validate()
        return layer

"""Quantizers by name: ``get("fixed:4")``, ``parse(spec)``, ``names()``, ``register(...)``.

A spec is one of: None or "float" (no quantization); "binary", "ternary" (no bit width);
"<kind>:<bits>" such as "fixed:4", "lsq:2", "pow2:3", "pact:4"; a dict {"name": kind, "bits": b,
option: value, ...} (the JSON form, see QuantConfig.to_dict); or a config dataclass instance.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .base import ROLES, QuantConfig, Quantizer
from .binary import BinaryConfig, BinaryQuantizer
from .fixed import FixedConfig, FixedQuantizer
from .floatq import FloatConfig, FloatQuantizer
from .lsq import LSQConfig, LSQQuantizer
from .pact import PACTConfig, PACTQuantizer
from .pow2 import Pow2Config, Pow2Quantizer
from .ternary import TernaryConfig, TernaryQuantizer

_REGISTRY: dict[str, tuple[type[QuantConfig], type[Quantizer]]] = {}


# The methods each capability flag of QuantConfig promises (hwq/quant/base.py).
_PROMISES = {"integer_codes": ("quantize_int",), "uniform_grid": ("quantize_int", "step_and_range",
                                                                  "codes_signed"),
             "bipolar": ("quantize_int",)}


def _check_capabilities(config_cls: type[QuantConfig], quantizer_cls: type[Quantizer]) -> None:
    """Refuse a capability flag whose method the quantizer class leaves to the base class (which
    raises): deploy, profile and export would otherwise fail later, far from the cause."""
    for flag in ("uniform_grid", "bipolar"):
        if getattr(config_cls, flag) and not config_cls.integer_codes:
            raise TypeError(f"{config_cls.__name__}.{flag} is True but integer_codes is False "
                            f"(quantizer '{config_cls.kind}'): {flag} codes are integer codes; set "
                            "integer_codes = True")
    for flag, methods in _PROMISES.items():
        if not getattr(config_cls, flag):
            continue
        missing = [m for m in methods if getattr(quantizer_cls, m) is getattr(Quantizer, m)]
        if missing:
            raise TypeError(f"{config_cls.__name__}.{flag} is True but {quantizer_cls.__name__} "
                            f"does not implement {', '.join(missing)} (quantizer '{config_cls.kind}'"
                            f"): implement {'them' if len(missing) > 1 else 'it'}, or set {flag} = "
                            "False in the config class")


def register(config_cls: type[QuantConfig], quantizer_cls: type[Quantizer]) -> None:
    """Add a quantizer kind under ``config_cls.kind`` (one line per kind, below). Raises TypeError
    when the config declares a capability (integer_codes, uniform_grid, bipolar) whose methods
    the quantizer class does not implement."""
    if not (isinstance(config_cls, type) and issubclass(config_cls, QuantConfig)):
        raise TypeError(f"config_cls={config_cls!r} is not accepted: expected a QuantConfig "
                        "subclass")
    if not (isinstance(quantizer_cls, type) and issubclass(quantizer_cls, Quantizer)):
        raise TypeError(f"quantizer_cls={quantizer_cls!r} is not accepted: expected a Quantizer "
                        "subclass")
    if not config_cls.kind:
        raise ValueError(f"config class {config_cls.__name__} has no 'kind' name")
    _check_capabilities(config_cls, quantizer_cls)
    _REGISTRY[config_cls.kind] = (config_cls, quantizer_cls)


for _c, _q in [(FloatConfig, FloatQuantizer), (BinaryConfig, BinaryQuantizer),
               (TernaryConfig, TernaryQuantizer), (Pow2Config, Pow2Quantizer),
               (FixedConfig, FixedQuantizer), (LSQConfig, LSQQuantizer),
               (PACTConfig, PACTQuantizer)]:
    register(_c, _q)


def _pattern(kind: str) -> str:
    cfg = _REGISTRY[kind][0]
    if cfg.bit_range is None:
        return kind
    return f"{kind}:b"


def names() -> list[str]:
    """The registered spec patterns, e.g. ['binary', 'fixed:b', 'float', ...]; 'b' is the bit width."""
    return sorted(_pattern(k) for k in _REGISTRY)


def _accepted() -> str:
    parts = []
    for k in sorted(_REGISTRY):
        cfg = _REGISTRY[k][0]
        parts.append(k if cfg.bit_range is None else f"{k}:b (b={cfg.bit_range[0]}..{cfg.bit_range[1]})")
    return "None, " + ", ".join(parts)


def _build(kind: str, options: dict[str, Any], spec: Any) -> QuantConfig:
    cfg_cls = _REGISTRY[kind][0]
    fields = [f.name for f in dataclasses.fields(cfg_cls)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"quantizer spec {spec!r}: unknown option(s) {unknown} for '{kind}'; "
                         f"accepted options: {fields or 'none'}")
    return cfg_cls(**options)


def parse(spec: Any, role: str = "weight", **options: Any) -> QuantConfig:
    """Turn a spec into a validated config for ``role`` ("weight" or "act").

    ``options`` override fields (e.g. ``parse("fixed:4", per_channel=True)``). Raises ValueError
    naming the spec and what is accepted.
    """
    if role not in ROLES:
        raise ValueError(f"role={role!r} is not accepted: expected one of {ROLES}")
    if spec is None:
        kind, opts = "float", {}
    elif isinstance(spec, QuantConfig):
        kind, opts = spec.kind, {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    elif isinstance(spec, str):
        text = spec.strip().lower()
        kind, sep, bits = text.partition(":")
        if kind not in _REGISTRY:
            raise ValueError(f"unknown quantizer {spec!r}: accepted are {_accepted()}")
        cfg_cls = _REGISTRY[kind][0]
        if cfg_cls.bit_range is None:
            if sep:
                raise ValueError(f"quantizer {spec!r}: '{kind}' takes no bit width "
                                 f"(its values use {cfg_cls.fixed_bits} bit(s)); write '{kind}'")
            opts = {}
        else:
            lo, hi = cfg_cls.bit_range
            if not sep or not bits.strip().isdigit():
                raise ValueError(f"quantizer {spec!r}: '{kind}' needs a bit width, written "
                                 f"'{kind}:b' with b an integer from {lo} to {hi}")
            opts = {"bits": int(bits)}
    elif isinstance(spec, dict):
        opts = dict(spec)
        kind = opts.pop("name", None)
        if kind not in _REGISTRY:
            raise ValueError(f"quantizer spec {spec!r}: 'name' must be one of {sorted(_REGISTRY)}")
        if _REGISTRY[kind][0].bit_range is not None and "bits" not in opts and "bits" not in options:
            raise ValueError(f"quantizer spec {spec!r}: '{kind}' needs 'bits'")
    else:
        raise ValueError(f"quantizer spec {spec!r} (type {type(spec).__name__}) is not accepted: "
                         f"expected None, a string such as 'fixed:4', a dict or a config; "
                         f"names: {_accepted()}")
    config = _build(kind, {**opts, **options}, spec)
    config.check_role(role)
    return config


def get(spec: Any, role: str = "weight", channels: int | None = None, **options: Any) -> Quantizer:
    """A new quantizer module for ``spec`` applied to ``role``; call it on a tensor.

    ``channels`` (output channels) is needed only by quantizers with per-channel learned state
    (lsq with per_channel=True). Example: ``hwq.quant.get("fixed:4")(torch.randn(3))``.
    """
    config = parse(spec, role, **options)
    return _REGISTRY[config.kind][1](config, role, channels=channels)

"""What both searches share: a precision configuration applied to a copy of a trained model.

A configuration gives every conv / FC layer a weight and an activation bit width; it is applied as
``fixed:b`` quantizers (dynamic fixed point, the per-layer precisions of Stripes / Proteus), post
training. Activation ranges are calibrated on ``calib`` batches: only the quantizers run in
training mode, so BatchNorm statistics stay as trained.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..convert import quantize
from ..nn import QuantLayer
from ..plan import Plan
from ..quant import Quantizer
from ..quant import parse as parse_quant

Bits = dict[str, tuple[int, int]]  # layer name -> (w_bits, a_bits)
BIT_RANGE = (2, 16)  # what fixed:b accepts


def layer_names(model: nn.Module) -> list[str]:
    """Names of the conv / FC layers a configuration sets, in module order."""
    return [n for n, m in model.named_modules()
            if type(m) in (nn.Conv2d, nn.Linear) or isinstance(m, QuantLayer)]


def spec_with_bits(template: Any, bits: int, role: str):
    """The quantizer config of ``template`` (a name such as "lsq", a spec such as "lsq:4", a dict
    or a config) at ``bits`` bits, for ``role`` ("weight" or "act")."""
    if isinstance(template, str) and ":" not in template:
        template = {"name": template.strip().lower()}
    return parse_quant(template, role, bits=bits)


def to_plan(bits: Bits, weights: Any = "fixed", acts: Any = "fixed") -> Plan:
    """The plan of ``bits`` with the quantizers ``weights`` / ``acts`` (templates as in
    spec_with_bits; default fixed:b)."""
    if weights == "fixed" and acts == "fixed":
        return Plan({n: {"weights": f"fixed:{w}", "acts": f"fixed:{a}"}
                     for n, (w, a) in bits.items()})
    return Plan({n: {"weights": spec_with_bits(weights, w, "weight"),
                     "acts": spec_with_bits(acts, a, "act")} for n, (w, a) in bits.items()})


def check_bits(name: str, value: int) -> None:
    lo, hi = BIT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is not accepted: expected an integer bit width from "
                         f"{lo} to {hi} (fixed:b)")


@torch.no_grad()
def apply(model: nn.Module, bits: Bits, calib: Iterable[torch.Tensor], weights: Any = "fixed",
          acts: Any = "fixed") -> nn.Module:
    """A copy of ``model`` quantized with ``bits`` and calibrated on ``calib``, in eval mode.
    weights / acts: the quantizer templates of to_plan (default fixed:b)."""
    q = quantize(copy.deepcopy(model), plan=to_plan(bits, weights, acts))
    q.eval()
    quantizers = [m for m in q.modules() if isinstance(m, Quantizer)]
    for m in quantizers:
        m.train()
    for x in calib:
        q(x)
    for m in quantizers:
        m.eval()
    return q


def cost(bits: Bits, macs: dict[str, int]) -> float:
    """Bit-products per image, sum over layers of MACs * w_bits * a_bits: the work of a
    bit-serial (Loom) or bit-fused (BitFusion) design, a simple proxy used to order moves."""
    return float(sum(macs[n] * w * a for n, (w, a) in bits.items()))


Evaluate = Callable[[nn.Module], float]

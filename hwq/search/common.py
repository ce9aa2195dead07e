"""What both searches share: a precision configuration applied to a copy of a trained model.

A configuration gives every conv / FC layer a weight and an activation bit width; it is applied as
``fixed:b`` quantizers (dynamic fixed point, the per-layer precisions of Stripes / Proteus), post
training. Activation ranges are calibrated on ``calib`` batches: only the quantizers run in
training mode, so BatchNorm statistics stay as trained.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from ..convert import quantize
from ..nn import QuantLayer
from ..plan import Plan
from ..quant import Quantizer

Bits = dict[str, tuple[int, int]]  # layer name -> (w_bits, a_bits)
BIT_RANGE = (2, 16)  # what fixed:b accepts


def layer_names(model: nn.Module) -> list[str]:
    """Names of the conv / FC layers a configuration sets, in module order."""
    return [n for n, m in model.named_modules()
            if type(m) in (nn.Conv2d, nn.Linear) or isinstance(m, QuantLayer)]


def to_plan(bits: Bits) -> Plan:
    return Plan({n: {"weights": f"fixed:{w}", "acts": f"fixed:{a}"} for n, (w, a) in bits.items()})


def check_bits(name: str, value: int) -> None:
    lo, hi = BIT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is not accepted: expected an integer bit width from "
                         f"{lo} to {hi} (fixed:b)")


@torch.no_grad()
def apply(model: nn.Module, bits: Bits, calib: Iterable[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` quantized with ``bits`` and calibrated on ``calib``, in eval mode."""
    q = quantize(copy.deepcopy(model), plan=to_plan(bits))
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

"""binary -- sign(x) in {-1, +1}, with sign(0) = +1.

torch.sign(0) is 0, which would silently make a network ternary; here 0 maps to +1 (the bit the
packed kernels use for +1).

Weights: optionally times a scale alpha = mean|W| per output channel or per tensor (XNOR-Net,
Rastegari et al., ECCV 2016); alpha is differentiated through, as in the paper's gradient.
Activations: no scale.
Gradient of sign (straight-through):
  "ste"    : 1 where |x| <= 1, else 0 (clipped STE, Courbariaux/Hubara et al., BNN 2016)
  "approx" : 2 - 2|x| where |x| <= 1, else 0 (ApproxSign, Bi-Real Net, Liu et al., ECCV 2018)
NaN stays NaN.
"""
from __future__ import annotations

import dataclasses
import warnings

import torch

from . import fused
from .base import QuantConfig, Quantizer, abs_mean, check_choice, check_finite, check_input


@dataclasses.dataclass(frozen=True)
class BinaryConfig(QuantConfig):
    """scale: "none" (pure +/-1), "channel" (alpha per output channel) or "tensor" (weights only).
    grad: "ste" (clipped straight-through) or "approx" (Bi-Real ApproxSign)."""

    kind = "binary"
    fixed_bits = 1
    integer_codes = True
    bipolar = True  # codes sign(x), sign(0) = +1; activations unscaled
    power_of_two = True  # +/-1 times the scale
    scale: str = "none"
    grad: str = "ste"

    def __post_init__(self):
        check_choice(self.kind, "scale", self.scale, ("none", "channel", "tensor"))
        check_choice(self.kind, "grad", self.grad, ("ste", "approx"))

    def check_role(self, role: str) -> None:
        super().check_role(role)
        if role == "act" and self.scale != "none":
            raise ValueError(f"scale={self.scale!r} is not accepted for binary activations: "
                             "expected 'none' (a scale applies to weights only)")


def _sign(x: torch.Tensor) -> torch.Tensor:
    out = torch.where(x < 0, -1.0, 1.0).to(x.dtype)
    return torch.where(torch.isnan(x), x, out)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, approx: bool):
        ctx.save_for_backward(x)
        ctx.approx = approx
        return _sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = x.abs()
        if ctx.approx:
            return grad * (2.0 - 2.0 * a).clamp_(min=0.0), None
        return grad * (a <= 1.0), None


class BinaryQuantizer(Quantizer):
    def __init__(self, config: BinaryConfig, role: str, channels: int | None = None):
        super().__init__(config, role)
        self._checked_input = role != "act"

    def _check_first_input(self, x: torch.Tensor) -> None:
        # A binary activation after a ReLU sees no negative value: sign() then maps everything to
        # +1 and the layer carries no information. BNN practice puts BatchNorm (and Hardtanh, not
        # ReLU) before a binary activation. Checked once, on the first batch.
        self._checked_input = True
        if x.numel() > 1 and bool((x.detach() >= 0).all()):
            warnings.warn("binary activation quantizer got a first batch with no negative value "
                          "(after a ReLU?): sign() maps it all to +1. Feed it signed values "
                          "(BatchNorm, Hardtanh) as BNNs do.", UserWarning, stacklevel=3)

    def _alpha(self, w: torch.Tensor) -> torch.Tensor | None:
        if self.config.scale == "none":
            return None
        alpha = abs_mean(w, self.config.scale == "channel")
        check_finite(alpha.detach(), "weight scale mean|W|", "binary")
        return alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.config, x)
        if not self._checked_input:
            self._check_first_input(x)
        approx = self.config.grad == "approx"
        s = fused.Sign.apply(x, approx) if fused.usable(x) else _SignSTE.apply(x, approx)
        alpha = self._alpha(x)
        return s if alpha is None else s * alpha

    def codes_signed(self) -> bool:
        return True  # -1 / +1

    @torch.no_grad()
    def quantize_int(self, x):
        alpha = self._alpha(x)
        return _sign(x), torch.ones((), dtype=x.dtype) if alpha is None else alpha

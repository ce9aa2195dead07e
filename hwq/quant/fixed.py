"""fixed:b -- b-bit integers times a power-of-two scale (dynamic fixed point, Q-format).

The integer bits come from the range (I = bits needed for the integer part of max|x|), the rest of
the b bits are fraction bits, so the step is 2^(I - b + 1) for a signed code and 2^(I - b) for an
unsigned one. This is the per-layer precision profiling of Stripes (Judd et al., MICRO 2016), Proteus
(Judd et al., ICS 2016) and Minerva (Reagen et al., ISCA 2016).

Weights: the range is max|W| of the current weights (per tensor or per output channel).
Activations: the range is an exponential moving average of the batch max|x| while training (the first
batch initialises it), frozen in eval mode; per tensor only.
Rounding is round-half-to-even (torch.round); values beyond the grid saturate. Gradient: straight-
through inside the representable range, zero where the value saturates (clipped STE).
"""
from __future__ import annotations

import dataclasses

import torch

from . import fused
from .base import (QuantConfig, Quantizer, SignedMixin, abs_max, check_bits, check_bool,
                   check_finite, check_input, pow2_scale_for, signed_range)


@dataclasses.dataclass(frozen=True)
class FixedConfig(QuantConfig):
    """bits: 2..16. signed: None = signed for weights, decided from the first batch for activations
    (unsigned when it has no negative value). per_channel: one scale per output channel (weights
    only). momentum: weight of a new batch in the activation range's moving average."""

    kind = "fixed"
    bit_range = (2, 16)
    integer_codes = True
    uniform_grid = True
    bits: int = 8
    signed: bool | None = None
    per_channel: bool = False
    momentum: float = 0.1

    def __post_init__(self):
        check_bits(self)
        check_bool(self, "per_channel")
        if not (self.signed is None or isinstance(self.signed, bool)):
            raise ValueError(f"signed={self.signed!r} is not accepted for quantizer 'fixed': "
                             "expected None, True or False")
        if (isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float))
                or not 0.0 < self.momentum <= 1.0):
            raise ValueError(f"momentum={self.momentum!r} is not accepted for quantizer 'fixed': "
                             "expected a number in (0, 1]")


class _ClippedRound(torch.autograd.Function):
    """y = clamp(round(x / step), lo, hi) * step; dy/dx = 1 where lo <= x/step <= hi, else 0."""

    @staticmethod
    def forward(ctx, x, step, lo, hi):
        u = x / step  # exact: step is a power of two
        inside = (u >= lo) & (u <= hi)
        ctx.save_for_backward(inside)
        return u.round_().clamp_(lo, hi).mul_(step)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


class FixedQuantizer(SignedMixin, Quantizer):
    def __init__(self, config: FixedConfig, role: str, channels: int | None = None):
        super().__init__(config, role)
        self._init_signed(True if (role == "weight" and config.signed is None) else config.signed)
        if role == "act":
            # max|x| of the activations; NaN until the first batch.
            self.register_buffer("running_max", torch.tensor(float("nan")))

    def _range(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.role == "weight":
            m = abs_max(x, cfg.per_channel)
            check_finite(m, "weight range max|W|", cfg.kind)
            return m
        if self.training or torch.isnan(self.running_max):
            m = x.detach().abs().amax()
            check_finite(m, "activation range max|x|", cfg.kind)
            if torch.isnan(self.running_max):
                self.running_max.copy_(m)
            elif self.training:
                self.running_max.lerp_(m.to(self.running_max.dtype), cfg.momentum)
        return self.running_max

    def step_and_range(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        check_input(self.config, x)
        signed = self._resolve_signed(x)
        lo, hi = signed_range(self.config.bits, signed)
        step = pow2_scale_for(self._range(x), self.config.bits - int(signed))
        return step.to(x.dtype), lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step, lo, hi = self.step_and_range(x)
        if step.numel() == 1 and fused.usable(x):
            return fused.FakeQuant.apply(x, step, lo, hi, None)
        return _ClippedRound.apply(x, step, lo, hi)

    @torch.no_grad()
    def quantize_int(self, x):
        step, lo, hi = self.step_and_range(x)
        return (x / step).round_().clamp_(lo, hi), step

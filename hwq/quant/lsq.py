"""lsq:b -- learned step size quantization (Esser et al., ICLR 2020).

y = clamp(round(x / s), lo, hi) * s with a learned step s > 0. Gradients (the paper's eq. 3 and 5):
  dy/dx = 1 inside [lo*s, hi*s], else 0;
  dy/ds = round(x/s) - x/s inside, lo below, hi above; summed over the tensor and multiplied by the
  gradient scale g = 1 / sqrt(N * hi), N = number of weights per scale (weights) or features per
  sample (activations).
s starts at 2 * mean|x| / sqrt(hi) on the first batch (the paper's initialisation).
Weights: signed codes, per tensor or per output channel. Activations: per tensor; unsigned when the
first batch has no negative value, unless ``signed`` says otherwise.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from . import fused
from .base import (QuantConfig, Quantizer, SignedMixin, abs_mean, channel_view, check_bits,
                   check_bool, check_finite, check_input, reduce_dims, signed_range)

MIN_STEP = 1e-8  # keeps the learned step positive when an optimizer pushes it through zero


@dataclasses.dataclass(frozen=True)
class LSQConfig(QuantConfig):
    """bits: 2..16. signed: None = signed for weights, from the first batch for activations.
    per_channel: one learned step per output channel (weights only)."""

    kind = "lsq"
    bit_range = (2, 16)
    integer_codes = True
    uniform_grid = True
    bits: int = 4
    signed: bool | None = None
    per_channel: bool = False

    def __post_init__(self):
        check_bits(self)
        check_bool(self, "per_channel")
        if not (self.signed is None or isinstance(self.signed, bool)):
            raise ValueError(f"signed={self.signed!r} is not accepted for quantizer 'lsq': "
                             "expected None, True or False")


class _LSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, g, lo, hi, dims):
        u = x / s
        inside = (u >= lo) & (u <= hi)
        q = u.clamp(lo, hi).round_()
        # d(q*s)/ds: q - u inside, q (= lo or hi) outside.
        r = torch.where(inside, q - u, q)
        ctx.save_for_backward(inside, r)
        ctx.g, ctx.dims, ctx.s_shape = g, dims, s.shape
        return q.mul_(s)

    @staticmethod
    def backward(ctx, grad):
        inside, r = ctx.saved_tensors
        gs = grad * r
        gs = gs.sum(dim=ctx.dims) if ctx.dims else gs.sum()
        return grad * inside, (gs * ctx.g).reshape(ctx.s_shape), None, None, None, None


class LSQQuantizer(SignedMixin, Quantizer):
    def __init__(self, config: LSQConfig, role: str, channels: int | None = None):
        super().__init__(config, role)
        self._init_signed(True if (role == "weight" and config.signed is None) else config.signed)
        if config.per_channel:
            if not (isinstance(channels, int) and channels > 0):
                raise ValueError(f"channels={channels!r}: a per-channel lsq quantizer needs the "
                                 "number of output channels (a positive int) to size its steps")
            shape = (channels,)
        else:
            shape = ()
        self.scale = nn.Parameter(torch.ones(shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _codes_range(self, x):
        check_input(self.config, x)
        return signed_range(self.config.bits, self._resolve_signed(x))

    def _step(self, x: torch.Tensor, hi: int) -> torch.Tensor:
        per_channel = self.config.per_channel
        if not bool(self.initialized):
            init = 2.0 * abs_mean(x.detach(), per_channel) / math.sqrt(hi)
            check_finite(init, "initial step 2*mean|x|/sqrt(Qp)", "lsq")
            with torch.no_grad():
                self.scale.copy_(init.reshape(self.scale.shape).clamp(min=MIN_STEP))
            self.initialized.fill_(True)
        # Clamp in the forward only: the gradient still reaches a step pushed below MIN_STEP, so
        # it can recover instead of sticking there.
        s = self.scale + (self.scale.clamp(min=MIN_STEP) - self.scale).detach()
        return channel_view(s, x.dim()) if per_channel else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._codes_range(x)
        s = self._step(x, hi)
        if self.config.per_channel:
            n = x[0].numel()
            dims = tuple(range(1, x.dim()))
        else:
            n = x.numel() if self.role == "weight" else x[0].numel()
            dims = None
        g = 1.0 / math.sqrt(n * hi)
        if dims is None and fused.usable(x):
            return fused.FakeQuant.apply(x, s.to(x.dtype), lo, hi, g)
        return _LSQ.apply(x, s.to(x.dtype), g, lo, hi, dims)

    def step_and_range(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(step, lo, hi): quantize_int(x) codes are clamp(round(x / step), lo, hi)."""
        lo, hi = self._codes_range(x)
        return self._step(x, hi).to(x.dtype), lo, hi

    @torch.no_grad()
    def quantize_int(self, x):
        s, lo, hi = self.step_and_range(x)
        return (x / s).clamp_(lo, hi).round_(), s

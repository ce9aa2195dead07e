"""pact:b -- activations clipped at a learned level alpha, then b-bit uniform, unsigned
(Choi et al., "PACT", 2018).

y = round(clamp(x, 0, alpha) * n / alpha) * alpha / n with n = 2^b - 1. Gradients (the paper's
eq. 3, straight-through for the rounding): dy/dx = 1 where 0 <= x <= alpha, else 0;
dy/dalpha = 1 where x >= alpha, else 0. alpha starts at 10 (the paper's initial value); put a weight
decay on it as the paper does. Activations only.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .base import QuantConfig, Quantizer, check_bits, check_input

MIN_ALPHA = 1e-6
MAX_ALPHA = 32768.0  # 2^15, half of torch.finfo(torch.float16).max (see PACTConfig)


@dataclasses.dataclass(frozen=True)
class PACTConfig(QuantConfig):
    """bits: 2..16. alpha_init: the initial clipping level, from MIN_ALPHA (1e-6, below which the
    forward clamps it) to MAX_ALPHA (32768 = 2^15: the top level n * (alpha / n) must stay finite
    in float16 too, whose largest value is 65504 and whose rounding of the step can push n * step
    above alpha; beyond, the values turn to Inf and NaN)."""

    kind = "pact"
    roles = ("act",)
    bit_range = (2, 16)
    integer_codes = True
    uniform_grid = True
    bits: int = 4
    alpha_init: float = 10.0

    def __post_init__(self):
        check_bits(self)
        a = self.alpha_init
        if (isinstance(a, bool) or not isinstance(a, (int, float))
                or not MIN_ALPHA <= a <= MAX_ALPHA):
            raise ValueError(f"alpha_init={a!r} is not accepted for quantizer 'pact': expected a "
                             f"number from {MIN_ALPHA:g} to {MAX_ALPHA:g} (finite in float16)")


class _PACT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, n):
        above = x >= alpha
        inside = (x >= 0) & ~above
        ctx.save_for_backward(inside, above)
        step = alpha / n
        return torch.minimum(x.clamp(min=0), alpha).div_(step).round_().mul_(step)

    @staticmethod
    def backward(ctx, grad):
        inside, above = ctx.saved_tensors
        # x == alpha exactly is "above" (the paper's x >= alpha), so it feeds alpha, not x.
        return grad * inside, (grad * above).sum().reshape(()), None


class PACTQuantizer(Quantizer):
    def __init__(self, config: PACTConfig, role: str, channels: int | None = None):
        super().__init__(config, role)
        self.alpha = nn.Parameter(torch.tensor(float(config.alpha_init)))

    def _alpha(self, x: torch.Tensor):
        check_input(self.config, x)
        return self.alpha.clamp(min=MIN_ALPHA).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PACT.apply(x, self._alpha(x), float(2 ** self.config.bits - 1))

    def codes_signed(self) -> bool:
        return False  # clipped to [0, alpha]

    def step_and_range(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(step, lo, hi) with step = alpha / (2^b - 1): quantize_int(x) codes equal
        clamp(round(x / step), lo, hi). quantize_int clamps x to [0, alpha] before dividing, which
        gives the same codes: alpha / step rounds to 2^b - 1 (tested)."""
        alpha = self._alpha(x)
        n = 2 ** self.config.bits - 1
        return alpha / n, 0, n

    @torch.no_grad()
    def quantize_int(self, x):
        alpha = self._alpha(x)
        step = alpha / (2 ** self.config.bits - 1)
        return torch.minimum(x.clamp(min=0), alpha).div_(step).round_(), step

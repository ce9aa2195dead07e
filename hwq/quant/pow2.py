"""pow2:b -- power-of-two weights {0, +/-2^e}: multiplications become shifts.

A b-bit code holds a sign bit and 2^(b-1) magnitudes: zero and the n = 2^(b-1) - 1 exponents
e_top, e_top - 1, ..., e_top - n + 1. The top exponent comes from the range, e_top = round(log2 max|W|)
(per tensor or per output channel), and each weight is rounded in the log domain,
e = round(log2 |w|), clipped to e_top, and set to zero below the lowest exponent (Miyashita et al.
2016; the multiplier-free quantizer of Brown et al., DAC 2017). Gradient: straight-through (identity).
Weights only. b from 2 to 8.
"""
from __future__ import annotations

import dataclasses

import torch

from .base import (QuantConfig, Quantizer, abs_max, check_bits, check_bool, check_finite,
                   straight_through)


@dataclasses.dataclass(frozen=True)
class Pow2Config(QuantConfig):
    """bits: 2..8 (sign + log2 of the number of magnitudes). per_channel: e_top per output channel."""

    kind = "pow2"
    roles = ("weight",)
    bit_range = (2, 8)
    integer_codes = True  # +/-2^k and 0 times 2^e_low
    power_of_two = True
    bits: int = 4
    per_channel: bool = False

    def __post_init__(self):
        check_bits(self)
        check_bool(self, "per_channel")

    @property
    def n_exponents(self) -> int:
        return 2 ** (self.bits - 1) - 1


class Pow2Quantizer(Quantizer):
    def __init__(self, config: Pow2Config, role: str, channels: int | None = None):
        super().__init__(config, role)

    @torch.no_grad()
    def exponents(self, w: torch.Tensor):
        """(e, keep, e_low): per-weight exponent after log rounding and clipping to e_top, the
        non-zero mask, and the lowest exponent."""
        m = abs_max(w, self.config.per_channel and w.dim() > 1)
        check_finite(m, "weight range max|W|", "pow2")
        e_top = torch.log2(torch.where(m > 0, m, torch.ones_like(m))).round()
        e_low = e_top - (self.config.n_exponents - 1)
        e = torch.log2(w.abs()).round()  # log2(0) = -inf: below e_low, so zero
        keep = e >= e_low
        return torch.minimum(e, e_top.expand_as(e)), keep, e_low

    def codes_signed(self) -> bool:
        return True  # +/-2^k and 0

    @torch.no_grad()
    def quantize_int(self, w):
        """Codes are the signed integers +/-2^(e - e_low), scale 2^e_low (exact in float)."""
        e, keep, e_low = self.exponents(w)
        sign = torch.where(w < 0, -1.0, 1.0).to(w.dtype)
        mag = torch.exp2(torch.where(keep, e - e_low, torch.zeros_like(e))) * keep
        return sign * mag, torch.exp2(e_low)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        e, keep, _ = self.exponents(w)
        q = torch.where(w < 0, -1.0, 1.0).to(w.dtype) * torch.exp2(e) * keep
        return straight_through(w, q)

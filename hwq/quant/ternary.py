"""ternary -- weights in {-a, 0, +a} (Ternary Weight Networks, Li et al., 2016).

Threshold delta = 0.7 * mean|W| (the paper's approximation of the optimal threshold); a = mean of |W|
over the weights above the threshold; per tensor (the paper) or per output channel. Gradient:
straight-through (identity) to the latent weights. Weights only.
"""
from __future__ import annotations

import dataclasses

import torch

from .base import (QuantConfig, Quantizer, check_bool, check_finite, reduce_dims,
                   straight_through)

DELTA_FACTOR = 0.7  # TWN, Li et al. 2016, eq. (9)


@dataclasses.dataclass(frozen=True)
class TernaryConfig(QuantConfig):
    """per_channel: threshold and scale per output channel instead of per tensor."""

    kind = "ternary"
    roles = ("weight",)
    fixed_bits = 2
    integer_codes = True  # -1, 0, +1 times a
    power_of_two = True
    per_channel: bool = False

    def __post_init__(self):
        check_bool(self, "per_channel")


class TernaryQuantizer(Quantizer):
    def __init__(self, config: TernaryConfig, role: str, channels: int | None = None):
        super().__init__(config, role)

    def codes_signed(self) -> bool:
        return True  # -1, 0, +1

    @torch.no_grad()
    def quantize_int(self, w):
        dims = reduce_dims(w, self.config.per_channel and w.dim() > 1)
        a = w.abs()
        delta = DELTA_FACTOR * (a.mean(dim=dims, keepdim=True) if dims else a.mean())
        check_finite(delta, "weight threshold 0.7*mean|W|", "ternary")
        keep = a > delta
        n = keep.sum(dim=dims, keepdim=True) if dims else keep.sum()
        alpha = (a * keep).sum(dim=dims, keepdim=True) if dims else (a * keep).sum()
        alpha = alpha / n.clamp(min=1)  # all-zero weights: alpha 0, codes 0
        codes = torch.where(keep, torch.where(w < 0, -1.0, 1.0), 0.0).to(w.dtype)
        return codes, alpha

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, alpha = self.quantize_int(w)
        q = codes * alpha
        return straight_through(w, q)

"""float -- the passthrough: no quantization (spec None or "float"). Returns its input unchanged, so
a model quantized with None everywhere computes bit for bit what the float model computes."""
from __future__ import annotations

import dataclasses

import torch

from .base import QuantConfig, Quantizer


@dataclasses.dataclass(frozen=True)
class FloatConfig(QuantConfig):
    kind = "float"
    fixed_bits = 32

    def spec(self):
        return None

    def __str__(self):
        return "float"


class FloatQuantizer(Quantizer):
    def __init__(self, config: FloatConfig, role: str, channels: int | None = None):
        super().__init__(config, role)

    @property
    def is_float(self) -> bool:
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def quantize_int(self, x):
        raise TypeError("the float passthrough has no integer codes: it does not quantize")

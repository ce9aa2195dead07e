"""QuantAct: quantize a tensor on its own (a residual sum, a concatenation, the network input)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import quant


class QuantAct(nn.Module):
    """``QuantAct("fixed:8")`` or ``QuantAct(acts="pact:4")``: applies an activation quantizer."""

    def __init__(self, acts: Any = None):
        super().__init__()
        self.act_quant = quant.get(acts, role="act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_quant(x)

    @property
    def a_bits(self) -> int:
        return self.act_quant.bits

    @property
    def a_quant(self) -> str:
        return self.act_quant.name

    def extra_repr(self) -> str:
        return f"acts={self.a_quant}"

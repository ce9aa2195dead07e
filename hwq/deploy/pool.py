"""Max pooling for deployed models: torch's nn.MaxPool2d with the argmax indices left out.

torch's CPU max_pool2d computes the indices of the maxima even when nobody asks for them
(aten::max_pool2d_with_indices): for a ResNet-18 stem at batch 16 that is 25.6 MB of int64
written beside a 12.8 MB output, and the op was 12% of a deployed binary ResNet-18 on a Zen 5
core (docs/kernels.md). hwq's op (csrc/max_pool.cpp) reads channels-last float32 input row by row
and returns the same values bit for bit (NaN propagation and the sign of zero included; tested
against F.max_pool2d).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d whose channels-last float32 CPU inputs (what deployed layers hand on) take
    torch.ops.hwq.max_pool2d_cl; any other input, or an input that needs gradients, takes
    nn.MaxPool2d's own forward. Only pools without dilation, ceil_mode or return_indices are made
    (``applies``)."""

    @staticmethod
    def applies(m: nn.Module) -> bool:
        """Whether ``m`` is a plain nn.MaxPool2d that hwq's op computes exactly."""
        return (kernels.HAVE_EXTENSION and type(m) is nn.MaxPool2d and not m.return_indices
                and not m.ceil_mode and _pair(m.dilation) == (1, 1))

    @classmethod
    def from_torch(cls, m: nn.MaxPool2d) -> "MaxPool2d":
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu"
                and not x.requires_grad and x.is_contiguous(memory_format=torch.channels_last)):
            return torch.ops.hwq.max_pool2d_cl(x, _pair(self.kernel_size), _pair(self.stride),
                                               _pair(self.padding))
        return super().forward(x)


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

"""Drop-in quantized compute layers: QuantConv2d and QuantLinear.

They are subclasses of torch.nn.Conv2d / Linear (same constructor, same parameters, grouped and
depthwise convolutions included) that quantize their weight with ``weight_quant`` and their input
activations with ``act_quant`` before the float op; the bias stays float. Each exposes its precision
(``w_bits``, ``a_bits``, ``w_quant``, ``a_quant``) for hwq.summary and the profiler.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .. import quant


class QuantLayer:
    """Mixin: the two quantizers of a compute layer and its precision."""

    weight_quant: quant.Quantizer
    act_quant: quant.Quantizer

    def set_quantizers(self, weights: Any = None, acts: Any = None) -> None:
        """Replace both quantizers (specs as in hwq.quant.get); learned state starts afresh."""
        w = quant.get(weights, role="weight", channels=self.weight.shape[0])
        a = quant.get(acts, role="act")
        device, dtype = self.weight.device, self.weight.dtype
        if device.type == "meta":  # built by from_float before its weight is attached
            device = None
        self.weight_quant = w.to(device=device, dtype=dtype)
        self.act_quant = a.to(device=device, dtype=dtype)

    @property
    def w_bits(self) -> int:
        """Bits per weight (32 when the weights stay float)."""
        return self.weight_quant.bits

    @property
    def a_bits(self) -> int:
        """Bits per input activation (32 when the input stays float)."""
        return self.act_quant.bits

    @property
    def w_quant(self) -> str:
        return self.weight_quant.name

    @property
    def a_quant(self) -> str:
        return self.act_quant.name

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the layer uses it (on the quantizer's grid)."""
        return self.weight_quant(self.weight)

    @classmethod
    def _from_float(cls, module: nn.Module, kwargs: dict, weights: Any, acts: Any):
        # Built on the meta device: no throw-away initialisation of a second weight tensor; the
        # float module's Parameters are then reused as they are (an optimizer holding them still
        # works).
        new = cls(**kwargs, device="meta", dtype=module.weight.dtype)
        new.weight = module.weight
        new.bias = module.bias
        new.train(module.training)
        new.set_quantizers(weights, acts)
        return new


class QuantConv2d(QuantLayer, nn.Conv2d):
    """nn.Conv2d whose weight and input are quantized: ``QuantConv2d(64, 64, 3, padding=1,
    weights="binary", acts="binary")``. ``weights`` / ``acts``: quantizer specs (None = float)."""

    def __init__(self, *args, weights: Any = None, acts: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_quantizers(weights, acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quant(x), self.weight_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weights: Any = None, acts: Any = None) -> "QuantConv2d":
        kwargs = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                      kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                      padding_mode=conv.padding_mode)
        return cls._from_float(conv, kwargs, weights, acts)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weights={self.w_quant}, acts={self.a_quant}"


class QuantLinear(QuantLayer, nn.Linear):
    """nn.Linear whose weight and input are quantized: ``QuantLinear(512, 10, weights="fixed:8")``."""

    def __init__(self, *args, weights: Any = None, acts: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_quantizers(weights, acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), self.weight_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, weights: Any = None, acts: Any = None) -> "QuantLinear":
        kwargs = dict(in_features=linear.in_features, out_features=linear.out_features,
                      bias=linear.bias is not None)
        return cls._from_float(linear, kwargs, weights, acts)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weights={self.w_quant}, acts={self.a_quant}"

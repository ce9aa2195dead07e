"""Drop-in quantized modules."""
from .act import QuantAct
from .layers import QuantConv2d, QuantLayer, QuantLinear

__all__ = ["QuantConv2d", "QuantLinear", "QuantAct", "QuantLayer"]

"""Quantizers: one file each (the math, its straight-through gradient and a config dataclass),
addressable by name through the registry."""
from .base import QuantConfig, Quantizer
from .binary import BinaryConfig
from .fixed import FixedConfig
from .floatq import FloatConfig
from .lsq import LSQConfig
from .pact import PACTConfig
from .pow2 import Pow2Config
from .registry import get, names, parse, register
from .ternary import TernaryConfig

__all__ = ["Quantizer", "QuantConfig", "get", "names", "parse", "register", "BinaryConfig",
           "TernaryConfig", "Pow2Config", "FixedConfig", "LSQConfig", "PACTConfig", "FloatConfig"]

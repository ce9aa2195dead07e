"""hwq.kernels: packed binary (XNOR-popcount) and bit-serial convolution / linear on the CPU.

The ops return exact integer sums (see hwq/kernels/ops.py for the value conventions); they run the
C++ extension hwq._C (torch.ops.hwq.*, dispatched at run time to AVX-512 VPOPCNTDQ, AVX-512BW, AVX2
or scalar code) and fall back to the pure-torch reference in hwq/kernels/reference.py, with one
warning, when it is not built. hwq.kernels.int8 wraps oneDNN's u8 x s8 conv and linear, the int8 path
of hwq.deploy. docs/kernels.md describes layouts, padding and measured speed.
"""
from . import int8, reference
from ._ext import HAVE_EXTENSION, available_isas, current_isa, set_isa, use_isa
from .out_mode import OutMode
from .ops import (PackedTensor, binary_conv2d, binary_linear, bitserial_conv2d, bitserial_linear,
                  pack_activations, pack_weights)

__all__ = ["int8", "reference", "HAVE_EXTENSION", "available_isas", "current_isa", "set_isa", "use_isa",
           "OutMode", "PackedTensor", "pack_activations", "pack_weights", "binary_conv2d",
           "bitserial_conv2d", "binary_linear", "bitserial_linear"]

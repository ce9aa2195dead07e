"""OutMode: what torch.ops.hwq.conv2d_packed returns, the ``out_mode`` argument of the op.

The same numbers as ``enum OutMode`` in csrc/packed_conv_args.h, which the CPU and CUDA bindings
check (tests/kernels/test_out_mode.py reads the header and compares). An IntEnum member passes to
the op as the int it is.

This module imports nothing from hwq (only the standard library), so scripts/gpu_check.py can load
it by path on a machine where hwq is not installed.
"""
from __future__ import annotations

import enum


class OutMode(enum.IntEnum):
    """S is the exact int32 sum of a conv2d_packed output element, o its output channel."""

    INT32 = 0          # S as int32 (N, O, OH, OW), channels-last memory; no scale or bias
    FLOAT = 1          # float32(S) * scale[o] + bias[o], float32 (N, O, OH, OW), channels-last
    PACKED_SIGN = 2    # the sign bits (value < 0) of FLOAT's value, packed as activations are:
    #                    int64 (N, OH, OW, 1, 1, words(O)), the input of a following binary layer
    FLOAT_RELU = 3     # FLOAT then ReLU, in the epilogue (CPU only: the CUDA op refuses it)


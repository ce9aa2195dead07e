"""Fused CPU kernels for fake quantization (csrc/qat_ops.cpp, part of the hwq._C extension).

Used automatically for per-tensor fixed-point and LSQ quantizers and for sign (binary) on dense
float32 CPU tensors: one pass forward, one backward, instead of the 8-12 tensor passes of the same
math in torch ops. Forward values and input gradients are bit-identical to the torch path
(tests/quant/test_fused.py); LSQ's step gradient differs only in summation order. Without the
extension, or for other dtypes, devices and per-channel steps, the torch path runs.
"""
from __future__ import annotations

import contextlib

import torch

try:
    from .. import _C  # noqa: F401  (registers torch.ops.hwq.*)
    AVAILABLE = hasattr(torch.ops.hwq, "fake_quant_forward")
except ImportError:
    AVAILABLE = False

_enabled = True


@contextlib.contextmanager
def disabled():
    """Run the torch path inside this block (to compare or time both)."""
    global _enabled
    old, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = old


def dense(x: torch.Tensor) -> bool:
    """Contiguous or channels-last: the kernels walk the storage as one flat array."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def usable(x: torch.Tensor) -> bool:
    return (AVAILABLE and _enabled and x.device.type == "cpu" and x.dtype == torch.float32
            and x.numel() > 0 and dense(x))


def _like(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # The kernels walk grad and x as flat arrays: they need the same strides.
    return grad if grad.stride() == x.stride() else torch.empty_like(x).copy_(grad)


class FakeQuant(torch.autograd.Function):
    """y = clamp(round(x / step), lo, hi) * step, clipped STE to x; with ``g`` not None, also the
    LSQ step gradient g * sum(grad * (round(u) - u inside, lo / hi outside))."""

    @staticmethod
    def forward(ctx, x, step, lo, hi, g):
        s = float(step)
        ctx.save_for_backward(x)
        ctx.args = (s, lo, hi, g, step.shape)
        return torch.ops.hwq.fake_quant_forward(x, s, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s, lo, hi, g, shape = ctx.args
        dx, dstep = torch.ops.hwq.fake_quant_backward(_like(grad, x), x, s, lo, hi, g is not None)
        return dx, (dstep * g).reshape(shape) if g is not None else None, None, None, None


class Sign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, approx):
        ctx.save_for_backward(x)
        ctx.approx = approx
        return torch.ops.hwq.sign_forward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.ops.hwq.sign_backward(_like(grad, x), x, ctx.approx), None

"""Loading the C++ extension hwq._C, choosing its instruction set, and the fake (meta) kernels that
let torch.compile and FakeTensor propagate shapes through torch.ops.hwq.*.

The extension is optional at import time: without it every op runs the pure-torch reference
(hwq/kernels/reference.py) and warns once, so a checkout without a compiler still works, only slower.
The numbers are the same either way (the tests check both against float64 convolutions).
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

from .out_mode import OutMode
from .reference import PANEL, padded_panels, words

try:
    from .. import _C  # noqa: F401  (importing it registers torch.ops.hwq.*)
    HAVE_EXTENSION = True
    EXTENSION_ERROR: str | None = None
except ImportError as err:  # not built: pip install --no-build-isolation -e .
    HAVE_EXTENSION = False
    EXTENSION_ERROR = str(err)

_warned = False


def warn_fallback_once() -> None:
    """One RuntimeWarning per process when an op runs the reference because hwq._C is missing."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "hwq._C (the C++ kernels) is not built, so hwq.kernels runs its pure-torch reference "
            f"implementations: same results, much slower ({EXTENSION_ERROR}). Build it with "
            "`pip install --no-build-isolation -e .` from the repository root.",
            RuntimeWarning, stacklevel=3)


def available_isas() -> list[str]:
    """Kernel paths this CPU and build can run, fastest first ([] without the extension):
    "avx512_vpopcntdq", "avx512bw", "avx2", "scalar_popcnt", "scalar"."""
    return list(torch.ops.hwq.available_isas()) if HAVE_EXTENSION else []


def current_isa() -> str | None:
    """The kernel path in use (None without the extension)."""
    return torch.ops.hwq.get_isa() if HAVE_EXTENSION else None


def set_isa(name: str) -> None:
    """Use one kernel path from now on ("auto" = the fastest available). Every path returns the same
    numbers; this exists to test and time each one."""
    if not HAVE_EXTENSION:
        raise RuntimeError(f"set_isa({name!r}) needs the C++ extension hwq._C, which is not built "
                           f"({EXTENSION_ERROR})")
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} is not accepted: expected a string, one of "
                        f"{['auto'] + available_isas()}")
    torch.ops.hwq.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str):
    """Context manager: run the kernels on path ``name`` inside the block, then restore."""
    previous = current_isa()
    set_isa(name)
    try:
        yield
    finally:
        set_isa(previous)


ISA_ENV = "HWQ_ISA"  # e.g. HWQ_ISA=avx2: run every packed kernel on that path in this process


def _isa_from_env() -> None:
    """Apply HWQ_ISA (a path name of available_isas(), or "auto") at import; a path this CPU or
    build cannot execute is refused with the variable, the value and what is accepted."""
    name = os.environ.get(ISA_ENV, "").strip()
    if not name:
        return
    if not HAVE_EXTENSION:
        raise RuntimeError(f"{ISA_ENV}={name!r} chooses a kernel path of the C++ extension hwq._C, "
                           f"which is not built ({EXTENSION_ERROR})")
    try:
        set_isa(name)
    except RuntimeError as err:
        msg = str(err).split("\n")[0]
        raise ValueError(f"environment variable {ISA_ENV}={name!r} is not accepted: {msg}") from None


_isa_from_env()

if HAVE_EXTENSION:

    @torch.library.register_fake("hwq::pack_activations")
    def _pack_activations_fake(x, bits, binary, groups):
        n, c, h, w = x.shape
        return x.new_empty((n, h, w, groups, 1 if binary else bits, words(c // groups)),
                           dtype=torch.int64)

    @torch.library.register_fake("hwq::quantize_u8")
    def _quantize_u8_fake(x, step, lo, hi, zp):
        return torch.empty_strided(x.shape, x.stride(), dtype=torch.uint8, device=x.device)

    @torch.library.register_fake("hwq::pack_weights")
    def _pack_weights_fake(w, bits, binary, groups):
        o, cg, kh, kw = w.shape
        return w.new_empty((groups, 1 if binary else bits, padded_panels(o // groups),
                            kh * kw * words(cg), PANEL), dtype=torch.int64)

    @torch.library.register_fake("hwq::conv2d_packed")
    def _conv2d_packed_fake(x, w, in_channels, out_channels, kernel_size, a_bits, w_bits, binary,
                            stride, padding, dilation, groups, scale, bias, out_mode):
        n, h, wd = x.shape[:3]
        oh = (h + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1
        ow = (wd + 2 * padding[1] - dilation[1] * (kernel_size[1] - 1) - 1) // stride[1] + 1
        if out_mode == OutMode.PACKED_SIGN:
            return x.new_empty((n, oh, ow, 1, 1, words(out_channels)), dtype=torch.int64)
        dtype = torch.int32 if out_mode == OutMode.INT32 else torch.float32  # FLOAT, FLOAT_RELU
        return x.new_empty((n, oh, ow, out_channels), dtype=dtype).permute(0, 3, 1, 2)

    @torch.library.register_fake("hwq::conv2d_packed_add")
    def _conv2d_packed_add_fake(x, w, in_channels, out_channels, kernel_size, a_bits, w_bits,
                                binary, stride, padding, dilation, groups, scale, bias, residual,
                                relu):
        return _conv2d_packed_fake(x, w, in_channels, out_channels, kernel_size, a_bits, w_bits,
                                   binary, stride, padding, dilation, groups, scale, bias,
                                   OutMode.FLOAT)

    @torch.library.register_fake("hwq::channel_affine_")
    def _channel_affine_fake(y, scale, bias, relu):
        return y

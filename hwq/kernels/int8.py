"""The int8 path of hwq.deploy: oneDNN's u8 x s8 convolution and linear with float32 output.

These are the kernels behind torch's x86 quantization backend and Inductor's int8 lowering
(``torch.ops.onednn.qconv2d_pointwise`` / ``qlinear_pointwise``): VNNI or AMX on recent Intel and
AMD CPUs. hwq.deploy uses them for layers whose integer codes fit 8 bits but whose bit-serial cost
(w_bits * a_bits one-bit products per MAC) would be higher, and for signed activations, which the
bit-serial kernels do not take.

Value convention, as for the packed kernels: x holds integer activation codes (any real dtype),
w holds signed integer weight codes in [-128, 127]. The activation codes travel as u8 = code + x_zp
(x_zp = 2^(a_bits-1) for signed codes, 0 for unsigned); oneDNN pads with x_zp, i.e. the value 0,
so zero padding means what it means in torch.nn.functional.conv2d. The output is
``float(sum(x * w)) * x_scale * w_scale[o] + bias[o]`` in float32 (channels-last for conv).

Exactness: the int32 sum is exact on CPUs with VNNI or AMX. Without them oneDNN multiplies u8 by s8
with vpmaddubsw, whose 16-bit pair sums saturate once u8 values exceed 127, so there only codes with
u8 <= 127 (at most 7 bits) are exact; ``u8_exact_max()`` says which bound holds here.
"""
from __future__ import annotations

import functools

import torch

__all__ = ["HAVE_ONEDNN_INT8", "cpu_flags", "u8_exact_max", "quantize_u8", "pack_conv_weight", "conv2d",
           "pack_linear_weight", "linear"]


def _have_ops() -> bool:
    try:
        return all(hasattr(torch.ops.onednn, n) for n in
                   ("qconv_prepack", "qconv2d_pointwise", "qlinear_prepack", "qlinear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


HAVE_ONEDNN_INT8 = _have_ops() and torch.backends.mkldnn.is_available()


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere (assume the worst)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def u8_exact_max() -> int:
    """Largest u8 activation value for which oneDNN's int8 sums are exact on this CPU: 255 with
    VNNI or AMX (flags avx512_vnni, avx_vnni, amx_int8), else 127."""
    return 255 if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"} else 127


def _as_u8(x: torch.Tensor, x_zp: int) -> torch.Tensor:
    """x as u8 = code + x_zp: a uint8 x is taken as that already (quantize_u8's output); other
    dtypes hold the integer codes themselves, checked (integers, inside [0, 255] after + x_zp)."""
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError("activation codes must be integer-valued (quantize_int's codes)")
    if x.numel():
        lo, hi = (int(v) + x_zp for v in torch.aminmax(x))
        if lo < 0 or hi > 255:
            raise ValueError(f"activation codes + x_zp={x_zp} span [{lo}, {hi}]: expected values "
                             "in [0, 255] (u8)")
    return (x + x_zp).to(torch.uint8) if x_zp else x.to(torch.uint8)


def quantize_u8(x: torch.Tensor, step, lo: int, hi: int, zp: int) -> torch.Tensor:
    """clamp(round(x / step), lo, hi) + zp as uint8 (round half to even, as torch.round), the
    activation codes of the int8 path in one pass (torch.ops.hwq.quantize_u8, same strides as x).
    step: a positive scalar (float or one-element tensor); x: float32 without NaN. Other dtypes or
    a per-channel step run the same arithmetic in torch."""
    step_t = (step.detach().to(torch.float64) if isinstance(step, torch.Tensor)
              else torch.as_tensor(step, dtype=torch.float64))
    if not (isinstance(lo, int) and isinstance(hi, int) and isinstance(zp, int)
            and lo < hi and 0 <= lo + zp and hi + zp <= 255):
        raise ValueError(f"lo={lo!r}, hi={hi!r}, zp={zp!r}: expected ints with lo < hi and "
                         "[lo + zp, hi + zp] inside [0, 255]")
    if step_t.numel() == 1 and x.dtype == torch.float32 and hasattr(torch.ops.hwq, "quantize_u8"):
        dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(
            memory_format=torch.channels_last))
        return torch.ops.hwq.quantize_u8(x if dense else x.contiguous(), float(step_t), lo, hi, zp)
    if not bool((step_t > 0).all()):
        raise ValueError(f"step={step!r}: expected positive values")
    u = (x / step_t.to(x.dtype)).round_().clamp_(lo, hi)
    if u.isnan().any():
        raise ValueError("x contains NaN: an integer code cannot represent it")
    return u.add_(zp).to(torch.uint8)


def _check_shapes(x: torch.Tensor, conv: bool, channels: int, out: int, w_scale: torch.Tensor,
                  bias: torch.Tensor | None) -> None:
    """oneDNN reports mismatches as 'could not create a primitive descriptor': say which."""
    if (x.dim() != 4) if conv else (x.dim() < 1):
        raise ValueError(f"x has shape {tuple(x.shape)}: expected "
                         + ("(N, C, H, W)" if conv else "(..., C)"))
    c = x.shape[1] if conv else x.shape[-1]
    if c != channels:
        raise ValueError(f"x has {c} channels but the packed weight takes {channels}")
    if w_scale.numel() != out:
        raise ValueError(f"w_scale has {w_scale.numel()} values: expected one per output channel "
                         f"({out})")
    if bias is not None and bias.numel() != out:
        raise ValueError(f"bias has {bias.numel()} values: expected {out}")


def _check_w(w: torch.Tensor) -> torch.Tensor:
    if not torch.equal(w, w.round()) or w.numel() and (w.min() < -128 or w.max() > 127):
        raise ValueError("weight codes must be integers in [-128, 127] (signed 8-bit)")
    return w.to(torch.int8)


def pack_conv_weight(w: torch.Tensor, stride, padding, dilation, groups: int) -> torch.Tensor:
    """oneDNN's packed form of integer weight codes ``w`` (O, C/groups, KH, KW)."""
    w8 = _check_w(w.detach())
    return torch.ops.onednn.qconv_prepack(w8, torch.ones(w8.shape[0], dtype=torch.float64), 1.0, 0,
                                          list(stride), list(padding), list(dilation), groups, None)


def conv2d(x: torch.Tensor, x_scale: float, x_zp: int, w_packed: torch.Tensor,
           w_scale: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int, relu: bool = False) -> torch.Tensor:
    """float(sum) * x_scale * w_scale[o] + bias[o] for activation codes x (N, C, H, W), then ReLU
    if ``relu`` (in oneDNN's epilogue). x: the codes in any real dtype, or uint8 holding
    code + x_zp (quantize_u8's output)."""
    _check_shapes(x, True, w_packed.shape[1] * groups, w_packed.shape[0], w_scale, bias)
    xu = _as_u8(x, x_zp).contiguous(memory_format=torch.channels_last)
    zeros = torch.zeros(w_scale.numel(), dtype=torch.long)
    return torch.ops.onednn.qconv2d_pointwise(
        xu, float(x_scale), int(x_zp), w_packed, w_scale.double(), zeros, bias, list(stride),
        list(padding), list(dilation), groups, 1.0, 0, torch.float32, "relu" if relu else "none",
        [], "")


def pack_linear_weight(w: torch.Tensor) -> torch.Tensor:
    """oneDNN's packed form of integer weight codes ``w`` (O, C)."""
    return torch.ops.onednn.qlinear_prepack(_check_w(w.detach()), None)


def linear(x: torch.Tensor, x_scale: float, x_zp: int, w_packed: torch.Tensor,
           w_scale: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """float(sum) * x_scale * w_scale[o] + bias[o] for activation codes x (..., C), then ReLU if
    ``relu``; x as in conv2d."""
    # oneDNN's packed linear weight is stored transposed: (C, O)
    _check_shapes(x, False, w_packed.shape[0], w_packed.shape[1], w_scale, bias)
    lead = x.shape[:-1]
    xu = _as_u8(x.reshape(-1, x.shape[-1]), x_zp).contiguous()
    zeros = torch.zeros(w_scale.numel(), dtype=torch.long)
    y = torch.ops.onednn.qlinear_pointwise(xu, float(x_scale), int(x_zp), w_packed,
                                           w_scale.float(), zeros, bias, 1.0, 0, torch.float32,
                                           "relu" if relu else "none", [], "")
    return y.reshape(*lead, y.shape[-1])

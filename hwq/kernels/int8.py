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

Exactness: the integer sums are exact on every CPU. oneDNN's kernels are exact by themselves
where it dispatches to VNNI (vpdpbusd) or AMX. Without them (AVX2-only or AVX-512BW-only CPUs, or
oneDNN capped below VNNI with the environment variable ONEDNN_MAX_CPU_ISA) oneDNN multiplies u8 by
s8 with vpmaddubsw, which adds two adjacent products into a saturating int16 (Intel's intrinsics
guide; oneDNN's developer guide, "Nuances of int8 computations"): exact only while
u8_max * 2 * max|w| <= 32767. Where that bound fails, conv2d and linear split each weight into
w = 2 * h + l with h = floor(w / 2) in [-64, 63] and l in {0, 1}, run oneDNN on both halves (each
within the bound for any u8) and add 2 * S_h + S_l in float32, which is exact while the sum stays
below 2^24 in magnitude (as oneDNN's own int32-to-float32 conversion). That costs two calls
instead of one; ``u8_exact_max()`` says which activation range needs one call with any weight.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import torch

__all__ = ["HAVE_ONEDNN_INT8", "cpu_flags", "onednn_max_isa", "onednn_has_vnni", "u8_exact_max",
           "Int8Weight", "quantize_u8", "pack_conv_weight", "conv2d", "pack_linear_weight", "linear"]


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


# ONEDNN_MAX_CPU_ISA values (oneDNN's "CPU Dispatcher Control" guide) and the VNNI-class CPU flags
# each lets oneDNN use. Any other value (a typo, an ISA this table does not know) counts as "no
# VNNI": the only cost of that mistake is the two-call split, where the opposite mistake would
# return wrong sums.
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_ISA_CAP_VNNI = {
    "SSE41": frozenset(), "AVX": frozenset(), "AVX2": frozenset(), "AVX512_CORE": frozenset(),
    "AVX2_VNNI": frozenset({"avx_vnni"}), "AVX2_VNNI_2": frozenset({"avx_vnni"}),
    "AVX512_CORE_VNNI": frozenset({"avx512_vnni", "avx_vnni"}),
    "AVX512_CORE_BF16": frozenset({"avx512_vnni", "avx_vnni"}),
    "AVX512_CORE_FP16": frozenset({"avx512_vnni", "avx_vnni"}),
    "AVX10_1_512": frozenset({"avx512_vnni", "avx_vnni"}),
    "AVX512_CORE_AMX": _VNNI_FLAGS, "AVX512_CORE_AMX_FP16": _VNNI_FLAGS,
    "AVX10_1_512_AMX": _VNNI_FLAGS, "AVX10_1_512_AMX_FP16": _VNNI_FLAGS,
    "AVX10_2_512": frozenset({"avx512_vnni", "avx_vnni"}), "AVX10_2_512_AMX_2": _VNNI_FLAGS,
    "DEFAULT": _VNNI_FLAGS, "ALL": _VNNI_FLAGS,
}


def onednn_max_isa() -> str | None:
    """The cap on oneDNN's instruction set from the environment (ONEDNN_MAX_CPU_ISA, or its older
    name DNNL_MAX_CPU_ISA), upper-cased; None when unset. oneDNN reads it once, when it first
    generates a kernel, so set it before the first int8 call of the process."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        v = os.environ.get(var, "").strip()
        if v:
            return v.upper()
    return None


def onednn_has_vnni() -> bool:
    """Whether oneDNN's int8 kernels use VNNI or AMX here: the CPU has one of the flags
    avx512_vnni, avx_vnni, amx_int8, and ONEDNN_MAX_CPU_ISA (if set) allows it."""
    flags = cpu_flags() & _VNNI_FLAGS
    cap = onednn_max_isa()
    if cap is not None:
        flags &= _ISA_CAP_VNNI.get(cap, frozenset())
    return bool(flags)


def u8_exact_max() -> int:
    """Largest u8 activation value for which one oneDNN call gives exact sums with any int8
    weight: 255 where oneDNN uses VNNI or AMX, else 127 (larger values take the two-call split)."""
    return 255 if onednn_has_vnni() else 127


def _needs_split(xu: torch.Tensor, w: "Int8Weight") -> bool:
    """Whether one oneDNN call could saturate: no VNNI and 2 * max(u8) * max|w| > 32767 (the
    int16 pair sum of vpmaddubsw). max(u8) costs a pass over x, made only when max|w| > 64."""
    if w.abs_max <= 64 or onednn_has_vnni():
        return False
    return xu.numel() > 0 and 2 * int(xu.max()) * w.abs_max > 32767


@dataclasses.dataclass(eq=False)
class Int8Weight:
    """oneDNN's packed form of int8 weight codes, with what exactness needs: the codes' largest
    magnitude and, packed on first need (CPUs without VNNI), the halves h = floor(w / 2) and
    l = w - 2h of the two-call split. Made by pack_conv_weight / pack_linear_weight."""

    packed: torch.Tensor            # oneDNN's opaque packed tensor
    codes: torch.Tensor             # int8 (O, C/groups, KH, KW) or (O, C)
    abs_max: int                    # max |w| over the codes
    conv: tuple | None = None       # (stride, padding, dilation, groups) for a conv weight
    halves: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def out_channels(self) -> int:
        return self.codes.shape[0]

    @property
    def in_channels(self) -> int:
        return self.codes.shape[1] * (self.conv[3] if self.conv else 1)

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """oneDNN's packed h = floor(w / 2) (in [-64, 63]) and l = w - 2h (in {0, 1})."""
        if self.halves is None:
            w = self.codes.to(torch.int16)
            h = torch.div(w, 2, rounding_mode="floor")
            self.halves = tuple(_prepack(t.to(torch.int8), self.conv) for t in (h, w - 2 * h))
        return self.halves


def _prepack(w8: torch.Tensor, conv: tuple | None) -> torch.Tensor:
    if conv is None:
        return torch.ops.onednn.qlinear_prepack(w8, None)
    stride, padding, dilation, groups = conv
    return torch.ops.onednn.qconv_prepack(w8, torch.ones(w8.shape[0], dtype=torch.float64), 1.0,
                                          0, list(stride), list(padding), list(dilation), groups,
                                          None)


def _as_u8(x: torch.Tensor, x_zp: int) -> torch.Tensor:
    """x as u8 = code + x_zp: a uint8 x is taken as that already (quantize_u8's output); other
    dtypes hold the integer codes themselves, checked (integers, inside [0, 255] after + x_zp)."""
    if isinstance(x_zp, bool) or not isinstance(x_zp, int) or not 0 <= x_zp <= 255:
        raise ValueError(f"x_zp={x_zp!r} is not accepted: expected an integer in [0, 255]")
    if x.dtype == torch.uint8:
        return x
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"x has dtype {x.dtype}: expected uint8 (code + x_zp) or a real dtype "
                        "holding the integer codes")
    if x.is_floating_point() and not bool(x.isfinite().all()):
        raise ValueError("activation codes must be integer-valued (quantize_int's codes): x has "
                         "non-finite values")
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


def _check_weight(w_packed, conv: bool) -> Int8Weight:
    if not isinstance(w_packed, Int8Weight) or (w_packed.conv is not None) != conv:
        want = "pack_conv_weight" if conv else "pack_linear_weight"
        raise TypeError(f"w_packed is a {type(w_packed).__name__}"
                        + (f" for a {'conv' if w_packed.conv else 'linear'} layer"
                           if isinstance(w_packed, Int8Weight) else "")
                        + f": expected the Int8Weight that {want} returns")
    return w_packed


def _check_scale(x_scale) -> None:
    try:
        ok = math.isfinite(float(x_scale))
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ValueError(f"x_scale={x_scale!r} is not accepted: expected a finite number")


def _check_shapes(x: torch.Tensor, conv: bool, channels: int, out: int, w_scale: torch.Tensor,
                  bias: torch.Tensor | None) -> None:
    """oneDNN reports mismatches as 'could not create a primitive descriptor': say which."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x is a {type(x).__name__}: expected a torch.Tensor of activation codes")
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


def _pair(v, param: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints >= minimum, as a tuple (what oneDNN is given: a stride of 0 kills
    the process with SIGFPE inside it, so nothing reaches oneDNN unchecked)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if isinstance(v, torch.Size):
        v = tuple(v)
    ok = (isinstance(v, (tuple, list)) and len(v) == 2
          and all(isinstance(i, int) and not isinstance(i, bool) and i >= minimum for i in v))
    if not ok:
        raise ValueError(f"{param}={v!r} is not accepted: expected an integer >= {minimum} or a "
                         "pair of them")
    return (int(v[0]), int(v[1]))


def _geometry(stride, padding, dilation, groups) -> tuple:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups={groups!r} is not accepted: expected an integer >= 1")
    return (_pair(stride, "stride", 1), _pair(padding, "padding", 0),
            _pair(dilation, "dilation", 1), groups)


def _check_w(w: torch.Tensor) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not (w.is_floating_point() or w.dtype in (
            torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"w is a {type(w).__name__}"
                        + (f" of dtype {w.dtype}" if isinstance(w, torch.Tensor) else "")
                        + ": expected a real tensor of integer weight codes")
    if 0 in w.shape:
        raise ValueError(f"w has shape {tuple(w.shape)}: expected at least one output and one "
                         "input channel (and a kernel of size >= 1)")
    if w.is_floating_point() and not bool(w.isfinite().all()):
        raise ValueError("weight codes must be integers in [-128, 127] (signed 8-bit): w has "
                         "non-finite values")
    if not torch.equal(w, w.round()) or w.numel() and (w.min() < -128 or w.max() > 127):
        raise ValueError("weight codes must be integers in [-128, 127] (signed 8-bit)")
    return w.to(torch.int8)


def _weight(w: torch.Tensor, conv: tuple | None) -> Int8Weight:
    w8 = _check_w(w.detach())
    abs_max = int(w8.to(torch.int16).abs().max()) if w8.numel() else 0
    return Int8Weight(_prepack(w8, conv), w8, abs_max, conv)


def pack_conv_weight(w: torch.Tensor, stride, padding, dilation, groups: int) -> Int8Weight:
    """oneDNN's packed form of integer weight codes ``w`` (O, C/groups, KH, KW), for the conv
    geometry given (stride and dilation >= 1, padding >= 0, groups >= 1 dividing O)."""
    geom = _geometry(stride, padding, dilation, groups)
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        raise ValueError(f"w has shape {tuple(getattr(w, 'shape', ()))}: expected "
                         "(O, C/groups, KH, KW)")
    if w.shape[0] % groups:
        raise ValueError(f"w has {w.shape[0]} output channels, not divisible by groups={groups}")
    return _weight(w, geom)


def _split_epilogue(s: torch.Tensor, x_scale: float, w_scale: torch.Tensor, bias, relu: bool,
                    shape) -> torch.Tensor:
    """The float epilogue of oneDNN, in torch, on the exact sums of the two-call split."""
    y = s * (float(x_scale) * w_scale.float()).reshape(shape)
    if bias is not None:
        y = y + bias.float().reshape(shape)
    return torch.relu(y) if relu else y


def conv2d(x: torch.Tensor, x_scale: float, x_zp: int, w_packed: Int8Weight,
           w_scale: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int, relu: bool = False) -> torch.Tensor:
    """float(sum) * x_scale * w_scale[o] + bias[o] for activation codes x (N, C, H, W), then ReLU
    if ``relu`` (in oneDNN's epilogue). x: the codes in any real dtype, or uint8 holding
    code + x_zp (quantize_u8's output). Exact sums on every CPU (module docstring)."""
    wp = _check_weight(w_packed, True)
    geom = _geometry(stride, padding, dilation, groups)
    if geom != wp.conv:
        raise ValueError(f"(stride, padding, dilation, groups)={geom} differ from {wp.conv}, "
                         "the geometry w_packed was packed for: pack it with the conv's own")
    _check_shapes(x, True, wp.in_channels, wp.out_channels, w_scale, bias)
    _check_scale(x_scale)
    (ph, pw), (dh, dw) = geom[1:3]
    for size, pad, dil, k, name in ((x.shape[2], ph, dh, wp.codes.shape[2], "height"),
                                    (x.shape[3], pw, dw, wp.codes.shape[3], "width")):
        if size + 2 * pad < dil * (k - 1) + 1:
            raise ValueError(f"x has {name} {size}, which with padding={pad} is smaller than the "
                             f"dilated kernel ({dil * (k - 1) + 1})")
    xu = _as_u8(x, x_zp).contiguous(memory_format=torch.channels_last)
    o = wp.out_channels
    zeros = torch.zeros(o, dtype=torch.long)

    def run(packed, xs, ws, b, act):
        return torch.ops.onednn.qconv2d_pointwise(
            xu, xs, int(x_zp), packed, ws.double(), zeros, b, list(stride), list(padding),
            list(dilation), groups, 1.0, 0, torch.float32, act, [], "")

    if not _needs_split(xu, wp):
        return run(wp.packed, float(x_scale), w_scale, bias, "relu" if relu else "none")
    h, l = wp.split()  # the sums 2 * S_h + S_l, then the epilogue
    ones = torch.ones(o)
    s = run(h, 1.0, ones, None, "none").mul_(2).add_(run(l, 1.0, ones, None, "none"))
    return _split_epilogue(s, x_scale, w_scale, bias, relu, (1, -1, 1, 1))


def pack_linear_weight(w: torch.Tensor) -> Int8Weight:
    """oneDNN's packed form of integer weight codes ``w`` (O, C)."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError(f"w has shape {tuple(getattr(w, 'shape', ()))}: expected (O, C)")
    return _weight(w, None)


def linear(x: torch.Tensor, x_scale: float, x_zp: int, w_packed: Int8Weight,
           w_scale: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """float(sum) * x_scale * w_scale[o] + bias[o] for activation codes x (..., C), then ReLU if
    ``relu``; x as in conv2d. Exact sums on every CPU (module docstring)."""
    wp = _check_weight(w_packed, False)
    _check_shapes(x, False, wp.in_channels, wp.out_channels, w_scale, bias)
    _check_scale(x_scale)
    lead = x.shape[:-1]
    xu = _as_u8(x.reshape(-1, x.shape[-1]), x_zp).contiguous()
    o = wp.out_channels
    zeros = torch.zeros(o, dtype=torch.long)

    def run(packed, xs, ws, b, act):
        return torch.ops.onednn.qlinear_pointwise(xu, xs, int(x_zp), packed, ws.float(), zeros, b,
                                                  1.0, 0, torch.float32, act, [], "")

    if not _needs_split(xu, wp):
        y = run(wp.packed, float(x_scale), w_scale, bias, "relu" if relu else "none")
    else:
        h, l = wp.split()
        ones = torch.ones(o)
        s = run(h, 1.0, ones, None, "none").mul_(2).add_(run(l, 1.0, ones, None, "none"))
        y = _split_epilogue(s, x_scale, w_scale, bias, relu, (1, -1))
    return y.reshape(*lead, y.shape[-1])

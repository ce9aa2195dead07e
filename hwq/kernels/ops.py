"""The public packed ops: bit packing, binary (XNOR-popcount) and bit-serial conv2d / linear.

Each op takes the arguments of torch.nn.functional.conv2d / linear and returns the exact integer
sums as int32 (conv2d: (N, O, OH, OW) in channels-last memory, which the kernels write directly;
linear: (..., O)); a ``bias`` is added afterwards with torch's type promotion (an integer bias keeps
integers, a float bias gives float32). Values:
  binary     x and w are +/-1 (bit 1 = -1);
  bit-serial x is an unsigned a_bits-bit integer (0 .. 2^a_bits - 1) and w a signed two's-complement
             w_bits-bit integer (-2^(w_bits-1) .. 2^(w_bits-1) - 1; w_bits = 1 means {-1, 0}),
             a_bits and w_bits from 1 to 8.
Zero padding means the value 0, exactly as in torch's conv2d. x and w may also be PackedTensors
(pack_activations / pack_weights), so a weight is packed once and reused.

With the C++ extension the ops run torch.ops.hwq.* on the fastest kernel path of this CPU (see
current_isa / use_isa); without it they run hwq.kernels.reference and warn once.
"""
from __future__ import annotations

import dataclasses

import torch

from . import _ext, reference
from .out_mode import OutMode

_VALUE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
                 torch.int16, torch.int32, torch.int64)


@dataclasses.dataclass(frozen=True)
class PackedTensor:
    """Bits packed along channels in int64 words, with what is needed to read them back.

    data: int64, activations (N, H, W, groups, planes, words per group), weights
    (groups, planes, panels, KH*KW*words, 8) (layouts in hwq/kernels/reference.py).
    bits: None for binary (+/-1), else bits per value (activations unsigned, weights signed).
    channels: input channels C; out_channels and kernel_size: weights only.
    """

    data: torch.Tensor
    bits: int | None
    channels: int
    groups: int
    kind: str  # "act" or "weight"
    out_channels: int = 0
    kernel_size: tuple[int, int] = (1, 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """The unpacked shape: (N, C, H, W) or (O, C/groups, KH, KW)."""
        d = self.data.shape
        if self.kind == "act":
            return (d[0], self.channels, d[1], d[2])
        return (self.out_channels, self.channels // self.groups) + tuple(self.kernel_size)

    def unpack(self) -> torch.Tensor:
        """float32 values: +/-1, unsigned (activations) or signed (weights) integers."""
        if self.kind == "act":
            return reference.unpack_activations_ref(self.data, self.channels, self.bits)
        return reference.unpack_weights_ref(self.data, self.out_channels,
                                            self.channels // self.groups, self.kernel_size,
                                            self.bits)


# ---- argument checks --------------------------------------------------------------------------

def _check_tensor(t, param: str, dims: tuple[int, ...], layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{param} is a {type(t).__name__}: expected a torch.Tensor {layout}")
    if t.device.type != "cpu":
        raise ValueError(f"{param} is on device '{t.device}': the hwq CPU kernels accept CPU "
                         "tensors only (move it with .cpu())")
    if t.dtype not in _VALUE_DTYPES:
        raise TypeError(f"{param} has dtype {t.dtype}: expected a real floating or integer dtype "
                        "holding the values (e.g. torch.float32)")
    if t.dim() not in dims:
        raise ValueError(f"{param} has shape {tuple(t.shape)}: expected {layout}")


def _check_bits(bits, param: str) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"{param}={bits!r} is not accepted: expected an integer from 1 to 8")


def _check_values(t: torch.Tensor, param: str, lo: int, hi: int, what: str) -> None:
    """Refuse values the kernels would silently misread (a packed code keeps only the low bits)."""
    if t.numel() == 0:
        return
    if t.is_floating_point() and not bool(t.isfinite().all()):
        bad = t[~t.isfinite()].flatten()[:4].tolist()
        raise ValueError(f"{param} has non-finite values (e.g. {bad}): expected {what}")
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise ValueError(f"{param} has non-integer values: expected {what}")
    tmin, tmax = int(t.min()), int(t.max())
    if tmin < lo or tmax > hi:
        raise ValueError(f"{param} has values in [{tmin}, {tmax}]: expected {what} "
                         f"(integers from {lo} to {hi})")


def _check_binary_values(t: torch.Tensor, param: str) -> None:
    if t.numel() and not bool((t.abs() == 1).all()):
        bad = t[t.abs() != 1].flatten()[:4].tolist()
        raise ValueError(f"{param} has values other than +1 and -1 (e.g. {bad}): binary ops take "
                         "+/-1 tensors (binarize with hwq.quant's 'binary' quantizer, sign(0) = +1)")


def _pair(v, param: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    ok = (isinstance(v, (tuple, list)) and len(v) == 2
          and all(isinstance(i, int) and not isinstance(i, bool) and i >= minimum for i in v))
    if not ok:
        raise ValueError(f"{param}={v!r} is not accepted: expected an integer >= {minimum} or a "
                         f"pair of them")
    return (int(v[0]), int(v[1]))


def _check_groups(groups) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups={groups!r} is not accepted: expected an integer >= 1")
    return groups


# ---- packing ----------------------------------------------------------------------------------

def pack_activations(x: torch.Tensor, a_bits: int | None = None, groups: int = 1) -> PackedTensor:
    """Pack an (N, C, H, W) activation along channels (NHWC, 64-bit words; any memory format).

    a_bits None: binary, bit 1 where x < 0, so this also binarizes a real tensor with sign(0) = +1.
    a_bits 1..8: x must hold unsigned integers 0 .. 2^a_bits - 1, packed as a_bits bit planes.
    groups: channels of each group start a new word (the conv's groups).
    """
    _check_tensor(x, "x", (4,), "(N, C, H, W)")
    groups = _check_groups(groups)
    if x.shape[1] % groups:
        raise ValueError(f"x has {x.shape[1]} channels, not divisible by groups={groups}")
    if a_bits is not None:
        _check_bits(a_bits, "a_bits")
        _check_values(x, "x", 0, 2 ** a_bits - 1, f"unsigned {a_bits}-bit codes")
    binary = a_bits is None
    if _ext.HAVE_EXTENSION:
        data = torch.ops.hwq.pack_activations(x, 1 if binary else a_bits, binary, groups)
    else:
        _ext.warn_fallback_once()
        data = reference.pack_activations_ref(x, a_bits, groups)
    return PackedTensor(data, a_bits, x.shape[1], groups, "act")


def pack_weights(w: torch.Tensor, w_bits: int | None = None, groups: int = 1) -> PackedTensor:
    """Pack an (O, C/groups, KH, KW) weight into 8-channel panels of 64-bit words.

    w_bits None: binary, bit 1 where w < 0 (+/-1 weights; any real w is binarized with sign(0) = +1).
    w_bits 1..8: w must hold signed integers -2^(w_bits-1) .. 2^(w_bits-1) - 1 (two's complement).
    """
    _check_tensor(w, "w", (4,), "(O, C/groups, KH, KW)")
    groups = _check_groups(groups)
    if w.shape[0] % groups:
        raise ValueError(f"w has {w.shape[0]} output channels, not divisible by groups={groups}")
    if w.shape[2] * w.shape[3] > 64:
        raise ValueError(f"w has kernel size {tuple(w.shape[2:])}: the kernels accept KH * KW <= 64")
    if w_bits is not None:
        _check_bits(w_bits, "w_bits")
        half = 2 ** (w_bits - 1)
        _check_values(w, "w", -half, half - 1, f"signed {w_bits}-bit codes")
    binary = w_bits is None
    if _ext.HAVE_EXTENSION:
        data = torch.ops.hwq.pack_weights(w, 1 if binary else w_bits, binary, groups)
    else:
        _ext.warn_fallback_once()
        data = reference.pack_weights_ref(w, w_bits, groups)
    return PackedTensor(data, w_bits, w.shape[1] * groups, groups, "weight", w.shape[0],
                        (w.shape[2], w.shape[3]))


# ---- convolution ------------------------------------------------------------------------------

def _conv(x, w, a_bits, w_bits, bias, stride, padding, dilation, groups, binary):
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    groups = _check_groups(groups)
    if not binary:
        _check_bits(a_bits, "a_bits")
        _check_bits(w_bits, "w_bits")
    want_a = None if binary else a_bits
    want_w = None if binary else w_bits

    if isinstance(w, PackedTensor):
        if w.kind != "weight" or w.bits != want_w or w.groups != groups:
            raise ValueError(f"w is a PackedTensor of kind={w.kind!r}, bits={w.bits}, groups="
                             f"{w.groups}: expected kind='weight', bits={want_w}, groups={groups}")
        wp = w
    else:
        _check_tensor(w, "w", (4,), "(O, C/groups, KH, KW)")
        if binary:
            _check_binary_values(w, "w")
        wp = None
    w_shape = w.shape
    if isinstance(x, PackedTensor):
        if x.kind != "act" or x.bits != want_a or x.groups != groups:
            raise ValueError(f"x is a PackedTensor of kind={x.kind!r}, bits={x.bits}, groups="
                             f"{x.groups}: expected kind='act', bits={want_a}, groups={groups}")
    else:
        _check_tensor(x, "x", (4,), "(N, C, H, W)")
        if binary:
            _check_binary_values(x, "x")
    x_shape = x.shape
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(f"x has {x_shape[1]} channels but w expects {w_shape[1] * groups} "
                         f"(w.shape[1]={w_shape[1]} * groups={groups})")
    if w_shape[0] % groups:
        raise ValueError(f"w has {w_shape[0]} output channels, not divisible by groups={groups}")
    kh, kw = w_shape[2], w_shape[3]
    for d, name in ((0, "height"), (1, "width")):
        span = dilation[d] * ((kh, kw)[d] - 1) + 1
        if x_shape[2 + d] + 2 * padding[d] < span:
            raise ValueError(f"x has {name} {x_shape[2 + d]}, which with padding={padding[d]} is "
                             f"smaller than the dilated kernel ({span})")

    if _ext.HAVE_EXTENSION:
        if wp is None:
            wp = pack_weights(w, want_w, groups)
        xp = x if isinstance(x, PackedTensor) else pack_activations(x, want_a, groups)
        y = torch.ops.hwq.conv2d_packed(xp.data, wp.data, x_shape[1], w_shape[0], [kh, kw],
                                        1 if binary else a_bits, 1 if binary else w_bits, binary,
                                        list(stride), list(padding), list(dilation), groups,
                                        None, None, OutMode.INT32)
    else:
        _ext.warn_fallback_once()
        xv = x.unpack() if isinstance(x, PackedTensor) else x
        if not binary and not isinstance(x, PackedTensor):
            _check_values(xv, "x", 0, 2 ** a_bits - 1, f"unsigned {a_bits}-bit codes")
        wv = w.unpack() if isinstance(w, PackedTensor) else w
        if not binary and not isinstance(w, PackedTensor):
            half = 2 ** (w_bits - 1)
            _check_values(wv, "w", -half, half - 1, f"signed {w_bits}-bit codes")
        if binary:
            y = reference.binary_conv2d_ref(xv, wv, stride, padding, dilation, groups)
        else:
            y = reference.bitserial_conv2d_ref(xv, wv, a_bits, w_bits, stride, padding, dilation,
                                               groups)
        y = y.to(torch.int32)
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (w_shape[0],):
            raise ValueError(f"bias has shape {getattr(bias, 'shape', type(bias).__name__)}: "
                             f"expected a tensor of shape ({w_shape[0]},)")
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def binary_conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """conv2d of +/-1 x (N, C, H, W) and w (O, C/groups, KH, KW) as exact int32 sums (XNOR-popcount).
    Zero padding contributes 0, as in torch.nn.functional.conv2d."""
    return _conv(x, w, None, None, bias, stride, padding, dilation, groups, True)


def bitserial_conv2d(x, w, a_bits: int, w_bits: int, bias=None, stride=1, padding=0, dilation=1,
                     groups=1) -> torch.Tensor:
    """conv2d of unsigned a_bits-bit integer x and signed two's-complement w_bits-bit integer w as
    exact int32 sums, computed as sum_ij 2^(i+j) (+/-) popcount(x_i AND w_j) over bit planes."""
    return _conv(x, w, a_bits, w_bits, bias, stride, padding, dilation, groups, False)


def _linear(x, w, a_bits, w_bits, bias, binary):
    if isinstance(w, torch.Tensor):
        _check_tensor(w, "w", (2,), "(O, C)")
        w4 = w[:, :, None, None]
    elif isinstance(w, PackedTensor) and w.kind == "weight" and w.kernel_size == (1, 1):
        w4 = w
    else:
        raise TypeError(f"w is a {type(w).__name__}: expected an (O, C) tensor or a PackedTensor "
                        "from pack_weights(w[:, :, None, None])")
    _check_tensor(x, "x", tuple(range(1, 9)), "(..., C)")
    lead = x.shape[:-1]
    x4 = x.reshape(lead.numel(), x.shape[-1], 1, 1)  # explicit rows: C may be 0
    y = _conv(x4, w4, a_bits, w_bits, None, 1, 0, 1, 1, binary)
    y = y.reshape(*lead, y.shape[1])
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (y.shape[-1],):
            raise ValueError(f"bias has shape {getattr(bias, 'shape', type(bias).__name__)}: "
                             f"expected a tensor of shape ({y.shape[-1]},)")
        y = y + bias
    return y


def binary_linear(x, w, bias=None) -> torch.Tensor:
    """linear of +/-1 x (..., C) and w (O, C) as exact int32 sums (..., O)."""
    return _linear(x, w, None, None, bias, True)


def bitserial_linear(x, w, a_bits: int, w_bits: int, bias=None) -> torch.Tensor:
    """linear of unsigned a_bits-bit x (..., C) and signed w_bits-bit w (O, C): exact int32 sums."""
    return _linear(x, w, a_bits, w_bits, bias, False)


__all__ = ["PackedTensor", "pack_activations", "pack_weights", "binary_conv2d", "bitserial_conv2d",
           "binary_linear", "bitserial_linear"]

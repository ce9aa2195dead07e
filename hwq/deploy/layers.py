"""The deployed layers: a QuantConv2d / QuantLinear whose weights are quantized and packed once and
whose sums run an integer kernel, hwq's packed kernels (Packed*) or oneDNN's int8 ones (Int8*).

A deployed layer computes the exact integer sum S = sum(x_codes * w_codes) and returns
float(S) * (a_scale * w_scale[o] * bn_scale[o]) + out_bias[o], where a following BatchNorm2d (eval
statistics) may have been folded into bn_scale and out_bias (``fold_bn``). So in eval mode its
outputs equal the QAT layer's up to float rounding: the integer parts are exact, the scales are
applied in a different order. Deployed layers are for inference: they stay in eval mode whatever
train() says.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ..kernels import OutMode, int8
from ..nn import QuantConv2d, QuantLayer, QuantLinear
from .nan import _has_nan, _without_nan


def is_packed_signs(x: torch.Tensor) -> bool:
    """Whether a packed layer's input ``x`` is the sign bits a chained layer handed on
    (conv2d_packed's OutMode.PACKED_SIGN output: int64 (N, OH, OW, 1, 1, words), the layout of
    binary packed activations) rather than a float activation, which is never int64."""
    return x.dtype == torch.int64 and x.dim() == 6


class DeployedLayer(nn.Module):
    """What every deployed layer holds: the QAT activation quantizer (it computes the activation
    codes exactly as in training), the weight scale, and a per-channel output scale and bias into
    which a following batch norm is folded. Subclasses add a kernel (packed or int8) and a shape
    (conv or linear).

    act_mode: "binary" (+/-1 activations, sign(0) = +1), "unsigned" or "signed" integer codes of
    a_bits bits; w_bits: bits of the two's-complement weight codes (1 for binary weights on the
    XNOR path)."""

    fuse_relu = False  # set by deploy: a ReLU that alone consumed the output runs in the epilogue

    def __init__(self, layer: QuantLayer, act_mode: str, a_bits: int, w_bits: int, impl: str,
                 groups: int):
        super().__init__()
        self.act_quant = layer.act_quant
        self.act_mode, self.a_bits, self.w_bits, self.impl = act_mode, a_bits, w_bits, impl
        self.binary = act_mode == "binary"
        self.groups = groups
        with torch.no_grad():
            codes, w_scale = layer.weight_quant.quantize_int(layer.weight.detach())
        o = codes.shape[0]
        self.in_channels = codes.shape[1] * groups
        self.out_channels = o
        w4 = codes if codes.dim() == 4 else codes[:, :, None, None]
        self.kernel_size = (w4.shape[2], w4.shape[3])
        self.register_buffer("w_scale", torch.as_tensor(w_scale, dtype=torch.float32)
                             .reshape(-1).expand(o).clone())
        bias = layer.bias.detach().float() if layer.bias is not None else torch.zeros(o)
        self.register_buffer("bn_scale", torch.ones(o))  # multiplies the output (folded BN)
        self.register_buffer("out_bias", bias.clone())
        self.bn_name = ""
        self._store_weights(w4)

    def _store_weights(self, w4: torch.Tensor) -> None:
        """Keep the (O, C/groups, KH, KW) weight codes in the form the kernel reads."""
        raise NotImplementedError

    def train(self, mode: bool = True):
        """Deployed layers are inference-only: they (and their activation quantizer, whose range
        would otherwise move with every batch) stay in eval mode."""
        return super().train(False)

    def _nan_where(self, x: torch.Tensor, y: torch.Tensor, conv_args=None) -> torch.Tensor:
        """``y`` with NaN wherever the QAT layer's output is NaN: where its receptive field holds a
        NaN of ``x`` (a conv of the NaN mask with ones counts them exactly). conv_args: (stride,
        padding, dilation) for a conv, None for a linear layer."""
        nan = torch.isnan(x)
        if conv_args is None:
            hit = nan.any(-1, keepdim=True)
        else:
            ones = torch.ones(self.out_channels, self.in_channels // self.groups,
                              *self.kernel_size)
            hit = torch.nn.functional.conv2d(nan.float(), ones, None, *conv_args, self.groups) > 0
        return torch.where(hit, torch.full((), float("nan")), y)

    def fold_bn(self, bn: nn.BatchNorm2d, name: str) -> None:
        """y -> bn(y) in eval mode, as y * k + (beta - mean * k) with k = gamma / sqrt(var + eps)."""
        with torch.no_grad():
            k = (bn.weight if bn.affine else torch.ones_like(bn.running_mean)) / torch.sqrt(
                bn.running_var + bn.eps)
            beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            self.out_bias.copy_((self.out_bias - bn.running_mean) * k + beta)
            self.bn_scale.mul_(k)
        self.bn_name = name

    def _conv_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, impl={self.impl!r}"
                + (f", bn={self.bn_name!r} folded" if self.bn_name else ""))


class _PackedKernel(DeployedLayer):
    """hwq's own kernels (hwq.kernels): XNOR-popcount or bit-serial on bit-packed weights."""

    packed_output = False  # set by deploy: hand sign bits straight to the next binary layer

    def _store_weights(self, w4: torch.Tensor) -> None:
        packed = kernels.pack_weights(w4.float(), None if self.binary else self.w_bits, self.groups)
        self.register_buffer("w_packed", packed.data)

    def _packed_input(self, x4: torch.Tensor):
        """(packed activation codes, activation scale)."""
        if is_packed_signs(x4):
            return x4, 1.0
        if self.binary:
            # Sign bits straight from the float input: bit 1 where x < 0, so sign(0) = +1 as in
            # hwq's binary quantizer.
            return torch.ops.hwq.pack_activations(x4, 1, True, self.groups), 1.0
        codes, a_scale = self.act_quant.quantize_int(x4)
        return torch.ops.hwq.pack_activations(codes, self.a_bits, False, self.groups), a_scale

    def _out_mode(self, packed_output: bool) -> OutMode:
        if packed_output:
            return OutMode.PACKED_SIGN
        return OutMode.FLOAT_RELU if self.fuse_relu else OutMode.FLOAT

    def _conv(self, x4: torch.Tensor, stride, padding, dilation,
              packed_output: bool = False) -> torch.Tensor:
        px, a_scale = self._packed_input(x4)
        scale = (self.w_scale * a_scale * self.bn_scale).float()
        return torch.ops.hwq.conv2d_packed(
            px, self.w_packed, self.in_channels, self.out_channels, list(self.kernel_size),
            self.a_bits, self.w_bits, self.binary, list(stride), list(padding), list(dilation),
            self.groups, scale, self.out_bias, self._out_mode(packed_output))

    def _conv_nan_aware(self, x4: torch.Tensor, stride, padding, dilation) -> torch.Tensor:
        if not _has_nan(x4):
            return self._conv(x4, stride, padding, dilation, self.packed_output)
        # NaN: float output (sign bits cannot hold NaN; a chained binary layer packs its float
        # input itself, and the modules deploy removed between them keep signs and NaN), NaN
        # where the QAT layer's output is NaN.
        y = self._conv(_without_nan(x4), stride, padding, dilation)
        return self._nan_where(x4, y, (stride, padding, dilation))


class _Int8Kernel(DeployedLayer):
    """oneDNN's u8 x s8 kernels (hwq.kernels.int8): weight codes as int8, activations as
    u8 = code + zero point; the prepacked oneDNN weight is made on first use and not saved (it is
    an opaque tensor that cannot be copied or serialized)."""

    def _store_weights(self, w4: torch.Tensor) -> None:
        self.register_buffer("w_codes", w4.to(torch.int8))
        self._onednn = None
        # binary activations are the codes -1/+1 (x_zp = 1), signed ones 2^(a_bits-1), unsigned 0
        self.x_zp = 1 if self.binary else (2 ** (self.a_bits - 1) if self.act_mode == "signed" else 0)

    def _codes(self, x: torch.Tensor):
        """(u8 = code + x_zp, activation scale): the QAT quantizer's codes, in one pass."""
        if self.binary:  # +1 where x >= 0 (sign(0) = +1), as hwq's binary quantizer
            return torch.where(x < 0, 0, 2).to(torch.uint8), 1.0  # code + 1
        step, lo, hi = self.act_quant.step_and_range(x)
        step = step.detach()  # LSQ's learned step is a parameter
        return int8.quantize_u8(x, step, lo, hi, self.x_zp), step

    def _scale(self) -> torch.Tensor:
        return self.w_scale * self.bn_scale

    def _nan_aware(self, x: torch.Tensor, forward, conv_args) -> torch.Tensor:
        """forward(x), with NaN where the QAT layer gives NaN. Multi-bit codes: quantize_u8 finds
        NaN in its own pass (it refuses them), so a finite input costs no extra read."""
        if not self.binary:
            try:
                return forward(x)
            except ValueError as e:
                if "NaN" not in str(e) or not bool(torch.isnan(x).any()):
                    raise
        elif not _has_nan(x):
            return forward(x)
        return self._nan_where(x, forward(_without_nan(x)), conv_args)

    def __getstate__(self):
        state = dict(self.__dict__)  # copy.deepcopy and pickle: without the opaque oneDNN tensor
        state["_onednn"] = None
        return state

    def _pack_onednn_weight(self) -> torch.Tensor:
        """oneDNN's prepacked weight for this layer's shape (conv or linear)."""
        raise NotImplementedError

    def _packed_weight(self) -> torch.Tensor:
        if self._onednn is None:
            self._onednn = self._pack_onednn_weight()
        return self._onednn

    def _load_from_state_dict(self, *args, **kwargs):
        self._onednn = None  # weights may change: pack again on next use
        super()._load_from_state_dict(*args, **kwargs)


class _Fp32SumKernel(DeployedLayer):
    """Exact integer sums from torch's float32 conv / matmul on the integer codes: every product
    and partial sum is an integer below 2^24 (deploy offers this only where the layer's bound
    K * max|x| * max|w| is), so float32 holds each exactly and the order of the additions does
    not matter; then the float epilogue of the packed layers, float(S) * scale[o] + bias[o] (and
    ReLU), in one pass (torch.ops.hwq.channel_affine_). For layers no integer kernel takes on
    this CPU, e.g. a ResNet's first conv (3 input channels, 8-bit activations) where oneDNN's
    int8 sums are not exact without VNNI: it still folds the batch norm and the ReLU."""

    def _store_weights(self, w4: torch.Tensor) -> None:
        self.register_buffer("w_codes", w4.float().contiguous(memory_format=torch.channels_last))

    def _sums(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        codes, a_scale = self.act_quant.quantize_int(x)
        s = self._sums(codes.float())
        scale = (self.w_scale * a_scale * self.bn_scale).float()
        return torch.ops.hwq.channel_affine_(s, scale, self.out_bias, self.fuse_relu)


class PackedConv2d(_PackedKernel):
    """A QuantConv2d running hwq.kernels; output (N, O, OH, OW) float32 in channels-last memory."""

    def __init__(self, conv: QuantConv2d, act_mode: str, a_bits: int, w_bits: int, impl: str):
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        super().__init__(conv, act_mode, a_bits, w_bits, impl, conv.groups)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None,
                residual_relu: bool = False) -> torch.Tensor:
        """The conv; with ``residual`` (deploy's rewrite of a residual block, graph.residual_adds)
        ``relu(conv(x) + residual)`` (``conv(x) + residual`` without residual_relu), the add and
        ReLU done in the epilogue (torch.ops.hwq.conv2d_packed_add) when the residual is a float32
        tensor of the output's shape, else in torch, with the same float32 rounding either way."""
        if residual is None:
            return self._conv_nan_aware(x, self.stride, self.padding, self.dilation)
        if (self.packed_output or self.fuse_relu or _has_nan(x)
                or residual.dtype != torch.float32 or residual.shape != self._out_shape(x)):
            y = self._conv_nan_aware(x, self.stride, self.padding, self.dilation) + residual
            return torch.relu(y) if residual_relu else y
        px, a_scale = self._packed_input(x)
        scale = (self.w_scale * a_scale * self.bn_scale).float()
        return torch.ops.hwq.conv2d_packed_add(
            px, self.w_packed, self.in_channels, self.out_channels, list(self.kernel_size),
            self.a_bits, self.w_bits, self.binary, list(self.stride), list(self.padding),
            list(self.dilation), self.groups, scale, self.out_bias, residual, residual_relu)

    def _out_shape(self, x: torch.Tensor) -> torch.Size:
        """(N, O, OH, OW) of this conv for the input x (float NCHW or packed sign bits NHW...)."""
        h, w = (x.shape[1], x.shape[2]) if is_packed_signs(x) else (x.shape[2], x.shape[3])
        o = [(size + 2 * p - d * (k - 1) - 1) // st + 1 for size, p, d, k, st in
             zip((h, w), self.padding, self.dilation, self.kernel_size, self.stride)]
        return torch.Size((x.shape[0], self.out_channels, *o))

    def extra_repr(self) -> str:
        return self._conv_repr() + (", packed sign output" if self.packed_output else "") + (
            ", relu fused" if self.fuse_relu else "")


class PackedLinear(_PackedKernel):
    """A QuantLinear running hwq.kernels (as a 1x1 convolution over the rows)."""

    def __init__(self, linear: QuantLinear, act_mode: str, a_bits: int, w_bits: int, impl: str):
        super().__init__(linear, act_mode, a_bits, w_bits, impl, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._conv_nan_aware(x.reshape(-1, x.shape[-1], 1, 1), (1, 1), (0, 0), (1, 1))
        return y.reshape(*lead, self.out_channels)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl!r}"


class Int8Conv2d(_Int8Kernel):
    """A QuantConv2d running oneDNN's int8 conv; output float32 in channels-last memory."""

    def __init__(self, conv: QuantConv2d, act_mode: str, a_bits: int, w_bits: int, impl: str):
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        super().__init__(conv, act_mode, a_bits, w_bits, impl, conv.groups)

    def _pack_onednn_weight(self) -> torch.Tensor:
        return int8.pack_conv_weight(self.w_codes, self.stride, self.padding, self.dilation,
                                     self.groups)

    # Eager under torch.compile (a graph break): Inductor's int8 lowering wants oneDNN's packed
    # weight as a graph constant, which a weight packed on first use is not.
    @torch.compiler.disable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._nan_aware(x, self._forward, (self.stride, self.padding, self.dilation))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._packed_weight()
        u8, a_scale = self._codes(x)
        return int8.conv2d(u8, float(a_scale), self.x_zp, w, self._scale(),
                           self.out_bias, self.stride, self.padding, self.dilation, self.groups,
                           relu=self.fuse_relu)

    def extra_repr(self) -> str:
        return self._conv_repr()


class Int8Linear(_Int8Kernel):
    """A QuantLinear running oneDNN's int8 linear."""

    def __init__(self, linear: QuantLinear, act_mode: str, a_bits: int, w_bits: int, impl: str):
        super().__init__(linear, act_mode, a_bits, w_bits, impl, 1)

    def _pack_onednn_weight(self) -> torch.Tensor:
        return int8.pack_linear_weight(self.w_codes[:, :, 0, 0])

    @torch.compiler.disable  # as Int8Conv2d.forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._nan_aware(x, self._forward, None)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._packed_weight()
        u8, a_scale = self._codes(x)
        return int8.linear(u8, float(a_scale), self.x_zp, w, self._scale(),
                           self.out_bias, relu=self.fuse_relu)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl!r}"


class Fp32SumConv2d(_Fp32SumKernel):
    """A QuantConv2d whose exact integer sums come from torch's float32 conv (oneDNN) on the codes;
    output (N, O, OH, OW) float32 in channels-last memory."""

    def __init__(self, conv: QuantConv2d, act_mode: str, a_bits: int, w_bits: int, impl: str):
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        super().__init__(conv, act_mode, a_bits, w_bits, impl, conv.groups)

    def _sums(self, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.contiguous(memory_format=torch.channels_last)
        # oneDNN's direct convolution (deploy offers this layer only where torch has it), not
        # F.conv2d, whose backend choice may include NNPACK's Winograd, which is not exact
        s = torch.ops.aten.mkldnn_convolution(codes, self.w_codes, None, list(self.padding),
                                              list(self.stride), list(self.dilation), self.groups)
        return s.contiguous(memory_format=torch.channels_last)  # no copy when it already is

    # Eager under torch.compile (a graph break): aten.mkldnn_convolution has no fake kernel.
    @torch.compiler.disable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _has_nan(x):
            return self._run(x)
        conv_args = (self.stride, self.padding, self.dilation)
        return self._nan_where(x, self._run(_without_nan(x)), conv_args)

    def extra_repr(self) -> str:
        return self._conv_repr() + (", relu fused" if self.fuse_relu else "")


class Fp32SumLinear(_Fp32SumKernel):
    """A QuantLinear whose exact integer sums come from torch's float32 matmul on the codes."""

    def __init__(self, linear: QuantLinear, act_mode: str, a_bits: int, w_bits: int, impl: str):
        super().__init__(linear, act_mode, a_bits, w_bits, impl, 1)

    def _sums(self, codes: torch.Tensor) -> torch.Tensor:
        lead = codes.shape[:-1]
        s = codes.reshape(-1, codes.shape[-1]) @ self.w_codes[:, :, 0, 0].t()
        return s.contiguous().reshape(*lead, self.out_channels)

    @torch.compiler.disable  # as Fp32SumConv2d.forward (torch.compile of channel_affine_)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _has_nan(x):
            return self._run_2d(x)
        return self._nan_where(x, self._run_2d(_without_nan(x)))

    def _run_2d(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self._run(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_channels)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl!r}"


# (kernel family, is a conv) -> the deployed layer class
CLASSES = {("packed", True): PackedConv2d, ("packed", False): PackedLinear,
           ("int8", True): Int8Conv2d, ("int8", False): Int8Linear,
           ("fp32", True): Fp32SumConv2d, ("fp32", False): Fp32SumLinear}

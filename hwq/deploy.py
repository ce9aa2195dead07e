"""hwq.deploy: a trained QAT model -> an inference model whose quantized layers run the packed CPU
kernels (hwq.kernels), weights packed once, batch norm folded into a per-channel epilogue.

Per layer (QuantConv2d / QuantLinear, in eval mode):
  binary weights and binary activations        -> "binary": XNOR-popcount (hwq.kernels).
  unsigned <= 8-bit activation codes (fixed, lsq, pact) and weights whose integer codes fit a signed
  <= 8-bit two's complement (fixed, lsq, ternary = 2 bits, binary = 2 bits)
                                                -> "bitserial WxAy", when x * y <= max_plane_products.
  anything else (float or signed activations, pow2 weights wider than 8 bits, a bit-serial product
  too costly to beat the float layer, padding modes other than zeros) stays the QAT layer and is
  listed in the report with the reason.
The deployed layer computes the exact integer sum S = sum(x_codes * w_codes) and returns
float(S) * (a_scale * w_scale[o]) + bias[o], where a following BatchNorm2d (eval statistics) has been
folded into the scale and bias: k = gamma / sqrt(var + eps), scale *= k, bias = (bias - mean) * k + beta.
So in eval mode its outputs equal the QAT model's up to float rounding: the integer parts are exact,
the scales are applied in a different order.

Batch norm is found with torch.fx (a conv whose only user is a BatchNorm2d); a model fx cannot trace
is deployed without folding (each BN then runs as before) and the report says so.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import fx, nn

from . import kernels
from .nn import QuantConv2d, QuantLayer, QuantLinear

ACT_KINDS = ("fixed", "lsq", "pact")
DEFAULT_MAX_PLANE_PRODUCTS = 4  # W2A2, W1A4, W4A1: beyond this the float layer is faster here


@dataclasses.dataclass
class LayerDecision:
    name: str
    impl: str          # "binary", "bitserial W2A2", or "kept" (runs the QAT layer)
    reason: str = ""   # why it was kept
    bn_folded: str = ""  # name of the folded BatchNorm2d, if any


@dataclasses.dataclass
class DeployReport:
    """What hwq.deploy did per layer; ``kept`` lists the layers left as they were, with reasons."""

    layers: list[LayerDecision]
    traced: bool

    @property
    def kept(self) -> list[LayerDecision]:
        return [d for d in self.layers if d.impl == "kept"]

    def __str__(self) -> str:
        rows = [f"{d.name:<32} {d.impl:<18} {('bn ' + d.bn_folded) if d.bn_folded else ''}"
                f"{d.reason}" for d in self.layers]
        note = "" if self.traced else "\n(torch.fx could not trace the model: no batch norm folded)"
        return "\n".join(rows) + note


def _signed_bits(codes: torch.Tensor) -> int:
    """Fewest bits of a two's-complement code holding every value of ``codes`` (at least 1)."""
    lo, hi = int(codes.min()), int(codes.max())
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def _act_plan(q) -> tuple[str | None, int | None, str]:
    """(mode, a_bits, reason): mode "binary", "unsigned" or None (unsupported)."""
    kind = q.config.kind
    if kind == "binary":
        return "binary", None, ""
    if kind not in ACT_KINDS:
        return None, None, f"activation quantizer '{q.name}' has no integer kernel"
    if q.bits > 8:
        return None, None, f"{q.bits}-bit activations (the kernels take 1..8)"
    signed = int(getattr(q, "signed", torch.tensor(0)))
    if signed < 0:
        return None, None, "activation signedness undecided (run a calibration batch first)"
    if signed:
        return None, None, "signed activations (the bit-serial kernels take unsigned codes)"
    return "unsigned", q.bits, ""


class _PackedLayer(nn.Module):
    """Common part of the deployed conv and linear layers: packed weights, scales, epilogue."""

    def __init__(self, layer: QuantLayer, binary: bool, a_bits: int, w_bits: int, impl: str):
        super().__init__()
        self.act_quant = layer.act_quant  # kept: it computes the activation codes exactly as in QAT
        self.binary, self.a_bits, self.w_bits, self.impl = binary, a_bits, w_bits, impl
        with torch.no_grad():
            codes, w_scale = layer.weight_quant.quantize_int(layer.weight.detach())
        o = codes.shape[0]
        self.in_channels = codes.shape[1] * self.groups
        self.out_channels = o
        w4 = codes if codes.dim() == 4 else codes[:, :, None, None]
        self.kernel_size = (w4.shape[2], w4.shape[3])
        packed = kernels.pack_weights(w4.float(), None if binary else w_bits, self.groups)
        self.register_buffer("w_packed", packed.data)
        self.register_buffer("w_scale", torch.as_tensor(w_scale, dtype=torch.float32)
                             .reshape(-1).expand(o).clone())
        bias = layer.bias.detach().float() if layer.bias is not None else torch.zeros(o)
        self.register_buffer("bn_scale", torch.ones(o))  # multiplies the output (folded BN)
        self.register_buffer("out_bias", bias.clone())
        self.bn_name = ""

    def fold_bn(self, bn: nn.BatchNorm2d, name: str) -> None:
        """y -> bn(y) in eval mode, as y * k + (beta - mean * k) with k = gamma / sqrt(var + eps)."""
        with torch.no_grad():
            k = (bn.weight if bn.affine else torch.ones_like(bn.running_mean)) / torch.sqrt(
                bn.running_var + bn.eps)
            beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            self.out_bias.copy_((self.out_bias - bn.running_mean) * k + beta)
            self.bn_scale.mul_(k)
        self.bn_name = name

    def _packed_input(self, x4: torch.Tensor):
        """(packed activation codes, activation scale)."""
        if self.binary:
            # Sign bits straight from the float input: bit 1 where x < 0, so sign(0) = +1 as in
            # hwq's binary quantizer.
            return torch.ops.hwq.pack_activations(x4, 1, True, self.groups), 1.0
        codes, a_scale = self.act_quant.quantize_int(x4)
        return torch.ops.hwq.pack_activations(codes, self.a_bits, False, self.groups), a_scale

    def _run(self, x4: torch.Tensor, stride, padding, dilation) -> torch.Tensor:
        px, a_scale = self._packed_input(x4)
        scale = (self.w_scale * a_scale * self.bn_scale).float()
        return torch.ops.hwq.conv2d_packed(
            px, self.w_packed, self.in_channels, self.out_channels, list(self.kernel_size),
            self.a_bits, self.w_bits, self.binary, list(stride), list(padding), list(dilation),
            self.groups, scale, self.out_bias, 1)


class PackedConv2d(_PackedLayer):
    """A QuantConv2d running hwq.kernels; output (N, O, OH, OW) float32 in channels-last memory."""

    def __init__(self, conv: QuantConv2d, binary: bool, a_bits: int, w_bits: int, impl: str):
        self.groups = conv.groups
        super().__init__(conv, binary, a_bits, w_bits, impl)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, impl={self.impl!r}"
                + (f", bn={self.bn_name!r} folded" if self.bn_name else ""))


class PackedLinear(_PackedLayer):
    """A QuantLinear running hwq.kernels (as a 1x1 convolution over the rows)."""

    def __init__(self, linear: QuantLinear, binary: bool, a_bits: int, w_bits: int, impl: str):
        self.groups = 1
        super().__init__(linear, binary, a_bits, w_bits, impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._run(x.reshape(-1, x.shape[-1], 1, 1), (1, 1), (0, 0), (1, 1))
        return y.reshape(*lead, self.out_channels)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl!r}"


def _plan_layer(name: str, m: QuantLayer, max_plane_products: int):
    """(decision, constructor arguments or None)."""
    if isinstance(m, QuantConv2d) and m.padding_mode != "zeros":
        return LayerDecision(name, "kept", f"padding_mode={m.padding_mode!r}"), None
    if isinstance(m, QuantConv2d) and isinstance(m.padding, str):
        return LayerDecision(name, "kept", f"padding={m.padding!r}"), None
    act_mode, a_bits, reason = _act_plan(m.act_quant)
    if act_mode is None:
        return LayerDecision(name, "kept", reason), None
    wq = m.weight_quant
    if wq.config.kind == "float":
        return LayerDecision(name, "kept", "float weights"), None
    if act_mode == "binary":
        if wq.config.kind != "binary":
            return LayerDecision(name, "kept", f"binary activations with '{wq.name}' weights "
                                 "(the kernels pair binary activations with binary weights)"), None
        return LayerDecision(name, "binary"), (True, 1, 1)
    with torch.no_grad():
        codes, _ = wq.quantize_int(m.weight.detach())
    w_bits = _signed_bits(codes)
    if w_bits > 8:
        return LayerDecision(name, "kept", f"weight codes need {w_bits} bits (kernels: <= 8)"), None
    impl = f"bitserial W{w_bits}A{a_bits}"
    if w_bits * a_bits > max_plane_products:
        return LayerDecision(name, "kept", f"{impl} is {w_bits * a_bits} plane products "
                             f"(> max_plane_products={max_plane_products})"), None
    return LayerDecision(name, impl), (False, a_bits, w_bits)


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QuantLayer, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def _bn_after(model: nn.Module) -> tuple[dict[str, str], bool]:
    """{layer name: name of the BatchNorm2d that alone consumes its output}, and whether fx traced."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any untraceable model: deploy without folding
        return {}, False
    mods = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), QuantConv2d):
            users = list(node.users)
            if (len(users) == 1 and users[0].op == "call_module"
                    and isinstance(mods.get(users[0].target), nn.BatchNorm2d)):
                bn_users = [n for n in graph.nodes if n.op == "call_module"
                            and n.target == users[0].target]
                if len(bn_users) == 1:  # a BN module called once: safe to fold away
                    pairs[node.target] = users[0].target
    return pairs, True


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def deploy(model: nn.Module, max_plane_products: int = DEFAULT_MAX_PLANE_PRODUCTS,
           fold_bn: bool = True) -> nn.Module:
    """A copy of the QAT ``model`` (eval mode) whose quantized layers run the packed CPU kernels.

    max_plane_products: a bit-serial layer costs w_bits * a_bits binary products per MAC; layers
    above this stay QAT layers (their float convolution is faster on CPUs measured so far,
    docs/kernels.md). fold_bn: fold a BatchNorm2d that directly follows a deployed conv into the
    kernel's epilogue. The returned model has ``deploy_report`` (a DeployReport).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model is a {type(model).__name__}: expected a torch.nn.Module")
    if isinstance(max_plane_products, bool) or not isinstance(max_plane_products, int) \
            or max_plane_products < 1:
        raise ValueError(f"max_plane_products={max_plane_products!r} is not accepted: expected an "
                         "integer >= 1 (1 = binary and W1A1 only, 64 = everything up to W8A8)")
    if not kernels.HAVE_EXTENSION:
        raise RuntimeError("hwq.deploy needs the C++ kernels (hwq._C), which are not built "
                           f"({kernels._ext.EXTENSION_ERROR}); build them with "
                           "`pip install --no-build-isolation -e .`")
    out = copy.deepcopy(model).eval()
    devices = {p.device.type for p in out.parameters()} | {b.device.type for b in out.buffers()}
    if devices - {"cpu"}:
        raise ValueError(f"model has tensors on {sorted(devices)}: hwq.deploy targets the CPU "
                         "kernels; move it with model.cpu() first")
    bn_of, traced = _bn_after(out) if fold_bn else ({}, True)
    decisions = []
    for name, m in list(out.named_modules()):
        if not isinstance(m, (QuantConv2d, QuantLinear)):
            continue
        decision, args = _plan_layer(name, m, max_plane_products)
        if args is not None:
            cls = PackedConv2d if isinstance(m, QuantConv2d) else PackedLinear
            packed = cls(m, *args, decision.impl)
            bn = bn_of.get(name)
            if bn is not None:
                packed.fold_bn(out.get_submodule(bn), bn)
                _set(out, bn, nn.Identity())
                decision.bn_folded = bn
            _set(out, name, packed)
        decisions.append(decision)
    out.deploy_report = DeployReport(decisions, traced)
    return out

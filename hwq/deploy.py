"""hwq.deploy: a trained QAT model -> an inference model whose quantized layers run integer
kernels, weights packed once, batch norm folded into a per-channel epilogue.

Per layer (QuantConv2d / QuantLinear, in eval mode) the implementations that apply are:
  "binary"          binary weights and activations: XNOR-popcount (hwq.kernels);
  "bitserial WxAy"  unsigned <= 8-bit activation codes (fixed, lsq, pact) and weight codes that fit a
                    signed <= 8-bit two's complement (fixed, lsq, ternary = 2 bits, binary = 2 bits),
                    when x * y <= max_plane_products (hwq.kernels);
  "int8 WxAy"       the same codes, signed activations and binary ones too, on oneDNN's u8 x s8
                    kernels (hwq.kernels.int8), where their sums are exact on this CPU.
The first that applies is used, or, given an example input, the fastest measured (the QAT layer
included). Anything else (float activations or weights, pow2 weights wider than 8 bits, padding
modes other than zeros) stays the QAT layer and is listed in the report with the reason.

A deployed layer computes the exact integer sum S = sum(x_codes * w_codes) and returns
float(S) * (a_scale * w_scale[o]) + bias[o], where a following BatchNorm2d (eval statistics) has been
folded into the scale and bias: k = gamma / sqrt(var + eps), scale *= k, bias = (bias - mean) * k + beta.
So in eval mode its outputs equal the QAT model's up to float rounding: the integer parts are exact,
the scales are applied in a different order.

NaN and Inf follow the QAT model in eval mode (README, "NaN and Inf"): +/-Inf saturates to the end
codes, and an output is NaN exactly where the QAT layer's is, i.e. where its receptive field holds
a NaN input. The deployed model checks its own input once (one min/max read of the batch): only a
batch holding NaN or Inf makes every deployed layer check its input for NaN and take the slow path
where it finds one (scripts/bench_deploy_nan.py: on one thread both the input check and a
per-layer check are within the run-to-run noise of a binary ResNet-18, +-4%; on two threads of a
loaded machine every extra parallel op between the kernels can wait for a time slice, so the
per-layer check is kept for the batches that need it). int8 layers with multi-bit activations find
NaN in their quantization pass anyway, at no cost. Not covered: NaN made inside the
model from a finite input (a float layer deploy kept overflowing to Inf, then Inf - Inf).
A deployed model is for inference: its deployed layers stay in eval mode whatever train() says,
and the model refuses to run in training mode (which would recalibrate the layers it kept).

Batch norm is found with torch.fx (a conv called once whose only user is a BatchNorm2d with running
statistics, itself called once); a model fx cannot trace is deployed without folding (each BN then
runs as before) and the report says so. A module registered under several names (``self.b =
self.a``) is replaced under every name.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics
import threading
import time

import torch
from torch import fx, nn

from . import kernels
from .kernels import OutMode, int8
from .nn import QuantConv2d, QuantLayer, QuantLinear

ACT_KINDS = ("fixed", "lsq", "pact")


def default_max_plane_products() -> int:
    """The most one-bit products per MAC at which a bit-serial layer is expected to beat oneDNN's
    int8 kernels on this CPU (the default of deploy's max_plane_products).

    0 where the int8 path exists and the CPU is not a VPOPCNTDQ one without AMX: on both CPUs
    measured (docs/kernels.md: an AVX-512BW + VNNI Xeon, a VPOPCNTDQ + AMX Xeon) int8 beat every
    bit-serial product, W1A2 included. 4 (W2A2, W1A4, W4A1) on VPOPCNTDQ CPUs without AMX, such as
    Zen 4, where binary runs about 5.4x the VNNI int8 rate (an estimate from instruction
    throughputs, uops.info / Agner Fog's tables: about 350 binary MACs per cycle from 512-bit XOR +
    VPOPCNTQ + add, against 64 int8 MACs per cycle from VPDPBUSD; not measured here), and wherever
    there is no int8 path.
    """
    if not int8.HAVE_ONEDNN_INT8:
        return 4
    if kernels.current_isa() == "avx512_vpopcntdq" and "amx_int8" not in int8.cpu_flags():
        return 4
    return 0


TIMING_RUNS = 5  # per candidate when deploy measures (after one warm-up run); the median counts


@dataclasses.dataclass
class LayerDecision:
    name: str
    impl: str          # "binary", "bitserial W2A2", "int8 W8A8", or "kept" (runs the QAT layer)
    reason: str = ""   # why it was kept, or why this implementation was chosen
    bn_folded: str = ""  # name of the folded BatchNorm2d, if any
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)  # when measured
    packed_output_to: str = ""  # the binary layer this one hands packed sign bits to, if any
    relu_fused: str = ""  # name of the nn.ReLU applied in this layer's epilogue, if any


@dataclasses.dataclass
class DeployReport:
    """What hwq.deploy did per layer; ``kept`` lists the layers left as they were, with reasons."""

    layers: list[LayerDecision]
    traced: bool

    @property
    def kept(self) -> list[LayerDecision]:
        return [d for d in self.layers if d.impl == "kept"]

    def __str__(self) -> str:
        rows = []
        for d in self.layers:
            timed = ", ".join(f"{k} {v:.3g} ms" for k, v in d.timings_ms.items())
            rows.append(f"{d.name:<32} {d.impl:<18} {('bn ' + d.bn_folded + ' ') if d.bn_folded else ''}"
                        f"{('-> signs packed for ' + d.packed_output_to + ' ') if d.packed_output_to else ''}"
                        f"{('relu ' + d.relu_fused + ' ') if d.relu_fused else ''}"
                        f"{d.reason}{(' [' + timed + ']') if timed else ''}")
        note = "" if self.traced else ("\n(torch.fx could not trace the model: no batch norm "
                                       "folded, no layers chained)")
        return "\n".join(rows) + note


def _signed_bits(codes: torch.Tensor) -> int:
    """Fewest bits of a two's-complement code holding every value of ``codes`` (at least 1)."""
    lo, hi = int(codes.min()), int(codes.max())
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def _act_plan(q) -> tuple[str | None, int | None, str]:
    """(mode, a_bits, reason): mode "binary", "unsigned", "signed" or None (unsupported)."""
    kind = q.config.kind
    if kind == "binary":
        return "binary", 1, ""
    if kind not in ACT_KINDS:
        return None, None, f"activation quantizer '{q.name}' has no integer kernel"
    if q.bits > 8:
        return None, None, f"{q.bits}-bit activations (the kernels take 1..8)"
    signed = int(getattr(q, "signed", torch.tensor(0)))
    if signed < 0:
        return None, None, "activation signedness undecided (run a calibration batch first)"
    return ("signed" if signed else "unsigned"), q.bits, ""


class _NanChecks(threading.local):
    """Per thread: one entry per deployed model running now (a deployed model may run inside
    another), True while its batch holds NaN or Inf."""

    def __init__(self):
        self.stack: list[bool] = []

    @property
    def on(self) -> bool:
        return bool(self.stack) and self.stack[-1]


_NAN_CHECKS = _NanChecks()


def _has_nan(x: torch.Tensor) -> bool:
    """Whether the float input ``x`` of a deployed layer holds a NaN; checked only while the
    deployed model runs a batch that held NaN or Inf (amax is NaN exactly when a NaN is present).
    Packed sign bits (int64) from a chained layer never hold NaN: that layer checked its input."""
    return (_NAN_CHECKS.on and x.is_floating_point() and x.numel() > 0
            and bool(torch.isnan(x.amax())))


def _nonfinite(t) -> bool:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return False
    lo, hi = torch.aminmax(t.detach())
    return not bool(torch.isfinite(lo) & torch.isfinite(hi))


def _without_nan(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), torch.zeros((), dtype=x.dtype), x)


def _before_forward(model: nn.Module, args, kwargs) -> None:
    """Forward pre-hook of a deployed model: refuse training mode (it would recalibrate the
    quantizers and batch norms of the layers deploy kept); turn the layers' NaN checks on for a
    batch that holds NaN or Inf."""
    # pushed first: _after_forward pops it however the call ends (always_call), this hook's
    # own error included
    _NAN_CHECKS.stack.append(False)
    if model.training:
        raise ValueError(f"this {type(model).__name__} was made by hwq.deploy and runs in eval "
                         "mode only: call .eval() before running it (train() would recalibrate "
                         "the quantizers and batch norms of the layers it kept)")
    _NAN_CHECKS.stack[-1] = any(_nonfinite(t) for t in (*args, *kwargs.values()))


def _after_forward(model: nn.Module, args, kwargs, output) -> None:
    if _NAN_CHECKS.stack:
        _NAN_CHECKS.stack.pop()


class _DeployedLayer(nn.Module):
    """What every deployed layer holds: the QAT activation quantizer (it computes the activation
    codes exactly as in training), the weight scale, and a per-channel output scale and bias into
    which a following batch norm is folded. Subclasses add a kernel (packed or int8) and a shape
    (conv or linear)."""

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


class _PackedKernel(_DeployedLayer):
    """hwq's own kernels (hwq.kernels): XNOR-popcount or bit-serial on bit-packed weights."""

    def _store_weights(self, w4: torch.Tensor) -> None:
        packed = kernels.pack_weights(w4.float(), None if self.binary else self.w_bits, self.groups)
        self.register_buffer("w_packed", packed.data)

    packed_output = False  # set by deploy: hand sign bits straight to the next binary layer
    fuse_relu = False  # set by deploy: a ReLU that alone consumed the output runs in the epilogue

    def _packed_input(self, x4: torch.Tensor):
        """(packed activation codes, activation scale)."""
        if x4.dtype == torch.int64 and x4.dim() == 6:  # sign bits from a chained layer
            return x4, 1.0
        if self.binary:
            # Sign bits straight from the float input: bit 1 where x < 0, so sign(0) = +1 as in
            # hwq's binary quantizer.
            return torch.ops.hwq.pack_activations(x4, 1, True, self.groups), 1.0
        codes, a_scale = self.act_quant.quantize_int(x4)
        return torch.ops.hwq.pack_activations(codes, self.a_bits, False, self.groups), a_scale

    def _conv(self, x4: torch.Tensor, stride, padding, dilation,
              packed_output: bool = False) -> torch.Tensor:
        px, a_scale = self._packed_input(x4)
        scale = (self.w_scale * a_scale * self.bn_scale).float()
        return torch.ops.hwq.conv2d_packed(
            px, self.w_packed, self.in_channels, self.out_channels, list(self.kernel_size),
            self.a_bits, self.w_bits, self.binary, list(stride), list(padding), list(dilation),
            self.groups, scale, self.out_bias,
            OutMode.PACKED_SIGN if packed_output else
            (OutMode.FLOAT_RELU if self.fuse_relu else OutMode.FLOAT))

    def _conv_nan_aware(self, x4: torch.Tensor, stride, padding, dilation) -> torch.Tensor:
        if not _has_nan(x4):
            return self._conv(x4, stride, padding, dilation, self.packed_output)
        # NaN: float output (sign bits cannot hold NaN; a chained binary layer packs its float
        # input itself, and the modules deploy removed between them keep signs and NaN), NaN
        # where the QAT layer's output is NaN.
        y = self._conv(_without_nan(x4), stride, padding, dilation)
        return self._nan_where(x4, y, (stride, padding, dilation))


class _Int8Kernel(_DeployedLayer):
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

    fuse_relu = False  # set by deploy: a ReLU that alone consumed the output runs in oneDNN's epilogue

    def __getstate__(self):
        state = dict(self.__dict__)  # copy.deepcopy and pickle: without the opaque oneDNN tensor
        state["_onednn"] = None
        return state

    def _packed_weight(self) -> torch.Tensor:
        if self._onednn is None:
            if isinstance(self, Int8Conv2d):
                self._onednn = int8.pack_conv_weight(self.w_codes, self.stride, self.padding,
                                                     self.dilation, self.groups)
            else:
                self._onednn = int8.pack_linear_weight(self.w_codes[:, :, 0, 0])
        return self._onednn

    def _load_from_state_dict(self, *args, **kwargs):
        self._onednn = None  # weights may change: pack again on next use
        super()._load_from_state_dict(*args, **kwargs)


class PackedConv2d(_PackedKernel):
    """A QuantConv2d running hwq.kernels; output (N, O, OH, OW) float32 in channels-last memory."""

    def __init__(self, conv: QuantConv2d, act_mode: str, a_bits: int, w_bits: int, impl: str):
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        super().__init__(conv, act_mode, a_bits, w_bits, impl, conv.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_nan_aware(x, self.stride, self.padding, self.dilation)

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


_CLASSES = {("packed", True): PackedConv2d, ("packed", False): PackedLinear,
            ("int8", True): Int8Conv2d, ("int8", False): Int8Linear}


def _candidates(name: str, m: QuantLayer, max_plane_products: int):
    """(decision if nothing fits, [(impl, kernel, act_mode, a_bits, w_bits)] fastest-first by rule)."""
    if isinstance(m, QuantConv2d) and m.padding_mode != "zeros":
        return LayerDecision(name, "kept", f"padding_mode={m.padding_mode!r}"), []
    if isinstance(m, QuantConv2d) and isinstance(m.padding, str):
        return LayerDecision(name, "kept", f"padding={m.padding!r}"), []
    act_mode, a_bits, reason = _act_plan(m.act_quant)
    if act_mode is None:
        return LayerDecision(name, "kept", reason), []
    wq = m.weight_quant
    if wq.config.kind == "float":
        return LayerDecision(name, "kept", "float weights"), []
    with torch.no_grad():
        codes, _ = wq.quantize_int(m.weight.detach())
    w_bits = _signed_bits(codes)
    if w_bits > 8:
        return LayerDecision(name, "kept", f"weight codes need {w_bits} bits (kernels: <= 8)"), []
    out, why = [], []
    if act_mode == "binary" and wq.config.kind == "binary":
        out.append(("binary", "packed", act_mode, 1, 1))
    elif act_mode == "binary":
        why.append(f"binary activations with '{wq.name}' weights (XNOR needs binary weights)")
    elif act_mode == "unsigned" and w_bits * a_bits <= max_plane_products:
        out.append((f"bitserial W{w_bits}A{a_bits}", "packed", act_mode, a_bits, w_bits))
    elif act_mode == "unsigned":
        why.append(f"bitserial W{w_bits}A{a_bits} is {w_bits * a_bits} plane products "
                   f"(> max_plane_products={max_plane_products})")
    else:
        why.append("signed activations (the bit-serial kernels take unsigned codes)")
    if not int8.HAVE_ONEDNN_INT8:
        why.append("no int8 path (torch lacks oneDNN's int8 ops)")
    elif 2 ** a_bits - 1 > int8.u8_exact_max():  # binary: u8 in {0, 2}
        why.append(f"{a_bits}-bit activations: oneDNN's int8 sums are exact only up to 7 bits on "
                   "CPUs without VNNI or AMX")
    else:
        a_name = "A1" if act_mode == "binary" else f"A{a_bits}"
        out.append((f"int8 W{w_bits}{a_name}", "int8", act_mode, a_bits, w_bits))
    if not out:
        return LayerDecision(name, "kept", "; ".join(why)), []
    return None, out


def _median_ms(fn, x) -> float:
    with torch.no_grad():
        fn(x)  # warm-up: first-use packing, caches
        times = []
        for _ in range(TIMING_RUNS):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _layer_inputs(model: nn.Module, names: list[str], example_input) -> dict[str, torch.Tensor]:
    """The input each named layer receives when ``model`` runs ``example_input`` (eval mode)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(mod, args, name=name):
            if name not in seen and args and isinstance(args[0], torch.Tensor):
                seen[name] = args[0].detach().clone()
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example_input)
    except (RuntimeError, IndexError) as e:  # a batch of the wrong shape: name it
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"example_input of shape {tuple(example_input.shape)} does not run "
                         f"through the model: {type(e).__name__}: {first}") from e
    finally:
        for h in handles:
            h.remove()
    return seen


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QuantLayer, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> fx.Graph | None:
    """The model's fx graph with quantized layers and batch norms as leaves; None if untraceable."""
    try:
        return _LeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any untraceable model: deploy without folding or chaining
        return None


def _called_once(graph: fx.Graph, target: str) -> bool:
    return sum(n.op == "call_module" and n.target == target for n in graph.nodes) == 1


def _sole_users(graph: fx.Graph, model: nn.Module, node: fx.Node):
    """Yield (name, module) along the chain of modules that alone consume ``node``'s output, one
    after the other, each called only there with that single argument; stop where that fails."""
    cur = node
    while len(cur.users) == 1:
        user = next(iter(cur.users))
        if (user.op != "call_module" or len(user.args) != 1 or user.kwargs
                or not _called_once(graph, user.target)):
            return
        yield user.target, model.get_submodule(user.target)
        cur = user


def _layer_nodes(graph: fx.Graph, model: nn.Module, kinds):
    """The nodes of the layers of type ``kinds`` called once: whatever follows a layer called
    twice (c(bn(c(x)))) follows only one of its calls, so it cannot be fused into the layer."""
    return [n for n in graph.nodes
            if n.op == "call_module" and isinstance(model.get_submodule(n.target), kinds)
            and _called_once(graph, n.target)]


def _bn_after(graph: fx.Graph, model: nn.Module) -> dict[str, str]:
    """{conv name: name of the BatchNorm2d that alone consumes its output, called only there}."""
    pairs = {}
    for node in _layer_nodes(graph, model, QuantConv2d):
        first = next(_sole_users(graph, model, node), None)
        # without running statistics a BN normalises each batch by itself, even in eval mode
        if (first is not None and isinstance(first[1], nn.BatchNorm2d)
                and first[1].running_mean is not None and first[1].running_var is not None):
            pairs[node.target] = first[0]
    return pairs


def _sign_preserving(m: nn.Module) -> bool:
    """Modules after which x < 0 holds exactly where it held before (NaN stays "not < 0")."""
    if isinstance(m, nn.Hardtanh):  # clamps to [min_val, max_val]
        return m.min_val < 0 <= m.max_val
    return isinstance(m, (nn.Identity, nn.Dropout))  # Dropout: deploy runs in eval mode


def _sign_chains(graph: fx.Graph, model: nn.Module) -> list[tuple[str, list[str], str]]:
    """[(deployed conv A, modules between, deployed binary conv B)] where A's output reaches B only
    through sign-preserving modules, each used once: A can hand B packed sign bits directly."""
    chains = []
    for node in _layer_nodes(graph, model, PackedConv2d):
        between = []
        for name, mod in _sole_users(graph, model, node):
            if isinstance(mod, PackedConv2d) and mod.binary and mod.groups == 1:
                chains.append((node.target, between, name))
                break
            if not _sign_preserving(mod):
                break
            between.append(name)
    return chains


def _relu_after(graph: fx.Graph, model: nn.Module, kinds: tuple) -> list[tuple[str, str]]:
    """[(deployed layer, nn.ReLU module)] where the ReLU, called only there, alone consumes the
    layer's output (after its folded batch norm): the layer can apply it in its epilogue."""
    pairs = []
    for node in _layer_nodes(graph, model, kinds):
        for name, mod in _sole_users(graph, model, node):
            if isinstance(mod, nn.ReLU):
                pairs.append((node.target, name))
            if not isinstance(mod, nn.Identity):  # only a folded batch norm may come between
                break
    return pairs


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the module called ``name`` by ``new`` under every name it has (a module registered
    twice, ``self.b = self.a``, is one module: both names must see the replacement)."""
    old = model.get_submodule(name)
    for parent in list(model.modules()):
        for child, m in list(parent._modules.items()):
            if m is old:
                setattr(parent, child, new)


def deploy(model: nn.Module, example_input: torch.Tensor | None = None,
           max_plane_products: int | None = None, fold_bn: bool = True) -> nn.Module:
    """A copy of the QAT ``model`` (eval mode) whose quantized layers run integer kernels.

    Per layer the candidates are: "binary" (XNOR-popcount) for binary weights and activations;
    "bitserial WxAy" for unsigned activation codes when x * y <= max_plane_products (0: never;
    None: default_max_plane_products(), what is expected to beat int8 on this CPU);
    "int8 WxAy" (oneDNN u8 x s8, hwq.kernels.int8) for any codes of at most 8 bits where its sums
    are exact on this CPU. Without ``example_input`` the first of these that applies is used, in
    that order. With ``example_input`` (a batch the model accepts) every candidate, and the QAT layer
    itself, is timed on the input the layer receives and the fastest is kept; the report lists the
    times. fold_bn: fold a BatchNorm2d that directly follows a deployed conv into its epilogue.
    The returned model has ``deploy_report`` (a DeployReport).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model is a {type(model).__name__}: expected a torch.nn.Module")
    if max_plane_products is None:
        max_plane_products = default_max_plane_products()
    if isinstance(max_plane_products, bool) or not isinstance(max_plane_products, int) \
            or max_plane_products < 0:
        raise ValueError(f"max_plane_products={max_plane_products!r} is not accepted: expected an "
                         "integer >= 0 (0 = no bit-serial layers, 1 = W1A1 only, 64 = up to W8A8) "
                         "or None (this CPU's default)")
    if not isinstance(fold_bn, bool):
        raise TypeError(f"fold_bn={fold_bn!r} is not accepted: expected True or False")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input is a {type(example_input).__name__}: expected a "
                        "torch.Tensor batch the model accepts, or None")
    if not kernels.HAVE_EXTENSION:
        raise RuntimeError("hwq.deploy needs the C++ kernels (hwq._C), which are not built "
                           f"({kernels._ext.EXTENSION_ERROR}); build them with "
                           "`pip install --no-build-isolation -e .`")
    out = copy.deepcopy(model).eval()
    devices = {p.device.type for p in out.parameters()} | {b.device.type for b in out.buffers()}
    if example_input is not None:
        devices.add(example_input.device.type)
    if devices - {"cpu"}:
        raise ValueError(f"model or example_input has tensors on {sorted(devices)}: hwq.deploy "
                         "targets the CPU kernels; move them with .cpu() first")
    graph = _trace(out)
    bn_of = _bn_after(graph, out) if (fold_bn and graph is not None) else {}
    layers = [(n, m) for n, m in out.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    inputs = (_layer_inputs(out, [n for n, _ in layers], example_input)
              if example_input is not None else {})
    decisions = []
    for name, m in layers:
        decision, cands = _candidates(name, m, max_plane_products)
        if decision is not None:
            decisions.append(decision)
            continue
        is_conv = isinstance(m, QuantConv2d)
        built = [(c[0], _CLASSES[(c[1], is_conv)](m, *c[2:], c[0])) for c in cands]
        decision = LayerDecision(name, built[0][0])
        chosen = built[0][1]
        if name in inputs:  # measure: every candidate and the QAT layer on the layer's real input
            x = inputs[name]
            if x.dim() == 4:  # deployed layers hand channels-last tensors to each other
                x = x.contiguous(memory_format=torch.channels_last)
            for impl, mod in built:
                decision.timings_ms[impl] = _median_ms(mod, x)
            decision.timings_ms["kept"] = _median_ms(m, x)
            best = min(decision.timings_ms, key=decision.timings_ms.get)
            decision.impl, decision.reason = best, "fastest measured"
            if best == "kept":
                decisions.append(decision)
                continue
            chosen = dict(built)[best]
        bn = bn_of.get(name)
        if bn is not None:
            chosen.fold_bn(out.get_submodule(bn), bn)
            _set(out, bn, nn.Identity())
            decision.bn_folded = bn
        _set(out, name, chosen)
        decisions.append(decision)
    if graph is not None:
        by_name = {d.name: d for d in decisions}
        for a, between, b in _sign_chains(graph, out):
            out.get_submodule(a).packed_output = True
            for name in between:
                _set(out, name, nn.Identity())
            by_name[a].packed_output_to = b
        for layer, relu in _relu_after(graph, out, (_PackedKernel, _Int8Kernel)):
            if getattr(out.get_submodule(layer), "packed_output", False):
                continue
            out.get_submodule(layer).fuse_relu = True
            _set(out, relu, nn.Identity())
            by_name[layer].relu_fused = relu
    out.deploy_report = DeployReport(decisions, graph is not None)
    out.register_forward_pre_hook(_before_forward, with_kwargs=True)
    out.register_forward_hook(_after_forward, with_kwargs=True, always_call=True)
    return out

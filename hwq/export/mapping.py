"""What each hwq quantizer becomes in an exported file, decided by asking the quantizer.

The quantizer's capabilities (the flags of its config, hwq/quant/base.py) decide, not its name:

  uniform grid (``config.uniform_grid``; ``step_and_range`` gives step, lo, hi: fixed, lsq, pact)
      QONNX: ``Quant`` (scale = step, zero point 0, bit width, signed and narrow from [lo, hi],
             rounding ROUND = half to even), on the float input or the latent float weight.
      QDQ:   activations: QuantizeLinear -> [Clip] -> DequantizeLinear, int8/uint8 with a Clip on
             the integer domain below 8 bits, int4/uint4 for exactly 4 bits (``int4=True``),
             int16/uint16 above 8 bits (the Clip then on int32);
             weights: the integer codes as an int4/int8/int16 initializer -> DequantizeLinear
             (per-axis scale when per channel).
  one bit (``config.bipolar``: binary, sign(0) = +1)
      QONNX: ``BipolarQuant`` (scale = XNOR-Net's alpha for weights, 1 for activations).
      QDQ:   weights: codes +/-1 as int8 -> DequantizeLinear (scale alpha);
             activations: refused (QuantizeLinear only rounds to a uniform grid).
  any other weight quantizer (pow2, ternary: thresholds or log-domain rounding, no uniform grid;
  or one without integer codes)
      the exact quantized weights (``forward(W)``) as a float initializer, listed in the file's
      metadata (``hwq.exact_weights``); never an approximation.
      QONNX: followed by a ``Quant`` node with the quantizer's own scale when it has integer codes
             (``config.integer_codes``) that fit the narrow signed range of its bits (ternary: 2
             bits, {-1, 0, +1}); that node returns its input unchanged (checked here) and tells
             FINN the weights' integer type.
      QDQ:   as integer codes -> DequantizeLinear instead when ``quantize_int``'s codes fit int8 or
             int16 and codes * scale equals forward(W) bit for bit (ternary; pow2 up to 5 bits).
  any other activation quantizer: refused (ExportError naming it).
  float (the passthrough): nothing.

Every replacement is checked against the quantizer it replaces, on the tensor the quantizer saw
when the model ran on the example input: the outputs must be equal bit for bit.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from onnx import TensorProto
from torch import nn

from ..quant import Quantizer
from . import ops
from .api import ExportError

@dataclasses.dataclass
class QuantizerExport:
    """How one quantizer was written. ``name``: its module name ("conv1.weight_quant"); ``layer``:
    the module holding it; ``nodes``: the ONNX nodes it became; ``exact``: weights written as their
    exact quantized values; ``op_types``: the ONNX op types of those nodes; ``calls``: how often
    it ran on the example input."""

    name: str
    layer: str
    role: str
    quantizer: str
    bits: int
    nodes: str
    exact: bool = False
    op_types: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    calls: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- export modules: what replaces a quantizer while torch.onnx traces the model ------------

class QuantNode(nn.Module):
    """QONNX Quant with fixed scale, zero point 0 and bit width (buffers: become initializers)."""

    def __init__(self, scale: torch.Tensor, bits: int, signed: bool, narrow: bool):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("zero_point", torch.zeros(()))
        self.register_buffer("bit_width", torch.tensor(float(bits)))
        self.signed, self.narrow = int(signed), int(narrow)

    def forward(self, x):
        return torch.ops.hwq_export.quant(x, self.scale, self.zero_point, self.bit_width,
                                          self.signed, self.narrow)


class BipolarNode(nn.Module):
    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())

    def forward(self, x):
        return torch.ops.hwq_export.bipolar_quant(x, self.scale)


class QCDQNode(nn.Module):
    """QuantizeLinear -> [Clip] -> DequantizeLinear of an activation (per-tensor scale)."""

    def __init__(self, scale: torch.Tensor, lo: int, hi: int, onnx_type: int):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float().reshape(()))
        self.lo, self.hi, self.onnx_type = lo, hi, onnx_type

    def forward(self, x):
        return torch.ops.hwq_export.qcdq(x, self.scale, self.lo, self.hi, self.onnx_type)


class DequantizedWeight(nn.Module):
    """Integer weight codes (initializer) -> DequantizeLinear; ignores the latent weight."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, axis: int, onnx_type: int):
        super().__init__()
        storage = torch.int8 if onnx_type in (TensorProto.INT4, TensorProto.INT8) else torch.int16
        self.register_buffer("codes", codes.detach().to(storage))
        self.register_buffer("scale", scale.detach().clone().float())
        self.axis, self.onnx_type = axis, onnx_type

    def forward(self, w):
        return torch.ops.hwq_export.dequantize(self.codes, self.scale, self.axis, self.onnx_type)


class ExactWeight(nn.Module):
    """The exact quantized weight as an initializer, optionally annotated by a Quant node that
    returns it unchanged; ignores the latent weight."""

    def __init__(self, values: torch.Tensor, annotation: QuantNode | None = None):
        super().__init__()
        self.register_buffer("values", values.detach().clone().float())
        self.annotation = annotation

    def forward(self, w):
        return self.values if self.annotation is None else self.annotation(self.values)


# -- decisions -------------------------------------------------------------------------------

def _uniform(q: Quantizer, x: torch.Tensor):
    """(step, lo, hi) of a quantizer with a uniform grid, None for any other."""
    if not q.config.uniform_grid:
        return None
    step, lo, hi = q.step_and_range(x)
    return step.detach(), int(lo), int(hi)


def _signed_narrow(bits: int, lo: int, hi: int, where: str) -> tuple[bool, bool]:
    for signed in (True, False):
        for narrow in (False, True):
            if ops.qonnx_range(bits, signed, narrow) == (lo, hi):
                return signed, narrow
    raise ExportError(f"{where}: its integer range [{lo}, {hi}] is not the signed, unsigned or "
                      f"narrow range of {bits} bits, which is what a QONNX Quant node can hold")


def _per_channel_scale(scale: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    """(scale, axis) for DequantizeLinear: a scalar (axis unused), or one per output channel
    (dim 0) flattened to 1-D; None for any other shape."""
    if scale.numel() == 1:
        return scale.reshape(()), 0
    if scale.dim() == w.dim() and scale.shape[0] == w.shape[0] and scale.numel() == w.shape[0]:
        return scale.reshape(-1), 0
    return None


def _int_type(codes: torch.Tensor, bits: int, int4: bool) -> int | None:
    """The narrowest signed ONNX integer type holding ``codes`` (int4 only with int4=True and a
    quantizer of at most 4 bits)."""
    if not bool((codes == codes.round()).all()):
        return None
    lo, hi = (int(codes.min()), int(codes.max())) if codes.numel() else (0, 0)
    order = ([TensorProto.INT4] if int4 and bits <= 4 else []) + [TensorProto.INT8,
                                                                   TensorProto.INT16]
    for t in order:
        tlo, thi = ops.INT_TYPES[t]
        if tlo <= lo and hi <= thi:
            return t
    return None


def _act_type(lo: int, hi: int, int4: bool) -> int | None:
    signed = lo < 0
    four = TensorProto.INT4 if signed else TensorProto.UINT4
    if int4 and (lo, hi) == ops.INT_TYPES[four]:
        return four
    for t in ((TensorProto.INT8, TensorProto.INT16) if signed
              else (TensorProto.UINT8, TensorProto.UINT16)):
        tlo, thi = ops.INT_TYPES[t]
        if tlo <= lo and hi <= thi:
            return t
    return None


def _check_same(where: str, q: Quantizer, new: nn.Module, x: torch.Tensor) -> None:
    """The replacement must compute what the quantizer computes on ``x``, bit for bit."""
    with torch.no_grad():
        want, got = q(x), new(x)
    if want.shape != got.shape or not torch.equal(want, got):
        diff = (want - got).abs().max().item() if want.shape == got.shape else "shape"
        raise ExportError(f"{where}: the exported form of quantizer '{q.name}' does not reproduce "
                          f"it on the example input (max |diff| {diff}); not writing a file that "
                          "computes something else")


def map_quantizer(name: str, q: Quantizer, x: torch.Tensor, fmt: str, int4: bool
                  ) -> tuple[nn.Module, QuantizerExport]:
    """The module that replaces quantizer ``q`` (module name ``name``, first input ``x``) for
    format ``fmt``, and the record of what it becomes. Raises ExportError when ``fmt`` cannot
    hold it."""
    layer = name.rpartition(".")[0]
    where = f"layer {layer!r} ({name})" if layer else f"quantizer {name!r}"
    rec = QuantizerExport(name, layer, q.role, q.name, q.bits, "")
    if q.is_float:
        rec.nodes = "none (float)"
        new = nn.Identity()
        new.name, new.bits = q.name, q.bits
        return new, rec
    uniform = _uniform(q, x)
    if q.role == "act":
        new = _map_act(where, q, x, fmt, int4, uniform, rec)
    else:
        new = _map_weight(where, q, x, fmt, int4, uniform, rec)
    _check_same(where, q, new, x)
    new.name, new.bits = q.name, q.bits  # what QuantLayer's w_quant / a_bits ... read
    return new, rec


def _map_act(where, q, x, fmt, int4, uniform, rec) -> nn.Module:
    if uniform is not None:
        step, lo, hi = uniform
        if step.numel() != 1:
            raise ExportError(f"{where}: activation quantizer '{q.name}' has {step.numel()} "
                              "steps; activations are exported with one step per tensor")
        if fmt == "qonnx":
            signed, narrow = _signed_narrow(q.bits, lo, hi, where)
            rec.nodes, rec.op_types = "Quant", ["Quant"]
            rec.details = {"scale": float(step), "signed": signed, "narrow": narrow,
                           "range": [lo, hi]}
            return QuantNode(step.reshape(()), q.bits, signed, narrow)
        t = _act_type(lo, hi, int4)
        if t is None:
            raise ExportError(f"{where}: integer range [{lo}, {hi}] of '{q.name}' does not fit "
                              "int16/uint16, the widest QuantizeLinear type")
        clip = (lo, hi) != ops.INT_TYPES[t]
        rec.nodes = (f"QuantizeLinear({ops.type_name(t)})"
                     + (f" -> Clip[{lo}, {hi}]" if clip else "") + " -> DequantizeLinear")
        rec.op_types = ["QuantizeLinear", "DequantizeLinear"] + (["Clip"] if clip else [])
        rec.details = {"scale": float(step), "type": ops.type_name(t), "range": [lo, hi]}
        return QCDQNode(step, lo, hi, t)
    if q.config.bipolar:
        if fmt == "qdq":
            raise ExportError(
                f"{where}: a binary activation ('{q.name}') cannot be written as QDQ: "
                "QuantizeLinear/DequantizeLinear round to a uniform grid, not sign(). Supported in "
                "QDQ: activation quantizers with a uniform grid (fixed, lsq, pact) and float; "
                "export format='qonnx' (BipolarQuant) for binary activations")
        codes, scale = q.quantize_int(x)
        rec.nodes, rec.op_types = "BipolarQuant", ["BipolarQuant"]
        rec.details = {"scale": float(scale.reshape(-1)[0])}
        return BipolarNode(scale.reshape(()) if scale.numel() == 1 else scale)
    raise ExportError(f"{where}: activation quantizer '{q.name}' has neither a uniform grid "
                      "(config.uniform_grid, step_and_range) nor one bit (config.bipolar), so no "
                      + fmt.upper() + " node holds it. Supported activation quantizers: those "
                      "with a uniform grid (fixed, lsq, pact), binary ones (QONNX only), float")


def _map_weight(where, q, w, fmt, int4, uniform, rec) -> nn.Module:
    w = w.detach()
    with torch.no_grad():
        values = q(w)
    if fmt == "qonnx":
        if uniform is not None:
            step, lo, hi = uniform
            signed, narrow = _signed_narrow(q.bits, lo, hi, where)
            rec.nodes, rec.op_types = "Quant", ["Quant"]
            rec.details = {"signed": signed, "narrow": narrow, "range": [lo, hi],
                           "per_channel": step.numel() > 1}
            return QuantNode(step, q.bits, signed, narrow)
        if q.config.bipolar:
            _, scale = q.quantize_int(w)
            rec.nodes, rec.op_types = "BipolarQuant", ["BipolarQuant"]
            rec.details = {"per_channel": scale.numel() > 1}
            return BipolarNode(scale)
        rec.exact = True
        rec.nodes = "exact initializer"
        if not q.config.integer_codes:
            return ExactWeight(values)
        codes, scale = q.quantize_int(w)
        annotation = _annotation(q, codes, scale, values)
        if annotation is not None:
            rec.nodes = "exact initializer -> Quant (returns it unchanged)"
            rec.op_types = ["Quant"]
            rec.details = {"signed": True, "narrow": True, "per_channel": scale.numel() > 1}
        return ExactWeight(values, annotation)
    # QDQ: integer codes and a scale, when they reproduce forward(W) exactly.
    if not q.config.integer_codes:
        rec.exact = True
        rec.nodes = "exact initializer"
        return ExactWeight(values)
    codes, scale = q.quantize_int(w)
    sc = _per_channel_scale(scale.detach(), w)
    t = _int_type(codes, q.bits, int4)
    if sc is not None and t is not None and torch.equal(codes * scale, values):
        scale1, axis = sc
        rec.exact = uniform is None and not q.config.bipolar
        rec.nodes = (f"{ops.type_name(t)} codes -> DequantizeLinear"
                     + (" (exact values)" if rec.exact else ""))
        rec.op_types = ["DequantizeLinear"]
        rec.details = {"type": ops.type_name(t), "per_channel": scale1.numel() > 1}
        return DequantizedWeight(codes, scale1, axis, t)
    rec.exact = True
    rec.nodes = "exact initializer"
    return ExactWeight(values)


def _annotation(q, codes, scale, values) -> QuantNode | None:
    """A Quant node that returns the exact weights unchanged, when the codes fit the narrow signed
    range of the quantizer's bits; None otherwise."""
    lo, hi = ops.qonnx_range(q.bits, True, True)
    if q.bits < 2 or not bool(((codes >= lo) & (codes <= hi) & (codes == codes.round())).all()):
        return None
    # A zero scale (an all-zero channel) has only code 0: scale 1 gives the same zeros.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).detach()
    if not bool((scale > 0).all()):
        return None
    node = QuantNode(scale, q.bits, True, True)
    with torch.no_grad():
        if not torch.equal(node(values), values):
            return None
    return node

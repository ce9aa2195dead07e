"""The export-time operators: torch custom ops that compute what an ONNX quantization node computes,
and the translations torch.onnx's dynamo exporter uses to write them as those nodes.

During export every hwq quantizer is replaced by a module calling one of these ops (hwq/export/
modules.py), so torch.export keeps it as one graph node, and ``TRANSLATIONS`` turns that node into

  quant          -> QONNX ``Quant`` (qonnx.custom_op.general): y = (clip(round(x / s + z), lo, hi) - z) * s
                    with [lo, hi] from bit width, signed and narrow range; round half to even
  bipolar_quant  -> QONNX ``BipolarQuant``: y = (x >= 0 ? +1 : -1) * s
  qcdq           -> ONNX QuantizeLinear -> [Clip on the integer domain] -> DequantizeLinear (the
                    QCDQ pattern of Brevitas: the Clip narrows an int8/uint8 grid to b < 8 bits)
  dequantize     -> ONNX DequantizeLinear of integer weight codes kept as an initializer

The QONNX operator definitions are those of the QONNX paper (Pappalardo et al., "QONNX:
Representing Arbitrary-Precision Quantized Neural Networks", 2022) and of the qonnx package's
reference implementations (custom_op/general/intquant.py, bipolar_quant.py). The ONNX operators are
QuantizeLinear-21 / DequantizeLinear-21 (saturating, round half to even; int4/uint4 and int16/uint16
types and the ``output_dtype`` attribute need opset 21) and Clip-13.

The eager implementations compute the same values in torch (float32), so a model whose quantizers
were replaced can be compared bit for bit with the QAT model before anything is written.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, defs
from onnxscript import opset21 as op
from onnxscript import values as osv

QONNX_DOMAIN = "qonnx.custom_op.general"
"""The domain FINN and the qonnx package read Quant and BipolarQuant nodes from."""
OPSET = 21
"""ONNX opset of the exported files: the first with int4/uint4 QuantizeLinear and output_dtype."""

# ONNX integer types of QuantizeLinear-21 outputs, with their value range.
INT_TYPES = {
    TensorProto.INT4: (-8, 7), TensorProto.UINT4: (0, 15),
    TensorProto.INT8: (-128, 127), TensorProto.UINT8: (0, 255),
    TensorProto.INT16: (-32768, 32767), TensorProto.UINT16: (0, 65535),
}
# ORT has no Clip kernel for these: the QCDQ Clip runs on int32 (DequantizeLinear takes int32).
_CLIP_VIA_INT32 = (TensorProto.INT16, TensorProto.UINT16)
# Clip-13 has no 4-bit types: 2- and 3-bit grids use int8/uint8 and a Clip instead.
_NO_CLIP = (TensorProto.INT4, TensorProto.UINT4)


def type_name(onnx_type: int) -> str:
    return TensorProto.DataType.Name(onnx_type).lower()


def qonnx_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The integer range of a QONNX Quant node (qonnx's min_int / max_int)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1 - int(narrow)


# -- torch side ------------------------------------------------------------------------------

@torch.library.custom_op("hwq_export::quant", mutates_args=())
def quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bit_width: torch.Tensor,
          signed: int, narrow: int) -> torch.Tensor:
    lo, hi = qonnx_range(int(bit_width), bool(signed), bool(narrow))
    u = (x / scale + zero_point).clamp(lo, hi).round()
    return (u - zero_point) * scale


@quant.register_fake
def _(x, scale, zero_point, bit_width, signed, narrow):
    return torch.empty_like(x)


@torch.library.custom_op("hwq_export::bipolar_quant", mutates_args=())
def bipolar_quant(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype) * scale


@bipolar_quant.register_fake
def _(x, scale):
    return torch.empty_like(x)


@torch.library.custom_op("hwq_export::qcdq", mutates_args=())
def qcdq(x: torch.Tensor, scale: torch.Tensor, lo: int, hi: int, onnx_type: int) -> torch.Tensor:
    tlo, thi = INT_TYPES[onnx_type]
    u = (x / scale).round().clamp(tlo, thi).clamp(lo, hi)  # QuantizeLinear saturates, then Clip
    return u * scale


@qcdq.register_fake
def _(x, scale, lo, hi, onnx_type):
    return torch.empty_like(x)


@torch.library.custom_op("hwq_export::dequantize", mutates_args=())
def dequantize(codes: torch.Tensor, scale: torch.Tensor, axis: int, onnx_type: int) -> torch.Tensor:
    s = scale.reshape((-1,) + (1,) * (codes.dim() - 1 - axis)) if scale.dim() else scale
    return codes.to(scale.dtype) * s


@dequantize.register_fake
def _(codes, scale, axis, onnx_type):
    return torch.empty(codes.shape, dtype=scale.dtype, device=codes.device)


# -- ONNX side -------------------------------------------------------------------------------

def _register_qonnx_schemas() -> None:
    """Declare Quant and BipolarQuant to onnx, so that onnxscript can emit them and onnx.checker
    checks their inputs and attributes (a domain without schemas is not checked at all)."""
    P, A = defs.OpSchema.FormalParameter, defs.OpSchema.Attribute
    floats = [("T", ["tensor(float)", "tensor(float16)", "tensor(double)"], "float tensors")]
    if not defs.has("Quant", QONNX_DOMAIN):
        defs.register_schema(defs.OpSchema(
            "Quant", QONNX_DOMAIN, 1,
            doc="QONNX integer quantization: (clip(round(X / scale + zeropt), lo, hi) - zeropt) * "
                "scale with [lo, hi] given by bitwidth, signed and narrow.",
            inputs=[P("X", "T"), P("scale", "T"), P("zeropt", "T"), P("bitwidth", "T")],
            outputs=[P("Y", "T")], type_constraints=floats,
            attributes=[A("signed", defs.OpSchema.AttrType.INT, "1: signed range", required=True),
                        A("narrow", defs.OpSchema.AttrType.INT, "1: narrow range", required=True),
                        A("rounding_mode", onnx.helper.make_attribute("rounding_mode", "ROUND"),
                          "ROUND (half to even), CEIL, FLOOR, ...")]))
    if not defs.has("BipolarQuant", QONNX_DOMAIN):
        defs.register_schema(defs.OpSchema(
            "BipolarQuant", QONNX_DOMAIN, 1,
            doc="QONNX binary quantization: (X >= 0 ? +1 : -1) * scale.",
            inputs=[P("X", "T"), P("scale", "T")], outputs=[P("Y", "T")],
            type_constraints=floats))


_register_qonnx_schemas()
_QONNX = osv.Opset(QONNX_DOMAIN, 1)


def _quant_onnx(x, scale, zero_point, bit_width, signed: int, narrow: int):
    return _QONNX.Quant(x, scale, zero_point, bit_width, signed=signed, narrow=narrow,
                        rounding_mode="ROUND")


def _bipolar_quant_onnx(x, scale):
    return _QONNX.BipolarQuant(x, scale)


def _int_const(value: int, onnx_type: int):
    np_type = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8,
               TensorProto.INT32: np.int32}[onnx_type]
    return op.Constant(value=onnx.numpy_helper.from_array(np.array(value, dtype=np_type)))


def _qcdq_onnx(x, scale, lo: int, hi: int, onnx_type: int):
    q = op.QuantizeLinear(x, scale, output_dtype=onnx_type)
    if (lo, hi) != INT_TYPES[onnx_type]:
        if onnx_type in _NO_CLIP:
            raise ValueError(f"[{lo}, {hi}] is narrower than {type_name(onnx_type)}: Clip has no "
                             "4-bit types (a narrower grid is exported as int8/uint8 with a Clip)")
        clip_type = TensorProto.INT32 if onnx_type in _CLIP_VIA_INT32 else onnx_type
        if clip_type != onnx_type:
            q = op.Cast(q, to=clip_type)
        q = op.Clip(q, _int_const(lo, clip_type), _int_const(hi, clip_type))
    return op.DequantizeLinear(q, scale)


def _dequantize_onnx(codes, scale, axis: int, onnx_type: int):
    # Codes are kept in an int8/int16 torch buffer (torch has no 4-bit type); the Cast of that
    # constant is folded into an int4/uint4 initializer by the exporter's optimizer.
    codes = op.Cast(codes, to=onnx_type)
    return op.DequantizeLinear(codes, scale, axis=axis)


TRANSLATIONS = {
    torch.ops.hwq_export.quant.default: _quant_onnx,
    torch.ops.hwq_export.bipolar_quant.default: _bipolar_quant_onnx,
    torch.ops.hwq_export.qcdq.default: _qcdq_onnx,
    torch.ops.hwq_export.dequantize.default: _dequantize_onnx,
}

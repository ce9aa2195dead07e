"""Which implementations apply to one quantized layer, fastest first by rule.

  "binary"          binary weights and activations: XNOR-popcount (hwq.kernels);
  "bitserial WxAy"  unsigned <= 8-bit activation codes and weight codes that fit a signed <= 8-bit
                    two's complement, when x * y <= max_plane_products (hwq.kernels);
  "int8 WxAy"       the same codes, signed activations and binary ones too, on oneDNN's u8 x s8
                    kernels (hwq.kernels.int8), where their sums are exact on this CPU;
  "fp32-sum WxAy"   multi-bit codes whose sums stay below 2^24: oneDNN's float32 conv on the codes
                    gives them exactly (for what the integer kernels do not take on this CPU, such
                    as 8-bit activations without VNNI).
Anything else (float activations or weights, weight codes wider than 8 bits, padding modes other
than zeros) has no candidate: the layer stays the QAT layer, with the reason in the report.

What applies is decided by asking the layer's quantizers for their capabilities (hwq/quant/base.py),
never by their names: activations need ``config.bipolar`` (binary) or ``config.uniform_grid``
(codes clamp(round(x / step), lo, hi) from ``step_and_range``, signedness from ``codes_signed()``);
weights need ``config.integer_codes`` (``quantize_int``), and ``config.bipolar`` for XNOR.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .. import kernels
from ..kernels import int8
from ..nn import QuantConv2d, QuantLayer
from ..quant import Quantizer
from .layers import CLASSES, DeployedLayer
from .report import LayerDecision


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


class Candidate(NamedTuple):
    """One implementation that applies to a layer: what deploy builds, times and installs."""

    impl: str      # its name in the report: "binary", "bitserial W2A2", "int8 W8A8"
    kernel: str    # "packed" (hwq.kernels) or "int8" (oneDNN, hwq.kernels.int8)
    act_mode: str  # activation codes: "binary" (+/-1), "unsigned" or "signed"
    a_bits: int
    w_bits: int    # bits of the two's-complement weight codes (1: binary weights on XNOR)

    def build(self, layer: QuantLayer) -> DeployedLayer:
        """The deployed layer of this implementation for the QAT ``layer`` (weights packed)."""
        cls = CLASSES[(self.kernel, isinstance(layer, QuantConv2d))]
        return cls(layer, self.act_mode, self.a_bits, self.w_bits, self.impl)


def _signed_bits(codes: torch.Tensor) -> int:
    """Fewest bits of a two's-complement code holding every value of ``codes`` (at least 1)."""
    lo, hi = int(codes.min()), int(codes.max())
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def _act_plan(q: Quantizer) -> tuple[str | None, int | None, str]:
    """(mode, a_bits, reason): mode "binary", "unsigned", "signed" or None (unsupported)."""
    if q.config.bipolar:
        return "binary", 1, ""
    if q.is_float:
        return None, None, f"activation quantizer '{q.name}' has no integer kernel"
    if not q.config.uniform_grid:
        return None, None, (f"activation quantizer '{q.name}' has no integer kernel: its config "
                            f"({type(q.config).__name__}) declares neither uniform_grid nor "
                            "bipolar")
    if q.bits > 8:
        return None, None, f"{q.bits}-bit activations (the kernels take 1..8)"
    signed = q.codes_signed()
    if signed is None:
        return None, None, "activation signedness undecided (run a calibration batch first)"
    return ("signed" if signed else "unsigned"), q.bits, ""


def candidates(name: str, m: QuantLayer, max_plane_products: int
               ) -> tuple[LayerDecision | None, list[Candidate]]:
    """(decision if nothing fits, the candidates fastest-first by rule)."""
    if isinstance(m, QuantConv2d) and m.padding_mode != "zeros":
        return LayerDecision(name, "kept", f"padding_mode={m.padding_mode!r}"), []
    if isinstance(m, QuantConv2d) and isinstance(m.padding, str):
        return LayerDecision(name, "kept", f"padding={m.padding!r}"), []
    act_mode, a_bits, reason = _act_plan(m.act_quant)
    if act_mode is None:
        return LayerDecision(name, "kept", reason), []
    wq = m.weight_quant
    if wq.is_float:
        return LayerDecision(name, "kept", "float weights"), []
    if not wq.config.integer_codes:
        return LayerDecision(name, "kept", f"weight quantizer '{wq.name}' has no integer codes: "
                             f"its config ({type(wq.config).__name__}) does not declare "
                             "integer_codes"), []
    with torch.no_grad():
        codes, _ = wq.quantize_int(m.weight.detach())
    w_bits = _signed_bits(codes)
    if w_bits > 8:
        return LayerDecision(name, "kept", f"weight codes need {w_bits} bits (kernels: <= 8)"), []
    out, why = [], []
    if act_mode == "binary" and wq.config.bipolar:
        out.append(Candidate("binary", "packed", act_mode, 1, 1))
    elif act_mode == "binary":
        why.append(f"binary activations with '{wq.name}' weights (XNOR needs binary weights)")
    elif act_mode == "unsigned" and w_bits * a_bits <= max_plane_products:
        out.append(Candidate(f"bitserial W{w_bits}A{a_bits}", "packed", act_mode, a_bits, w_bits))
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
        out.append(Candidate(f"int8 W{w_bits}{a_name}", "int8", act_mode, a_bits, w_bits))
    fp32 = _fp32_sum_candidate(m, act_mode, a_bits, w_bits)
    if isinstance(fp32, Candidate):
        out.append(fp32)
    else:
        why.append(fp32)
    if not out:
        return LayerDecision(name, "kept", "; ".join(why)), []
    return None, out


# float32 represents every integer of magnitude <= 2^24 exactly
_FP32_EXACT = 2 ** 24


def _fp32_sum_candidate(m: QuantLayer, act_mode: str, a_bits: int, w_bits: int
                        ) -> Candidate | str:
    """The "fp32-sum" candidate (exact integer sums from oneDNN's float32 conv on the codes,
    layers.Fp32SumConv2d), or why it does not apply: multi-bit codes only, whose sums are exact in
    float32, i.e. K * max|x| * max|w| <= 2^24 (every product and partial sum is then an integer
    float32 holds exactly, whatever the order of the additions), and a torch with oneDNN (its
    direct convolution; torch's other CPU backends include NNPACK's Winograd, which is not exact)."""
    if act_mode == "binary":
        return "binary activations with multi-bit weights: no fp32-sum layer"
    if not torch.backends.mkldnn.is_available():
        return "torch has no oneDNN (mkldnn) float32 convolution for exact fp32 sums"
    k = m.weight[0].numel()  # C/groups * KH * KW (linear: C)
    max_x = 2 ** (a_bits - 1) if act_mode == "signed" else 2 ** a_bits - 1
    bound = k * max_x * 2 ** (w_bits - 1)
    if bound > _FP32_EXACT:
        return (f"fp32 sums of K={k} W{w_bits}A{a_bits} products reach {bound} > 2^24: not exact "
                "in float32")
    return Candidate(f"fp32-sum W{w_bits}A{a_bits}", "fp32", act_mode, a_bits, w_bits)

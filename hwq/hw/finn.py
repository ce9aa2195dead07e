"""FINN (Umuroglu et al., "FINN: A Framework for Fast, Scalable Binarized Neural Network
Inference", FPGA 2017; Blott et al., "FINN-R", TRETS 2018), a streaming dataflow pipeline.

Every layer has its own matrix-vector-threshold unit (MVTU), PE rows (output channels) by SIMD
lanes (input elements), and all layers work at once on successive images. A layer with an
MH x MW weight matrix (MH = K/g output channels, MW = C/g * R * S) folds onto PE x SIMD and takes
(MH / PE) * (MW / SIMD) cycles per output pixel, times Ox*Oy pixels (times the groups): the
"Ext Latency" of the Finnthesizer's config headers (Xilinx/BNN-PYNQ, ``hw/config.h``). FINN's rules:
PE divides MH and SIMD divides MW (``folding`` values that do not are refused); the default
``pe``/``simd`` are caps, and each layer takes the largest divisor of its MH / MW not above them.
The pipeline's rate is the slowest layer's interval (Report.total.fps); one image's latency is the
sum of the layers (FINN's ``dataflow_performance`` analysis: max cycles and critical path).
Multi-bit layers (finn-hlslib's W2A2 ...) take the same cycles per fold, with wider lanes;
their energy and area scale with w_bits x a_bits bit-products.
Defaults: PE = SIMD = 32 caps (assumed; set ``folding``: {"layer name": [pe, simd]}), 100 MHz (the
BNN-PYNQ overlays on PYNQ-Z1). Reported on a ZC706 at 200 MHz: MNIST 12.3 M images/s at 95.8%,
CIFAR-10 21,906 images/s at 80.1% (Umuroglu et al. 2017, their maximum foldings).
"""
from __future__ import annotations

import dataclasses
import functools
import math

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, memory

LUTS_PER_LANE_BIT = 26072 / 2272
"""FPGA LUTs per PE x SIMD lane per weight-bit x activation-bit: BNN-PYNQ's CNV W1A1 overlay uses
26,072 LUTs (Vivado 2018.2, PYNQ-Z1; Xilinx/BNN-PYNQ cnvW1A1 README) for 2,272 lanes in its
config.h folding; everything else (sliding windows, thresholds, DMA) is folded into this figure."""
MM2_PER_LUT = 840e-6
"""Silicon per LUT with its flip-flops and routing, assumed: about 840 um^2 in 28 nm (a Zynq-7020's
53,200 LUTs on roughly 45 mm^2 of programmable logic); an order-of-magnitude figure so that an
FPGA design has an area to compare at all."""


@dataclasses.dataclass(frozen=True)
class FinnConfig(ArchConfig):
    pe: int = 32
    """Largest PE count of a layer (assumed default; each layer takes the largest divisor of MH)."""
    simd: int = 32
    """Largest SIMD width of a layer (each layer takes the largest divisor of MW)."""
    folding: dict = dataclasses.field(default_factory=dict)
    """Per-layer {name: [pe, simd]}; PE must divide MH and SIMD must divide MW (FINN's rule)."""
    freq_hz: float = 100e6
    """100 MHz (the BNN-PYNQ overlays; the FINN paper's ZC706 runs at 200 MHz)."""
    proteus: bool = True
    """Values are kept at each layer's own precision in the on-chip memories (Umuroglu et al.)."""
    storage_bits: int = 1
    """Packing granularity in bits (1: bit-exact, binarized values take 1 bit)."""

    pipelined = True

    def check(self):
        if self.pe < 1 or self.simd < 1:
            raise ValueError(f"FinnConfig pe={self.pe}, simd={self.simd}: expected integers >= 1")
        if not isinstance(self.folding, dict):
            raise ValueError(f"FinnConfig folding={self.folding!r}: expected a dict of layer name "
                             "-> [pe, simd]")
        for k, v in self.folding.items():
            if (not isinstance(v, (list, tuple)) or len(v) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)):
                raise ValueError(f"FinnConfig folding[{k!r}]={v!r} is not accepted: expected "
                                 "[pe, simd], two integers >= 1")

    def check_profile(self, profile) -> None:
        """A folding key must name a layer of the profile (a typo would be ignored otherwise)."""
        names = {l.name for l in profile.layers}
        unknown = sorted(set(self.folding) - names)
        if unknown:
            raise ValueError(f"FinnConfig folding names no layer of {profile.name!r}: {unknown}; "
                             f"layers: {sorted(names)}")

    def area_mm2(self, profile=None) -> float:
        """LUTs of every layer's PE x SIMD lanes (x w_bits x a_bits) at BNN-PYNQ's LUTs per lane,
        times an assumed mm^2 per LUT (see MM2_PER_LUT): the design is sized per layer, so this
        needs the profile (NaN without one)."""
        if profile is None:
            return math.nan
        luts = sum(l.groups * math.prod(fold_of(l, self)) * l.w_bits * l.a_bits
                   for l in profile.layers) * LUTS_PER_LANE_BIT
        return luts * MM2_PER_LUT


def matrix(layer: LayerProfile) -> tuple[int, int]:
    """(MH, MW) of one group."""
    kh, kw = layer.kernel
    return layer.filters_per_group, layer.channels_per_group * kh * kw


@functools.lru_cache(maxsize=65536)
def largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def fold_of(layer: LayerProfile, cfg: FinnConfig) -> tuple[int, int]:
    """(PE, SIMD) of a layer: its ``folding`` entry (checked against FINN's rule), else the largest
    divisors of MH and MW within ``pe`` and ``simd``."""
    mh, mw = matrix(layer)
    if layer.name in cfg.folding:
        pe, simd = cfg.folding[layer.name]
        if mh % pe or mw % simd:
            raise ValueError(f"FinnConfig folding[{layer.name!r}]=[{pe}, {simd}] is not accepted: "
                             f"FINN needs PE to divide MH={mh} and SIMD to divide MW={mw}")
        return pe, simd
    return largest_divisor(mh, cfg.pe), largest_divisor(mw, cfg.simd)


def fold(layer: LayerProfile, pe: int, simd: int) -> int:
    """Cycles per output pixel: (MH / PE) * (MW / SIMD), per group (Umuroglu et al.)."""
    mh, mw = matrix(layer)
    return layer.groups * -(-mh // pe) * -(-mw // simd)


def cost(layer: LayerProfile, cfg: FinnConfig) -> Cost:
    pe, simd = fold_of(layer, cfg)
    bp = layer.w_bits * layer.a_bits
    cycles = fold(layer, pe, simd) * layer.windows
    c = Cost(cycles=cycles, peak_macs_per_cycle=layer.groups * pe * simd,
             compute_pj=layer.macs * cfg.energy.mac_pj(layer.w_bits, layer.a_bits,
                                                       matrix(layer)[1]),
             notes=[] if bp == 1 else [f"w_bits={layer.w_bits}, a_bits={layer.a_bits}: multi-bit "
                                       "lanes (finn-hlslib), same cycles per fold"])
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, pe), cost=c)


def network_cost(profile, cfg: FinnConfig) -> list[Cost]:
    cfg.check_profile(profile)
    return [cost(layer, cfg) for layer in profile.layers]

"""FINN (Umuroglu et al., "FINN: A Framework for Fast, Scalable Binarized Neural Network
Inference", FPGA 2017).

Each layer is a matrix-vector-threshold unit with PE processing rows (output channels) and SIMD
lanes (input elements). A layer with an MH x MW binarized weight matrix (MH = K output channels,
MW = C/g * R * S) is folded onto PE x SIMD and takes ceil(MH / PE) * ceil(MW / SIMD) cycles per
output pixel, times Ox*Oy pixels (times the groups). XNOR and popcount replace multiply-add.
Defaults: PE = SIMD = 32 for every layer (assumed; FINN sizes them per layer, set ``folding``:
{"layer name": [pe, simd]}); 200 MHz. Reported on a ZC706: MNIST 12.3 M images/s at 95.8%,
CIFAR-10 21,906 images/s at 80.1%. Non-binary layers are modelled as w_bits * a_bits binary passes
(bit-serial), with a note.
"""
from __future__ import annotations

import dataclasses
import math

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, memory


@dataclasses.dataclass(frozen=True)
class FinnConfig(ArchConfig):
    pe: int = 32
    """Processing elements (rows) per layer (assumed default)."""
    simd: int = 32
    """SIMD lanes per PE (assumed default)."""
    folding: dict = dataclasses.field(default_factory=dict)
    """Per-layer {name: [pe, simd]} overriding pe/simd."""
    freq_hz: float = 200e6
    """200 MHz (Umuroglu et al. 2017, ZC706)."""
    proteus: bool = True
    """Values are kept at each layer's own precision in the on-chip memories (Umuroglu et al.)."""
    storage_bits: int = 1
    """Packing granularity in bits (1: bit-exact, binarized values take 1 bit)."""

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


def fold(layer: LayerProfile, pe: int, simd: int) -> int:
    """Cycles per output pixel: ceil(MH / PE) * ceil(MW / SIMD), per group (Umuroglu et al.)."""
    kh, kw = layer.kernel
    mh, mw = layer.filters_per_group, layer.channels_per_group * kh * kw
    return layer.groups * cdiv(mh, pe) * cdiv(mw, simd)


def cost(layer: LayerProfile, cfg: FinnConfig) -> Cost:
    pe, simd = cfg.folding.get(layer.name, (cfg.pe, cfg.simd))
    notes = []
    bp = layer.w_bits * layer.a_bits
    if bp > 1:
        notes.append(f"w_bits={layer.w_bits}, a_bits={layer.a_bits}: FINN's XNOR-popcount needs "
                     f"binary layers; modelled as {bp} binary passes")
    cycles = fold(layer, pe, simd) * layer.windows * bp
    acc = math.ceil(math.log2(max(layer.channels_per_group * layer.kernel[0] * layer.kernel[1], 2)))
    c = Cost(cycles=cycles, peak_macs_per_cycle=pe * simd / bp,
             compute_pj=layer.macs * bp * cfg.energy.mac_pj(1, 1, acc_bits=acc), notes=notes)
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, pe), cost=c)

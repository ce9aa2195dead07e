"""BitFusion (Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture for
Accelerating Deep Neural Networks", ISCA 2018).

An N x M array of fusion units, each made of 2-bit "BitBricks" that fuse into one 8 x 8 multiplier,
or 4 at 4 x 4, or 16 at 2 x 2. Cycles of a conv layer (the formula of the authors' simulator,
hsharma35/bitfusion):

    cycles = B * ceil(OC / M) * Ox*Oy * K^2 * ceil(IC / (N * perf))
    perf   = f(p_a) * f(p_w),  f(p) = floor(pmax / max(p, pmin)) for p <= pmax, else 1 / ceil(p / pmax)

with pmax = 8, pmin = 2: precisions 5-8 gain nothing over 8, 3-4 gain 2x per operand, an operand
wider than 8 bits takes ceil(p / 8) times as long (temporal decomposition). Grouped convs per group;
FC layers are the 1x1 case. Default array 16 x 32 at 500 MHz (45 nm). Energy: one fused product
at the brick-rounded widths (2, 4, 8, or multiples of 8). Reported: 3.9x speedup and 5.1x energy
over Eyeriss; 2.6x / 3.9x over Stripes (45 nm); one fusion unit at 8 x 8: 148.8 uW at 500 MHz.
"""
from __future__ import annotations

import dataclasses
import math

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, memory


@dataclasses.dataclass(frozen=True)
class BitFusionConfig(ArchConfig):
    rows: int = 16
    """N: fusion units along the input channels (Sharma et al. 2018 default 16 x 32)."""
    cols: int = 32
    """M: fusion units along the output channels."""
    pmax: int = 8
    """Widest operand a fusion unit takes in one pass (bits)."""
    pmin: int = 2
    """BitBrick width (bits)."""
    batch: int = 1
    """B: images per run (the report is per image when 1)."""
    freq_hz: float = 500e6
    """500 MHz (Sharma et al. 2018, 45 nm)."""
    proteus: bool = True
    """Operands are stored at their own bit width (the simulator sizes its buffers and traffic by
    each layer's precision; hsharma35/bitfusion)."""
    storage_bits: int = 8
    """Packing granularity (bytes)."""

    def check(self):
        for f in ("rows", "cols", "pmax", "pmin", "batch"):
            if getattr(self, f) < 1:
                raise ValueError(f"BitFusionConfig {f}={getattr(self, f)}: expected an integer >= 1")
        if self.pmin > self.pmax:
            raise ValueError(f"BitFusionConfig pmin={self.pmin} > pmax={self.pmax}: expected "
                             "pmin <= pmax")


def factor(p: int, pmax: int, pmin: int) -> float:
    """Products per fusion unit per cycle along one operand (< 1: a wide operand takes passes)."""
    if p <= pmax:
        return pmax // max(p, pmin)
    return 1 / cdiv(p, pmax)


def brick_bits(p: int, pmax: int, pmin: int) -> int:
    """The width a p-bit operand really occupies: pmin * 2^k up to pmax, then multiples of pmax."""
    if p > pmax:
        return cdiv(p, pmax) * pmax
    w = pmin
    while w < p:
        w *= 2
    return min(w, pmax)


def cycles(layer: LayerProfile, cfg: BitFusionConfig) -> tuple[int, float]:
    """(cycles, perf) of the published formula, per group and summed over groups."""
    perf = factor(layer.a_bits, cfg.pmax, cfg.pmin) * factor(layer.w_bits, cfg.pmax, cfg.pmin)
    kh, kw = layer.kernel
    per_group = (cfg.batch * cdiv(layer.filters_per_group, cfg.cols) * layer.windows * kh * kw
                 * math.ceil(layer.channels_per_group / (cfg.rows * perf) - 1e-9))
    return layer.groups * per_group, perf


def cost(layer: LayerProfile, cfg: BitFusionConfig) -> Cost:
    n, perf = cycles(layer, cfg)
    bw = brick_bits(layer.w_bits, cfg.pmax, cfg.pmin)
    ba = brick_bits(layer.a_bits, cfg.pmax, cfg.pmin)
    c = Cost(cycles=n / cfg.batch, peak_macs_per_cycle=cfg.rows * cfg.cols * perf,
             compute_pj=layer.macs * cfg.energy.mac_pj(bw, ba), notes=[])
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, cfg.cols), cost=c)

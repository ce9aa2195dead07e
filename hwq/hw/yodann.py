"""YodaNN (Andri et al., "YodaNN: An Architecture for Ultra-Low Power Binary-Weight CNN
Acceleration", IEEE TCAD 2018 / ISVLSI 2016).

Binary weights (+1/-1, so multiplications become sign changes) and 12-bit activations, 65 nm.
32 sum-of-product units, each computing a full kernel window of up to 7 x 7 for one input channel
and one output channel per cycle: 32 * 49 = 1568 MACs per cycle; 1510 GOp/s at 1.2 V (two ops per
MAC: 1510e9 / 3136 = 481 MHz), 61.2 TOp/s/W at 0.6 V. A layer takes
Ox*Oy * C * ceil(K / 32) * ceil(R / 7) * ceil(S / 7) cycles (grouped convs per group); smaller
kernels leave part of the 7 x 7 window idle (the chip's 3 x 3 mode is not modelled). Multi-bit
weights are modelled as that many binary bit-planes, activations wider than 12 bits as extra passes,
each with a note: the hardware itself does not support them.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, memory, reduction


@dataclasses.dataclass(frozen=True)
class YodaNNConfig(ArchConfig):
    sop_units: int = 32
    """Output channels per cycle (Andri et al.)."""
    kernel: int = 7
    """Largest kernel a SoP unit takes in one cycle (7 x 7, Andri et al.)."""
    a_width: int = 12
    """Activation width (12-bit, Andri et al.)."""
    freq_hz: float = 481e6
    """Derived: 1510 GOp/s / (2 * 1568 ops per cycle) at 1.2 V."""
    proteus: bool = True
    """Binary weights are stored as 1 bit, activations at the layer's precision (Andri et al.)."""
    storage_bits: int = 1
    """Packing granularity in bits (1: bit-exact)."""
    search_space = {"sop_units": (8, 16, 32, 64, 128)}

    def area_mm2(self, profile=None) -> float:
        """1.9 mm^2 core in 65 nm UMC (Andri et al.; unverified), half of it (assumed) in the 32
        sum-of-product units of 7 x 7 x 12 bits, which scale with the configuration."""
        return 1.9 * (0.5 + 0.5 * self.sop_units * self.kernel ** 2 * self.a_width / (32 * 49 * 12))

    def check(self):
        for f in ("sop_units", "kernel", "a_width"):
            if getattr(self, f) < 1:
                raise ValueError(f"YodaNNConfig {f}={getattr(self, f)}: expected an integer >= 1")


def cost(layer: LayerProfile, cfg: YodaNNConfig) -> Cost:
    notes = []
    wp = layer.w_bits if layer.w_bits > 1 else 1
    if wp > 1:
        notes.append(f"w_bits={layer.w_bits}: YodaNN needs binary weights; modelled as {wp} "
                     "binary bit-planes")
    ap = cdiv(layer.a_bits, cfg.a_width)
    if ap > 1:
        notes.append(f"a_bits={layer.a_bits} exceeds {cfg.a_width} bits: {ap} passes")
    kh, kw = layer.kernel
    slots = cdiv(kh, cfg.kernel) * cdiv(kw, cfg.kernel)
    cycles = (layer.windows * layer.in_channels * cdiv(layer.filters_per_group, cfg.sop_units)
              * slots * wp * ap)
    peak = cfg.sop_units * cfg.kernel * cfg.kernel / (wp * ap)
    c = Cost(cycles=cycles, peak_macs_per_cycle=peak,
             compute_pj=layer.macs * wp * ap * cfg.energy.mac_pj(1, cfg.a_width, reduction(layer)),
             notes=notes)
    # weights stay in the chip's latch memory for the whole layer; an input feeds 32 filters
    return memory(layer, cfg, w_reuse=layer.windows,
                  a_reuse=min(layer.filters_per_group, cfg.sop_units), cost=c)

"""DianNao (Chen et al., "DianNao: A Small-Footprint High-Throughput Accelerator for Ubiquitous
Machine-Learning", ASPLOS 2014).

One NFU of Tn x Tn = 16 x 16 multipliers (16 input channels of 16 filters per cycle), 16-bit fixed
point, 0.98 GHz, 65 nm, 452 GOP/s, 485 mW, 3.02 mm^2; small buffers (NBin / NBout 2 KB, SB 32 KB)
fed from main memory. Cycles: groups * ceil(C/g / 16) * ceil(K/g / 16) * R*S * Ox*Oy.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, dadn_steps, memory, passes, reduction, wide_note


@dataclasses.dataclass(frozen=True)
class DianNaoConfig(ArchConfig):
    tn: int = 16
    """NFU size: Tn inputs x Tn outputs per cycle (Chen et al. ASPLOS 2014)."""
    width: int = 16
    """16-bit fixed point (Chen et al. 2014)."""
    freq_hz: float = 0.98e9
    """0.98 GHz (Chen et al. 2014, 65 nm)."""
    search_space = {"tn": (4, 8, 16, 32, 64)}

    def check(self):
        if self.tn < 1 or self.width < 1:
            raise ValueError(f"DianNaoConfig tn={self.tn}, width={self.width}: expected >= 1")

    def area_mm2(self, profile=None) -> float:
        """3.02 mm^2 at 65 nm (Chen et al. 2014), the NFU (about half, assumed) scaled with
        Tn^2 x width^2."""
        return 3.02 * (0.5 + 0.5 * self.tn ** 2 * self.width ** 2 / (16 * 16 * 256))


def cost(layer: LayerProfile, cfg: DianNaoConfig) -> Cost:
    p = passes(layer.w_bits, cfg.width) * passes(layer.a_bits, cfg.width)
    cycles = dadn_steps(layer, cfg.tn, cfg.tn) * layer.windows * p
    c = Cost(cycles=cycles, peak_macs_per_cycle=cfg.tn * cfg.tn / p,
             compute_pj=layer.macs * p * cfg.energy.mac_pj(cfg.width, cfg.width, reduction(layer)),
             notes=wide_note(layer, cfg.width, "DianNao"))
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, cfg.tn), cost=c)

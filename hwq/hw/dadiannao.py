"""DaDianNao (Chen et al., "DaDianNao: A Machine-Learning Supercomputer", MICRO 2014): the baseline.

16 tiles; each tile's NFU takes 16 input channels ("lanes") of 16 filters per cycle, all bit-parallel
16-bit fixed point, one window at a time: 4096 MACs per cycle. A conv layer takes
groups * ceil(C/g / 16) * ceil(K/g / 256) * R*S * Ox*Oy cycles; an FC layer is the 1x1, one-window
case (DNNsim's DaDianNao model, isakedo/DNNsim, has the same loop). Activations are broadcast to all
256 filters; each weight is read for every window (no reuse across windows).
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, dadn_steps, memory, passes, reduction, wide_note


DADN_MM2 = 67.73
"""DaDianNao node area, 28 nm, 16 tiles with their eDRAM (Chen et al. MICRO 2014)."""
NFU_SHARE = 0.5
"""Share of that area in the NFUs, the part that scales with the datapath (assumed; the rest,
eDRAM and interconnect, scales with the tiles)."""


def dadn_area(tiles: int, nfu_scale: float) -> float:
    """DaDianNao-style area in mm^2 (28 nm): the node scaled by tiles / 16, its NFU share by
    ``nfu_scale`` (1 = DaDianNao's 16 x 16 lanes of 16-bit MACs per tile)."""
    return DADN_MM2 * tiles / 16 * ((1 - NFU_SHARE) + NFU_SHARE * nfu_scale)


@dataclasses.dataclass(frozen=True)
class DaDianNaoConfig(ArchConfig):
    tiles: int = 16
    """Tiles per node (Chen et al. 2014)."""
    filters: int = 16
    """Filters (NFU rows) per tile (Chen et al. 2014; DNNsim N_ROWS per tile)."""
    lanes: int = 16
    """Input channels per filter per cycle (Chen et al. 2014; DNNsim WEIGHT_LANES)."""
    width: int = 16
    """Datapath width in bits: 16-bit fixed point (Chen et al. 2014)."""
    freq_hz: float = 606e6
    """606 MHz (Chen et al. 2014, 28 nm; unverified)."""
    search_space = {"tiles": (4, 8, 16, 32), "filters": (8, 16, 32), "lanes": (8, 16, 32)}

    def check(self):
        for f in ("tiles", "filters", "lanes", "width"):
            if getattr(self, f) < 1:
                raise ValueError(f"{type(self).__name__} {f}={getattr(self, f)} is not accepted: "
                                 "expected an integer >= 1")

    def area_mm2(self, profile=None) -> float:
        """DaDianNao's 67.73 mm^2 (28 nm), multipliers scaled with lanes x filters x width^2."""
        return dadn_area(self.tiles, self.filters * self.lanes * self.width ** 2 / (16 * 16 * 256))


def parallel_cost(layer: LayerProfile, cfg: DaDianNaoConfig, design: str) -> Cost:
    """A bit-parallel pass over the layer on a DaDianNao-shaped engine (also the FC path of the
    Stripes family)."""
    p = passes(layer.w_bits, cfg.width) * passes(layer.a_bits, cfg.width)
    filters = cfg.filters * cfg.tiles
    cycles = dadn_steps(layer, cfg.lanes, filters) * layer.windows * p
    cost = Cost(cycles=cycles, peak_macs_per_cycle=filters * cfg.lanes / p,
                compute_pj=layer.macs * p * cfg.energy.mac_pj(cfg.width, cfg.width,
                                                              reduction(layer)),
                notes=wide_note(layer, cfg.width, design))
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, filters), cost=cost)


def cost(layer: LayerProfile, cfg: DaDianNaoConfig) -> Cost:
    return parallel_cost(layer, cfg, "DaDianNao")

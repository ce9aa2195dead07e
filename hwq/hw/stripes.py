"""Stripes (Judd et al., "Stripes: Bit-Serial Deep Neural Network Computing", MICRO 2016).

DaDianNao's organisation with bit-serial activations: each tile has 16 columns of serial
inner-product units, so it processes 16 windows at once, taking p_a cycles per activation (p_a:
the layer's activation precision, set by profiling) with 16-bit weights in parallel. A conv layer
takes groups * ceil(C/g / 16) * ceil(K/g / 256) * R*S * ceil(Ox*Oy / 16) * p_a cycles: at p_a = 16
and Ox*Oy a multiple of 16 that is DaDianNao's count (otherwise the last group of windows leaves
columns idle). FC layers have one window and run bit-parallel as on DaDianNao (no speedup); an FC
layer over several tokens is treated as the 1x1 convolution it is.
Reported: 1.92x average speedup over DaDianNao (1.30x to 4.51x), 57% more energy efficient, +32%
area. A weight fetched once serves the 16 windows.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, dadn_steps, memory, passes, reduction, single_window
from .dadiannao import dadn_area, parallel_cost

AREA_OVER_DADN = 1.32
"""Stripes' area relative to DaDianNao (Judd et al. 2016: +32%), all of it in the serial units."""


@dataclasses.dataclass(frozen=True)
class StripesConfig(ArchConfig):
    tiles: int = 16
    """Tiles (as DaDianNao, Judd et al. 2016)."""
    filters: int = 16
    """Filters per tile (as DaDianNao)."""
    lanes: int = 16
    """Input channels per filter per step (as DaDianNao)."""
    columns: int = 16
    """Windows processed concurrently per tile (Judd et al. 2016)."""
    width: int = 16
    """Weight width, bit-parallel (16-bit fixed point)."""
    freq_hz: float = 606e6
    """Same clock as the DaDianNao baseline (the paper compares at equal frequency)."""
    search_space = {"tiles": (4, 8, 16, 32), "filters": (8, 16, 32), "lanes": (8, 16, 32),
                    "columns": (8, 16, 32)}

    def check(self):
        for f in ("tiles", "filters", "lanes", "columns", "width"):
            if getattr(self, f) < 1:
                raise ValueError(f"{type(self).__name__} {f}={getattr(self, f)} is not accepted: "
                                 "expected an integer >= 1")

    def area_mm2(self, profile=None) -> float:
        """DaDianNao's area +32% at the defaults (Judd et al. 2016); the serial units scale with
        filters x lanes x columns x width. Loom, Tartan, Pragmatic and Dynamic Stripes inherit
        this (assumed: their papers' own area figures are not in the reference notes)."""
        units = self.filters * self.lanes * self.columns * self.width / (16 * 16 * 16 * 16)
        nfu = (AREA_OVER_DADN - 1 + 0.5) / 0.5  # the NFU share that gives +32% at the defaults
        return dadn_area(self.tiles, nfu * units)


def serial_conv(layer: LayerProfile, cfg: StripesConfig, step_cycles: float, serial_bits: float,
                notes: list[str]) -> Cost:
    """A conv layer on a Stripes-shaped engine where each step (one brick of 16 activations per
    column) takes ``step_cycles`` cycles and each activation costs ``serial_bits`` serial
    bit-products (for energy)."""
    wp = passes(layer.w_bits, cfg.width)
    if wp > 1:
        notes = notes + [f"w_bits={layer.w_bits} exceeds the {cfg.width}-bit weights: {wp} passes"]
    filters = cfg.filters * cfg.tiles
    steps = dadn_steps(layer, cfg.lanes, filters) * cdiv(layer.windows, cfg.columns)
    units = filters * cfg.lanes * cfg.columns
    cost = Cost(cycles=steps * step_cycles * wp,
                peak_macs_per_cycle=units / (step_cycles * wp),
                compute_pj=layer.macs * wp * cfg.energy.mac_pj(cfg.width, serial_bits,
                                                               reduction(layer)),
                notes=list(notes))
    return memory(layer, cfg, w_reuse=min(layer.windows, cfg.columns),
                  a_reuse=min(layer.filters_per_group, filters), cost=cost)


def cost(layer: LayerProfile, cfg: StripesConfig) -> Cost:
    if single_window(layer):
        return parallel_cost(layer, cfg, "Stripes (FC, bit-parallel)")
    return serial_conv(layer, cfg, layer.a_bits, layer.a_bits, [])

"""Loom (Sharify et al., "Loom: Exploiting Weight and Activation Precisions to Accelerate
Convolutional Neural Networks", DAC 2018).

Bit-serial in both weights and activations, built to the same peak as an equivalent bit-parallel
engine at 16 x 16 bits (here: the DaDianNao baseline's 4096 MACs per cycle). Like Stripes, a tile
processes its windows 16 at a time (``columns``), so a conv layer takes
DaDN steps * ceil(Ox*Oy / 16) * ceil(p_a / serial_bits) * serial_bits * p_w / 16 cycles (DNNsim's
ceil(p_a / serial_bits) * p_w per step): Stripes' count scaled by p_w / 16, with the same window
fragmentation, so at 16-bit weights Loom takes exactly Stripes' time. An FC layer, with one window,
scales with p_w / 16 of DaDianNao's. With ``dynamic`` the activation
precision is the run-time one (the measured mean pallet precision, as Dynamic Stripes); with
``dynamic_weights`` the weight precision is the measured mean over groups of 16 weights (assumed
extension; Loom itself uses the per-layer weight precision).
Reported: 4.38x speedup and 3.54x energy efficiency over the equivalent bit-parallel design (128
16x16 MACs per cycle); an earlier version: 2.34x / 2.23x with weights from HBM2.
"""
from __future__ import annotations

import dataclasses
import math

from ..profile import LayerProfile
from .cost import Cost, cdiv, dadn_steps, dynamic, memory, reduction, single_window
from .stripes import StripesConfig


@dataclasses.dataclass(frozen=True)
class LoomConfig(StripesConfig):
    serial_bits: int = 1
    """Activation bits processed per cycle (Loom's 1-, 2- and 4-bit variants; 1 by default)."""
    dynamic: bool = False
    """Use the run-time activation precision (needs profile statistics)."""
    dynamic_weights: bool = False
    """Use the run-time weight-group precision (needs statistics; assumed extension)."""

    def check(self):
        super().check()
        if self.serial_bits not in (1, 2, 4):
            raise ValueError(f"LoomConfig serial_bits={self.serial_bits} is not accepted: "
                             "expected 1, 2 or 4")


def cost(layer: LayerProfile, cfg: LoomConfig) -> Cost:
    notes: list[str] = []
    p_a: float = layer.a_bits
    p_w: float = layer.w_bits
    if cfg.dynamic and not single_window(layer):
        p_a, notes = dynamic(layer, "a_pallet_prec", "dynamic activation precision")
    if cfg.dynamic_weights:
        s = layer.stats
        if s is not None and s.w_group_prec and sum(s.w_group_prec):
            p_w = max(s.w_group_prec_mean, 1.0)
        else:
            notes = notes + [f"no run-time statistics in the profile: weight precision taken as "
                             f"the static w_bits={layer.w_bits}"]
    filters = cfg.filters * cfg.tiles
    peak16 = filters * cfg.lanes
    if not single_window(layer):
        serial_a = math.ceil(p_a / cfg.serial_bits - 1e-9) * cfg.serial_bits
        # Stripes' steps: 16 windows per column group, a fragment of one still costs a step
        steps = dadn_steps(layer, cfg.lanes, filters) * cdiv(layer.windows, cfg.columns)
        cycles = steps * serial_a * p_w / 16
        scale = serial_a * p_w / (16 * 16)
    else:
        serial_a = 16
        scale = p_w / 16
        cycles = dadn_steps(layer, cfg.lanes, filters) * layer.windows * scale
    c = Cost(cycles=cycles, peak_macs_per_cycle=peak16 / scale,
             compute_pj=layer.macs * cfg.energy.mac_pj(p_w, serial_a, reduction(layer)),
             notes=notes)
    return memory(layer, cfg, w_reuse=min(layer.windows, cfg.columns),
                  a_reuse=min(layer.filters_per_group, filters), cost=c)

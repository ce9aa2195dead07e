"""Bit-pragmatic (Albericio et al., "Bit-Pragmatic Deep Neural Network Computing", MICRO 2017).

Stripes' organisation, but each activation is processed as its essential (non-zero) bits, one
"oneffset" per cycle per lane: a brick of 16 activations takes as many cycles as its lane with the
most set bits. With all columns in lockstep (``run_ahead`` 0, the base design) a pallet of 16 bricks
takes as long as its slowest lane: the measured mean of the pallet's largest essential-bit count.
The column-synchronized variant lets each column run up to ``run_ahead`` pallets ahead (extra weight
registers per column); its time per pallet is estimated as in Dynamic Stripes (expected maximum over
the columns of sums of R + 1 independent brick times, hwq.hw.cost.expected_max_of_sums). A brick
takes at least one cycle. The two-stage shifter (first stage of B bits) can add stalls when a lane's
oneffsets are far apart; those are not modelled (the ideal, full shifter), nor is Booth-like
recoding. FC layers run bit-parallel. Energy: 16-bit weights times the mean essential bits.
Reported: 2.6x over DaDianNao on conv layers (1.4x over Stripes), 3.1x with the improved cross-lane
synchronization. Needs run-time statistics; without them the static precision is used (Stripes'
time) and the report says so.

Since an activation's essential bits never exceed the bits it needs, on the same data Pragmatic is
never slower than Dynamic Stripes, which is never slower than Stripes.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .cost import NO_STATS, Cost, single_window
from .dadiannao import parallel_cost
from .dstripes import step_cycles
from .stripes import StripesConfig, serial_conv


@dataclasses.dataclass(frozen=True)
class PragmaticConfig(StripesConfig):
    run_ahead: int = 0
    """Pallets a column may run ahead (0: lockstep pallets, the base design; Albericio et al.)."""


def cost(layer: LayerProfile, cfg: PragmaticConfig) -> Cost:
    if single_window(layer):
        return parallel_cost(layer, cfg, "Pragmatic (FC, bit-parallel)")
    cycles, notes = step_cycles(layer, cfg, "a_pallet_ess", "a_group_ess", "essential bits")
    if layer.stats is not None and layer.stats.a_values:
        serial = layer.stats.a_essential_mean
    else:
        serial = float(layer.a_bits)
        notes = notes or [NO_STATS.format(what="essential bits", bits=layer.a_bits)]
    return serial_conv(layer, cfg, cycles, serial, notes)

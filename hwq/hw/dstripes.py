"""Dynamic Stripes (Delmas Lascorz et al., "Dynamic Stripes: Exploiting the Dynamic Precision
Requirements of Activation Values in Neural Networks", arXiv 1706.00504, 2017).

Stripes, but the precision is detected at run time per group of activations: the bits the group's
largest magnitude needs plus a sign bit (hwq.profile.stats). The 16 columns of a tile share their
weights, so with no run-ahead they advance in lockstep and a pallet (16 groups) takes as long as its
widest group: the measured mean pallet precision. With ``run_ahead`` R > 0 a column may run up to R
pallets ahead (DNNsim's COLUMN_REGISTERS); the time per pallet is then estimated as the expected
maximum over the 16 columns of the sum of R + 1 group precisions drawn independently from the
measured histogram, divided by R + 1 (hwq.hw.cost.expected_max_of_sums; the independence is an
approximation). A group takes at least one cycle. FC layers run bit-parallel, as in Stripes.
Reported: +41% performance over Stripes. Needs run-time statistics; without them the static
precision is used and the report says so.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .cost import Cost, dynamic, expected_max_of_sums, floored, single_window
from .dadiannao import parallel_cost
from .stripes import StripesConfig, serial_conv


@dataclasses.dataclass(frozen=True)
class DynamicStripesConfig(StripesConfig):
    run_ahead: int = 0
    """Pallets a column may run ahead of the slowest (0: lockstep; DNNsim COLUMN_REGISTERS)."""


def step_cycles(layer: LayerProfile, cfg, pallet_field: str, group_field: str, what: str
                ) -> tuple[float, list[str]]:
    """Cycles per step from run-time histograms: the pallet's maximum in lockstep, or the run-ahead
    estimate from the per-group histogram (module docstring)."""
    if cfg.run_ahead == 0:
        return dynamic(layer, pallet_field, what)
    mean, notes = dynamic(layer, group_field, what)
    if notes:
        return mean, notes
    hist = floored(getattr(layer.stats, group_field), 1)
    return expected_max_of_sums(hist, cfg.columns, cfg.run_ahead + 1), []


def cost(layer: LayerProfile, cfg: DynamicStripesConfig) -> Cost:
    if single_window(layer):
        return parallel_cost(layer, cfg, "Dynamic Stripes (FC, bit-parallel)")
    cycles, notes = step_cycles(layer, cfg, "a_pallet_prec", "a_group_prec",
                                "dynamic activation precision")
    serial, _ = dynamic(layer, "a_group_prec", "precision")
    return serial_conv(layer, cfg, cycles, serial, notes)

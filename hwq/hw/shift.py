"""A multiplier-free, shift-based design for power-of-two weights (after Tann, Hashemi, Bahar and
Reda, "Hardware-Software Codesign of Accurate, Multiplier-free Deep Neural Networks", DAC 2017,
Brown University: power-of-two weights turn multiplications into shifts).

Assumed organisation: DaDianNao's array (16 tiles x 16 filters x 16 lanes, one window at a time)
with a barrel shifter in place of each multiplier, so cycles are DaDianNao's; the energy of a shift
is taken as that of an adder of the activation's width (assumed), plus the accumulation. Weights
must be powers of two (hwq's "pow2", or binary / ternary, which are signed powers of two); a layer
with other weights gets a note and is costed as if its weights were powers of two.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .cost import Cost, dadn_steps, memory, passes, reduction, wide_note
from .energy import accumulator_bits
from .dadiannao import DaDianNaoConfig, dadn_area

@dataclasses.dataclass(frozen=True)
class ShiftConfig(DaDianNaoConfig):
    acc_bits: int = 0
    """Accumulator width in bits; 0 (default): sized from the operands, a_bits + 2^(w_bits-1)
    shift positions + ceil(log2(reduction))."""

    def area_mm2(self, profile=None) -> float:
        """DaDianNao's area with each 16 x 16 multiplier replaced by a barrel shifter of about a
        quarter of its area (assumed; Tann et al. give no area)."""
        return super().area_mm2() - dadn_area(self.tiles, 0.75) + dadn_area(self.tiles, 0.0)


def cost(layer: LayerProfile, cfg: ShiftConfig) -> Cost:
    notes = wide_note(layer, cfg.width, "the shift design")
    if not layer.w_pow2:  # the profile says what the quantizer declared (power_of_two)
        notes.append(f"w_quant={layer.w_quant!r} is not power-of-two (w_pow2 false): costed as if "
                     "the weights were (a shift per MAC)")
    p = passes(layer.a_bits, cfg.width)
    filters = cfg.filters * cfg.tiles
    cycles = dadn_steps(layer, cfg.lanes, filters) * layer.windows * p
    a = min(layer.a_bits, cfg.width)
    acc = cfg.acc_bits or accumulator_bits(a, 2 ** (min(layer.w_bits, 6) - 1), reduction(layer))
    e = cfg.energy.add_pj(a) + cfg.energy.add_pj(acc)
    c = Cost(cycles=cycles, peak_macs_per_cycle=filters * cfg.lanes / p,
             compute_pj=layer.macs * p * e, notes=notes)
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, filters), cost=c)

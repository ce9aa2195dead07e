"""Energy per operation and per memory access: a replaceable table, 45 nm by default.

Default figures: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
45 nm, 0.9 V: 8-bit add 0.03 pJ, 32-bit add 0.1 pJ, 8-bit multiply 0.2 pJ, 32-bit multiply 3.1 pJ,
64-bit read of an 8 KB SRAM 10 pJ, 64-bit DRAM access 1300-2600 pJ.

Width scaling (as Accelergy's tables do): an adder's energy is linear in its width, a multiplier's
is quadratic (for an n x m multiplier: proportional to the n*m bit-products), both anchored at the
32-bit figures. The 8-bit figures of the same table (add 0.03 pJ, mult 0.2 pJ) are within 20% of
what this scaling gives (0.025, 0.19): tests check that.

Every accelerator model in hwq.hw uses the same table, so their ratios compare architectures, not
fabrication processes (the papers use 65, 45, 28 nm and FDSOI): a design's own silicon figures are
cited in its file, not mixed in. Static (leakage) energy is not modelled.
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Energies in picojoules. Replace any field: ``EnergyTable(dram_pj_per_64b=2600.0)``."""

    add_32b_pj: float = 0.1
    """32-bit integer add (Horowitz 2014)."""
    mult_32b_pj: float = 3.1
    """32-bit integer multiply (Horowitz 2014)."""
    sram_pj_per_64b: float = 10.0
    """64-bit read of an 8 KB SRAM (Horowitz 2014): the small banked buffers next to the compute
    units. (32 KB: 20 pJ, 1 MB: 100 pJ, unverified.)"""
    dram_pj_per_64b: float = 1300.0
    """64-bit DRAM access, low end of Horowitz's 1300-2600 pJ."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ValueError(f"EnergyTable {f.name}={v!r} is not accepted: expected a finite "
                                 "number >= 0 (picojoules)")

    def add_pj(self, bits: float) -> float:
        """An adder of ``bits`` bits: linear in width."""
        return self.add_32b_pj * bits / 32

    def mult_pj(self, w_bits: float, a_bits: float) -> float:
        """A w_bits x a_bits multiplier: proportional to its bit-products (quadratic for square)."""
        return self.mult_32b_pj * w_bits * a_bits / (32 * 32)

    def mac_pj(self, w_bits: float, a_bits: float, reduction: int = 1,
               acc_bits: float | None = None) -> float:
        """One multiply-accumulate at the widths the hardware really processes. The accumulator
        holds a sum of ``reduction`` products of w_bits x a_bits bits, so it is sized
        w_bits + a_bits + ceil(log2(reduction)) bits unless ``acc_bits`` says otherwise (a fixed
        32-bit accumulate made a 2-bit MAC cost 1/2.6 of an 8-bit one; sized, 1/4.2)."""
        if acc_bits is None:
            acc_bits = accumulator_bits(w_bits, a_bits, reduction)
        return self.mult_pj(w_bits, a_bits) + self.add_pj(acc_bits)

    @property
    def sram_pj_per_bit(self) -> float:
        return self.sram_pj_per_64b / 64

    @property
    def dram_pj_per_bit(self) -> float:
        return self.dram_pj_per_64b / 64


def accumulator_bits(w_bits: float, a_bits: float, reduction: int) -> float:
    """Bits that hold a sum of ``reduction`` products of w_bits x a_bits bits without overflow."""
    return w_bits + a_bits + math.ceil(math.log2(max(reduction, 1)))


HOROWITZ_45NM = EnergyTable()

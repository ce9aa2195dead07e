"""ENVISION (Moons et al., "ENVISION: A 0.26-to-10 TOPS/W Subword-Parallel Dynamic-Voltage-Accuracy-
Frequency-Scalable CNN Processor in 28nm FDSOI", ISSCC 2017) and DVAFS (Moons et al., DATE 2017).

A 16 x 16 array of precision-scalable MACs (16 input channels of 16 filters per cycle). Each MAC
runs 1 x 16b, 2 x 8b or 4 x 4b subword products: a layer runs in the narrowest mode that holds both
its weights and its activations, with N = 16 / mode products per MAC per cycle.
* ``scaling="das"`` (dynamic accuracy scaling): N times the throughput at the nominal clock and
  voltage; energy per product follows the narrower multiplier (mode x mode bits).
* ``scaling="dvafs"``: the same time per layer as at 16 bits (the clock divided by N, or by less
  when the layer's channels do not fill the N-times wider lanes), which lets the voltage drop:
  energy per product is further scaled by (V_mode / V_16)^2, the per-mode voltage of a clock / N.
A subword product costs a mode x mode multiplier and an accumulator sized for the mode
(2 * mode + log2 of the reduction), so the array's energy per product falls about 8x from 16 to 4
bits before the voltage drops. Memories hold values at the mode's width, on a fixed supply.
The 4-bit voltage is calibrated to the published span (see ``v4``). Reported: 0.26-10 TOPS/W
(the 10 TOPS/W point also skips zero operands, which hwq does not model); a 40 nm precursor
0.3-2.6 TOPS/W.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, dadn_steps, memory, passes, reduction

MODES = (4, 8, 16)


@dataclasses.dataclass(frozen=True)
class EnvisionConfig(ArchConfig):
    rows: int = 16
    """Filters per cycle (the 16 x 16 MAC array, Moons et al. 2017)."""
    lanes: int = 16
    """Input channels per cycle."""
    scaling: str = "dvafs"
    """"dvafs" (constant throughput, lower voltage) or "das" (faster at nominal voltage)."""
    freq_hz: float = 200e6
    """Nominal clock at 16 bits (assumed; ENVISION's published range tops near 200 MHz)."""
    v16: float = 1.1
    """Supply at 16-bit mode, volts (ENVISION's nominal 1.1 V; unverified)."""
    v8: float = 0.8
    """Supply at 8-bit DVAFS mode (assumed)."""
    v4: float = 0.55
    """Supply at 4-bit DVAFS mode: calibrated so that the MAC array's energy per operation falls
    by about the published 0.26 -> 10 TOPS/W span (38x) from 16-bit to 4-bit DVAFS (hwq: 34x on
    AlexNet's conv layers, tests/hw/test_energy.py); not a measured voltage."""
    search_space = {"rows": (4, 8, 16, 32, 64), "lanes": (4, 8, 16, 32, 64)}

    def area_mm2(self, profile=None) -> float:
        """1.87 mm^2 core in 28 nm FDSOI for the 16 x 16 array (Moons et al. 2017; unverified),
        scaled with rows x lanes."""
        return 1.87 * self.rows * self.lanes / 256

    def check(self):
        if self.scaling not in ("dvafs", "das"):
            raise ValueError(f"EnvisionConfig scaling={self.scaling!r} is not accepted: expected "
                             "'dvafs' or 'das'")
        if self.rows < 1 or self.lanes < 1:
            raise ValueError("EnvisionConfig rows and lanes: expected integers >= 1")


def cost(layer: LayerProfile, cfg: EnvisionConfig) -> Cost:
    bits = max(layer.w_bits, layer.a_bits)
    mode = next((m for m in MODES if bits <= m), 16)
    n = 16 // mode
    p = passes(bits, 16) ** 2 if bits > 16 else 1
    notes = [f"precision {bits} exceeds 16 bits: {p} passes"] if p > 1 else []
    cycles = dadn_steps(layer, cfg.lanes * n, cfg.rows) * layer.windows * p
    volt = {4: cfg.v4, 8: cfg.v8, 16: cfg.v16}[mode]
    # a subword product: a mode x mode multiplier (the cross terms are gated off) and its own
    # accumulator sized for the mode, both on the scalable supply
    e = cfg.energy.mac_pj(mode, mode, reduction(layer))
    freq = cfg.freq_hz
    if cfg.scaling == "dvafs":
        # constant throughput: the clock drops so that the layer takes as long as at 16 bits (by N
        # when the channels fill the wider lanes), and the supply drops with it
        e *= (volt / cfg.v16) ** 2
        freq = cfg.freq_hz * cycles / (dadn_steps(layer, cfg.lanes, cfg.rows) * layer.windows * p)
    c = Cost(cycles=cycles, peak_macs_per_cycle=cfg.rows * cfg.lanes * n / p,
             compute_pj=layer.macs * p * e, notes=notes)
    c.freq_hz = freq
    # memories hold N subwords per 16-bit word (at the mode's width), on a fixed supply
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, cfg.rows), cost=c,
                  store_bits=mode)

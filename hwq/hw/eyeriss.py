"""Eyeriss (Chen et al., "Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for
Convolutional Neural Networks", ISCA 2016; JSSC 2017), row-stationary, as the BitFusion authors
modelled it for their comparison (hsharma35/bitfusion, results/eyeriss_results.csv: 16-bit,
500 MHz, at most 256 MACs per cycle, batch 16).

Row stationary: a PE holds one filter row and slides it along one input row, so a "PE set" of
R x E PEs (filter rows x output rows) computes a 2-D convolution; its S * F MACs per PE run in
S * F cycles. On a rows x cols array an output longer than the array is cut into
ceil(E / cols) strips stacked under each other (R rows each). When the strips fit, several sets
run side by side (other filters and channels): floor(floor(rows / R) / strips) of them, times
floor(cols / E) when a set is narrower than the array; when they do not fit, the strips take
ceil(strips / floor(rows / R)) passes. Cycles = MACs / active PEs, with
active = sets * R * E or R * E / passes. FC layers fill the array with output neurons (or with
neurons x images when there are fewer than the array's PEs).
This first-order mapping reproduces the authors' per-layer Eyeriss cycles exactly where a set
fills whole columns (AlexNet conv1/conv2, ResNet-18's 7x7 and 1x1 layers, 3x3 layers on 32- and
56-wide outputs) and within 4% elsewhere, where their mapper packs partial sets more tightly
(tests/hw/test_eyeriss.py).

Energy (Chen et al. 2016's normalized costs: a register-file access costs about a MAC): a MAC and
its 4 register-file accesses at the shared table's 16-bit MAC energy, the global buffer at the
table's SRAM energy, DRAM at the table's. Area: 12.25 mm^2 in 65 nm for 168 PEs (3.5 x 3.5 mm
core, Chen et al. JSSC 2017), scaled with the PE count.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, memory, passes, reduction, wide_note

RF_ACCESSES_PER_MAC = 4
"""Register-file accesses per MAC in the row-stationary dataflow (the BitFusion authors' Eyeriss
results count RF = 4 x ALU on every layer)."""
CHIP_MM2, CHIP_PES = 12.25, 168
"""Eyeriss core area (65 nm) and PE count (Chen et al. JSSC 2017)."""


@dataclasses.dataclass(frozen=True)
class EyerissConfig(ArchConfig):
    rows: int = 16
    """PE array rows (the BitFusion authors' Eyeriss peaks at 256 MACs per cycle; the chip has
    12 x 14)."""
    cols: int = 16
    """PE array columns."""
    width: int = 16
    """16-bit fixed point (Chen et al. 2016)."""
    batch: int = 16
    """Images per run (the BitFusion comparison runs batch 16); reports are per image."""
    freq_hz: float = 500e6
    """500 MHz, as in the BitFusion comparison (the 65 nm chip runs at 200 MHz)."""
    search_space = {"rows": (8, 12, 16, 32), "cols": (8, 14, 16, 32)}

    def check(self):
        for f in ("rows", "cols", "width", "batch"):
            if getattr(self, f) < 1:
                raise ValueError(f"EyerissConfig {f}={getattr(self, f)} is not accepted: expected "
                                 "an integer >= 1")

    def area_mm2(self, profile=None) -> float:
        """Eyeriss' 12.25 mm^2 (65 nm) for 168 PEs, scaled with rows x cols (PEs and their
        buffer together, assumed)."""
        return CHIP_MM2 * self.rows * self.cols / CHIP_PES


def active_pes(layer: LayerProfile, cfg: EyerissConfig) -> float:
    """PEs busy on average under the row-stationary mapping (module docstring)."""
    pes = cfg.rows * cfg.cols
    if layer.kind == "fc" and layer.windows == 1:
        m = layer.out_channels
        if m >= pes:
            return m / cdiv(m, pes)
        return m * min(cfg.batch, pes // m)
    r = layer.kernel[0]
    e = layer.out_shape[1]
    strips = cdiv(e, cfg.cols)
    per_array = max(cfg.rows // r, 1) if r <= cfg.rows else 0
    if per_array == 0:  # a filter taller than the array: its rows take passes too
        return r * e / (strips * cdiv(r, cfg.rows))
    if strips == 1:  # short outputs: sets side by side along the columns too
        return per_array * (cfg.cols // e) * r * e
    if strips <= per_array:
        return (per_array // strips) * r * e
    return r * e / cdiv(strips, per_array)


def cost(layer: LayerProfile, cfg: EyerissConfig) -> Cost:
    p = passes(layer.w_bits, cfg.width) * passes(layer.a_bits, cfg.width)
    active = active_pes(layer, cfg)
    cycles = layer.macs * p / active
    e_mac = cfg.energy.mac_pj(cfg.width, cfg.width, reduction(layer))
    c = Cost(cycles=cycles, peak_macs_per_cycle=cfg.rows * cfg.cols / p,
             compute_pj=layer.macs * p * e_mac * (1 + RF_ACCESSES_PER_MAC),
             notes=wide_note(layer, cfg.width, "Eyeriss"))
    # row stationary: a filter row is reused along the output row (F), an input row by the R
    # PEs of a diagonal and the sets of other filters
    f = layer.out_shape[2] if layer.kind == "conv" else 1
    return memory(layer, cfg, w_reuse=f, a_reuse=min(layer.kernel[0] * layer.filters_per_group,
                                                     cfg.rows * cfg.cols), cost=c)

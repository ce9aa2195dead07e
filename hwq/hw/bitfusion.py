"""BitFusion (Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture for
Accelerating Deep Neural Networks", ISCA 2018), as the authors' simulator models it
(hsharma35/bitfusion; the tiling search is in hwq.hw.bitfusion_tiles).

An N x M array of fusion units, each made of 2-bit "BitBricks" that fuse into one 8 x 8 multiplier,
or 4 at 4 x 4, or 16 at 2 x 2: perf = floor(pmax / max(p_a, pmin)) * floor(pmax / max(p_w, pmin))
products per unit per cycle (an operand wider than pmax takes ceil(p / pmax) passes). A conv layer
(per tile) takes B * ceil(OC / M) * Ox*Oy * K^2 * ceil(IC / (N * perf)) cycles; a layer that reads
the network's input runs as im2col, B * Ox*Oy * ceil(OC / M) * ceil(K^2 IC / (N * perf)), so its
3 input channels do not leave most rows idle. FC layers are the 1x1 case. The simulator's tiling
search adds memory: tiles bounded by half of each buffer (WBUF / IBUF / OBUF, double-buffered),
DRAM traffic at ``bandwidth_bits_per_cycle``, and cycles = compute + max(0, memory - compute) +
the first fill and last drain. On its published per-layer results (192 and 4096 bits per cycle)
this reproduces every layer's cycles and stalls exactly (tests/hw/test_bitfusion.py).

Defaults: the BitFusion-vs-Eyeriss configuration of the authors' repository (``bf_e_conf.ini``):
16 x 32 units, 500 MHz, 45 nm, 192 bits per cycle, WBUF 64 KB, IBUF 32 KB, OBUF 16 KB, batch 16.
Energy as the simulator: the array's synthesized energy per cycle of compute (stall cycles are not
charged), buffer accesses at CACTI's per-bit energies, DRAM from the shared energy table.
Reported: 3.9x speedup and 5.1x energy reduction over Eyeriss; 2.6x / 3.9x over Stripes (45 nm).
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile, Profile
from .bitfusion_tiles import BufferEnergy, Tiled, lanes_ratio, search
from .config import ArchConfig
from .cost import Cost

UNIT_AREA_UM2 = 27752.83558 / 16
"""One fusion unit (pmax 8, pmin 2) at 45 nm, 500 MHz: the authors' synthesis of a 4 x 4 array,
27,752.8 um^2 (hsharma35/bitfusion, results/systolic_array_synth.csv), per unit."""
UNIT_PJ_PER_CYCLE = 3673500e-9 / 16 / 500e6 * 1e12
"""Dynamic energy of one fusion unit per cycle: the same 4 x 4 array's 3.6735 mW at 500 MHz,
/ 16 = 0.459 pJ (the simulator's 235.1 pJ per cycle for 16 x 32 units). The unit draws it in
every mode, so the energy per product falls with the products per cycle: 16x from 8 to 2 bits."""
SRAM_MM2_PER_KB = {"wbuf": 0.76747776 / 64, "ibuf": 0.242112 / 32, "obuf": 0.24330592 / 16}
"""CACTI (45 nm) areas of the authors' banked buffers at the default sizes (WBUF 64 KB in N*M
banks, IBUF 32 KB in N banks, OBUF 16 KB in M banks; the simulator's ``get_area``), per KB; a
size change scales them linearly (assumed)."""


@dataclasses.dataclass(frozen=True)
class BitFusionConfig(ArchConfig):
    rows: int = 16
    """N: fusion units along the input channels (bf_e_conf.ini: a = 16)."""
    cols: int = 32
    """M: fusion units along the output channels (bf_e_conf.ini: c = 32)."""
    pmax: int = 8
    """Widest operand a fusion unit takes in one pass (bits)."""
    pmin: int = 2
    """BitBrick width (bits)."""
    batch: int = 16
    """B: images per run (the paper and its simulator: 16); reports are per image."""
    freq_hz: float = 500e6
    """500 MHz (Sharma et al. 2018, 45 nm)."""
    bandwidth_bits_per_cycle: int = 192
    """DRAM interface width, bits per cycle (bf_e_conf.ini ``if_width``; also published: 4096)."""
    wbuf_bytes: int = 65536
    """Weight buffer (bf_e_conf.ini ``Wgt_SRAM``); half holds a tile (double buffering)."""
    ibuf_bytes: int = 32768
    """Input buffer (``Act_SRAM``)."""
    obuf_bytes: int = 16384
    """Output buffer (``Out_SRAM``), 32-bit partial sums."""
    unit_pj_per_cycle: float = UNIT_PJ_PER_CYCLE
    """Dynamic energy of one fusion unit per compute cycle (45 nm synthesis, see module)."""
    wbuf_read_pj_per_bit: float = 0.021
    """CACTI 45 nm per-bit energies of the default buffers, as the simulator prints them."""
    wbuf_write_pj_per_bit: float = 0.029
    ibuf_read_pj_per_bit: float = 0.059
    ibuf_write_pj_per_bit: float = 0.114
    obuf_read_pj_per_bit: float = 0.033
    obuf_write_pj_per_bit: float = 0.073
    proteus: bool = True
    """Operands are stored at their own bit width (the simulator sizes tiles and traffic by each
    layer's precision)."""
    storage_bits: int = 8
    search_space = {"rows": (8, 16, 32), "cols": (16, 32, 64),
                    "bandwidth_bits_per_cycle": (64, 192, 512)}

    def check(self):
        for f in ("rows", "cols", "pmax", "pmin", "batch", "bandwidth_bits_per_cycle",
                  "wbuf_bytes", "ibuf_bytes", "obuf_bytes"):
            if getattr(self, f) < 1:
                raise ValueError(f"BitFusionConfig {f}={getattr(self, f)} is not accepted: "
                                 "expected an integer >= 1")
        if self.pmin > self.pmax:
            raise ValueError(f"BitFusionConfig pmin={self.pmin} > pmax={self.pmax}: expected "
                             "pmin <= pmax")

    def area_mm2(self, profile=None) -> float:
        core = self.rows * self.cols * UNIT_AREA_UM2 * 1e-6
        return core + sum(SRAM_MM2_PER_KB[b] * getattr(self, f"{b}_bytes") / 1024
                          for b in ("wbuf", "ibuf", "obuf"))

    def buffer_energy(self) -> BufferEnergy:
        return BufferEnergy(self.unit_pj_per_cycle * self.rows * self.cols,
                            self.wbuf_read_pj_per_bit, self.wbuf_write_pj_per_bit,
                            self.ibuf_read_pj_per_bit, self.ibuf_write_pj_per_bit,
                            self.obuf_read_pj_per_bit, self.obuf_write_pj_per_bit,
                            self.energy.dram_pj_per_bit)


def factor(p: int, pmax: int, pmin: int) -> float:
    """Products per fusion unit per cycle along one operand (< 1: a wide operand takes passes)."""
    num, den = lanes_ratio(p, pmax, pmin)
    return num / den


def search_args(layer: LayerProfile, cfg: BitFusionConfig, reads_input: bool) -> tuple:
    """The arguments of the tiling search (hwq.hw.bitfusion_tiles.search) for one layer."""
    kh, kw = layer.kernel
    if layer.kind == "fc":
        # the simulator's FC: a 1x1 conv on a 1x1 map; tokens ride on the batch
        dims = (1, 1, 1, 1, 1, layer.in_channels, layer.out_channels, cfg.batch * layer.windows)
    else:
        _, oh, ow = layer.out_shape
        dims = (kh, kw, oh, ow, layer.stride[0], layer.channels_per_group,
                layer.filters_per_group, cfg.batch)
    return (*dims, layer.a_bits, layer.w_bits, reads_input and layer.kind == "conv",
            cfg.rows, cfg.cols, cfg.pmax, cfg.pmin, cfg.wbuf_bytes * 8, cfg.ibuf_bytes * 8,
            cfg.obuf_bytes * 8, cfg.bandwidth_bits_per_cycle, cfg.buffer_energy())


def tiled(layer: LayerProfile, cfg: BitFusionConfig, reads_input: bool) -> Tiled:
    """The simulator's result for one layer (one group; all ``cfg.batch`` images)."""
    return search(*search_args(layer, cfg, reads_input))


def layer_cost(layer: LayerProfile, cfg: BitFusionConfig, reads_input: bool = False) -> Cost:
    try:
        t = tiled(layer, cfg, reads_input)
    except ValueError as e:
        raise ValueError(f"layer {layer.name!r} on BitFusion (wbuf_bytes={cfg.wbuf_bytes}, "
                         f"ibuf_bytes={cfg.ibuf_bytes}, obuf_bytes={cfg.obuf_bytes}): {e}") from None
    g, b = layer.groups, cfg.batch
    perf = factor(layer.a_bits, cfg.pmax, cfg.pmin) * factor(layer.w_bits, cfg.pmax, cfg.pmin)
    e = cfg.buffer_energy()
    onchip = (t.wbuf_reads * e.wbuf_read + t.wbuf_writes * e.wbuf_write
              + t.ibuf_reads * e.ibuf_read + t.ibuf_writes * e.ibuf_write
              + t.obuf_reads * e.obuf_read + t.obuf_writes * e.obuf_write)
    dram = t.dram_reads + t.dram_writes
    notes = []
    if layer.kind == "conv" and layer.stride[0] != layer.stride[1]:
        notes.append(f"stride {layer.stride}: the simulator takes one stride; modelled with "
                     f"{layer.stride[0]}")
    wide = [f"{k}={v}" for k, v in (("w_bits", layer.w_bits), ("a_bits", layer.a_bits))
            if v > cfg.pmax]
    if wide:
        notes.append(f"{', '.join(wide)} exceeds the {cfg.pmax}-bit fusion unit: temporal "
                     "passes (ceil(p / pmax) per operand)")
    return Cost(cycles=g * t.cycles / b, peak_macs_per_cycle=cfg.rows * cfg.cols * perf,
                compute_pj=g * t.compute_cycles * e.core_pj_per_cycle / b,
                onchip_pj=g * onchip / b, offchip_pj=g * dram * e.dram / b,
                footprint_bits=layer.weights * layer.w_bits + layer.inputs * layer.a_bits,
                offchip_bits=round(g * dram / b),
                stall_cycles=g * t.stall_cycles / b, notes=notes)


def reads_network_input(profile: Profile) -> list[bool]:
    """Which layers read the network's input (the simulator runs them as im2col): the first layer,
    and the layers right after it that take the same input (parallel towers)."""
    flags, leading = [], True
    for i, layer in enumerate(profile.layers):
        same = i == 0 or (profile.input_shape is not None
                          and tuple(layer.in_shape) == tuple(profile.input_shape))
        leading = leading and same
        flags.append(leading)
    return flags


def network_cost(profile: Profile, cfg: BitFusionConfig) -> list[Cost]:
    flags = reads_network_input(profile)
    return [layer_cost(l, cfg, first) for l, first in zip(profile.layers, flags)]


def cost(layer: LayerProfile, cfg: BitFusionConfig) -> Cost:
    """One layer on its own (not the network's input layer); hwq.map uses network_cost."""
    return layer_cost(layer, cfg, False)

"""A systolic array (weight-, output- or input-stationary), the modern baseline, timed with the
SCALE-Sim formula (Samajdar et al., "SCALE-Sim", arXiv 1811.02883; scale-sim-v2).

A conv layer is a GEMM: M = Ox*Oy output pixels, N = K/g filters, K = C/g * R * S (per group). On an
R x C array:
    WS, IS: cycles = (2R + C + T - 2) * ceil(Sr / R) * ceil(Sc / C)
            WS: Sr = K, Sc = N, T = M;   IS: Sr = K, Sc = M, T = N
    OS:     cycles = (T + R + C - 2) * ceil(Sr / R) * ceil(Sc / C),  Sr = M, Sc = N, T = K
(e.g. M = N = K = 64 on 32 x 32: OS 504 cycles, WS 632). The PEs are ``bits``-bit MACs (8-bit, as
the TPU v1: Jouppi et al., ISCA 2017); a wider layer takes ceil(w/bits) * ceil(a/bits) passes,
with a note. Default: 128 x 128 at 700 MHz (assumed, a TPU-v1-like array at half its size).
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .config import ArchConfig
from .cost import Cost, cdiv, memory, passes, reduction, wide_note

DATAFLOWS = ("ws", "os", "is")


@dataclasses.dataclass(frozen=True)
class SystolicConfig(ArchConfig):
    rows: int = 128
    """Array rows R (assumed)."""
    cols: int = 128
    """Array columns C (assumed)."""
    dataflow: str = "ws"
    """"ws", "os" or "is"."""
    bits: int = 8
    """PE operand width (8-bit, TPU v1)."""
    freq_hz: float = 700e6
    """700 MHz (TPU v1, Jouppi et al. 2017; assumed for this array)."""
    storage_bits: int = 8
    search_space = {"rows": (16, 32, 64, 128, 256), "cols": (16, 32, 64, 128, 256)}

    def area_mm2(self, profile=None) -> float:
        """TPU v1's 331 mm^2 (28 nm, 256 x 256 8-bit MACs with its 24 MiB buffer; Jouppi et al.
        ISCA 2017) scaled with rows x cols x (bits / 8)^2 (assumed: buffers grow with the array)."""
        return 331.0 * self.rows * self.cols / (256 * 256) * (self.bits / 8) ** 2

    def check(self):
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"SystolicConfig dataflow={self.dataflow!r} is not accepted: expected "
                             f"one of {DATAFLOWS}")
        for f in ("rows", "cols", "bits"):
            if getattr(self, f) < 1:
                raise ValueError(f"SystolicConfig {f}={getattr(self, f)}: expected an integer >= 1")


def gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim's compute cycles of an (M x K) by (K x N) GEMM on a rows x cols array."""
    if dataflow == "os":
        sr, sc, t = m, n, k
        return (t + rows + cols - 2) * cdiv(sr, rows) * cdiv(sc, cols)
    sr, sc, t = (k, n, m) if dataflow == "ws" else (k, m, n)
    return (2 * rows + cols + t - 2) * cdiv(sr, rows) * cdiv(sc, cols)


def cost(layer: LayerProfile, cfg: SystolicConfig) -> Cost:
    kh, kw = layer.kernel
    m, n, k = layer.windows, layer.filters_per_group, layer.channels_per_group * kh * kw
    p = passes(layer.w_bits, cfg.bits) * passes(layer.a_bits, cfg.bits)
    cycles = layer.groups * gemm_cycles(m, n, k, cfg.rows, cfg.cols, cfg.dataflow) * p
    c = Cost(cycles=cycles, peak_macs_per_cycle=cfg.rows * cfg.cols / p,
             compute_pj=layer.macs * p * cfg.energy.mac_pj(cfg.bits, cfg.bits, reduction(layer)),
             notes=wide_note(layer, cfg.bits, "the systolic array"))
    # reuse of a fetched value inside the array, by dataflow (first order)
    w_reuse, a_reuse = {"ws": (m, min(n, cfg.cols)), "os": (min(m, cfg.rows), min(n, cfg.cols)),
                        "is": (min(m, cfg.cols), n)}[cfg.dataflow]
    return memory(layer, cfg, w_reuse=w_reuse, a_reuse=a_reuse, cost=c)

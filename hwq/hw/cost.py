"""What a design's cost function returns for one layer, and the helpers every design shares: the
DaDianNao-style loop counts, the memory model, and the use of run-time statistics.

Memory model (first order, the same for every design; assumed):
* values are stored at ``storage_bits`` each, or packed at the layer's own precision with Proteus;
* on-chip reads: every MAC needs a weight and an activation, but a value fetched once is shared by
  the ``w_reuse`` windows / ``a_reuse`` filters that the design processes together, so on-chip bits
  = MACs * (w_store / w_reuse + a_store / a_reuse) + outputs * a_store (written once);
* off-chip (with ``offchip``): the layer's weights and input are read and its output written once,
  at the stored width (the output at this layer's activation precision, standing in for the
  consumer's); a design that runs a batch of B images reads the weights once per batch (1/B per
  image);
* footprint: the layer's weights and input at the stored width (what must be held on chip).
Energies: on-chip bits * SRAM pJ/bit, off-chip bits * DRAM pJ/bit (hwq.hw.energy).
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from ..profile.stats import hist_mean
from .config import ArchConfig


@dataclasses.dataclass
class Cost:
    """One layer on one design: cycles, peak MACs per cycle at this layer's precisions (so that
    utilization = macs / (cycles * peak)), energies in pJ, memory bits, and notes (approximations,
    missing statistics)."""

    cycles: float
    peak_macs_per_cycle: float
    compute_pj: float
    onchip_pj: float = 0.0
    offchip_pj: float = 0.0
    footprint_bits: int = 0
    offchip_bits: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)
    freq_hz: float | None = None
    """Clock for this layer when the design scales it per layer (DVAFS); None: the config's."""
    stall_cycles: float = 0.0
    """Cycles among ``cycles`` spent waiting for memory (designs that model bandwidth)."""


def single_window(layer: LayerProfile) -> bool:
    """A plain FC layer: one window per sample. The Stripes family runs it differently from a conv;
    an FC layer over several tokens is a 1x1 convolution to these designs."""
    return layer.kind == "fc" and layer.windows == 1


def reduction(layer: LayerProfile) -> int:
    """Products summed into one output: C/g * R * S (the accumulator's reach)."""
    kh, kw = layer.kernel
    return layer.channels_per_group * kh * kw


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for positive ints."""
    return -(-a // b)


def packed_bits(values: int, bits: int, word: int = 16) -> int:
    """Bits taken by ``values`` values of ``bits`` bits packed back to back into ``word``-bit
    words (Proteus packs a layer's values at its precision; the last word may be partly used)."""
    return cdiv(values * bits, word) * word


def dadn_steps(layer: LayerProfile, lanes: int, filters: int) -> int:
    """Steps of a DaDianNao-style engine that takes ``lanes`` input channels of ``filters`` filters
    per step, one window at a time: groups * ceil(C/g / lanes) * ceil(K/g / filters) * R*S per window
    (Chen et al. MICRO 2014; DNNsim's DaDianNao model). Multiply by the windows processed."""
    kh, kw = layer.kernel
    return (layer.groups * cdiv(layer.channels_per_group, lanes)
            * cdiv(layer.filters_per_group, filters) * kh * kw)


def memory(layer: LayerProfile, cfg: ArchConfig, w_reuse: float, a_reuse: float,
           cost: Cost, store_bits: int | None = None) -> Cost:
    """Fill ``cost``'s on-chip / off-chip energy and bits (module docstring). Returns ``cost``.
    ``store_bits``: the width a design stores both operands at (ENVISION's subword mode)."""
    w_store = layer.w_bits if cfg.proteus else cfg.storage_bits
    a_store = layer.a_bits if cfg.proteus else cfg.storage_bits
    if store_bits is not None:
        w_store = a_store = store_bits
    word = cfg.storage_bits
    w_bits_total = packed_bits(layer.weights, w_store, word)
    in_bits = packed_bits(layer.inputs, a_store, word)
    out_bits = packed_bits(layer.outputs, a_store, word)
    onchip = layer.macs * (w_store / max(w_reuse, 1) + a_store / max(a_reuse, 1)) + out_bits
    cost.onchip_pj = onchip * cfg.energy.sram_pj_per_bit
    cost.footprint_bits = w_bits_total + in_bits
    # a design that runs a batch fetches the weights once for all of its images
    w_fetch = cdiv(w_bits_total, cfg.batch_size)
    cost.offchip_bits = (w_fetch + in_bits + out_bits) if cfg.offchip else 0
    cost.offchip_pj = cost.offchip_bits * cfg.energy.dram_pj_per_bit
    return cost


def passes(bits: int, width: int) -> int:
    """Passes a ``width``-bit datapath needs for ``bits``-bit values (split into width-bit parts)."""
    return cdiv(bits, width)


def wide_note(layer: LayerProfile, width: int, design: str) -> list[str]:
    """A note when a layer's precision exceeds a bit-parallel datapath (modelled as extra passes)."""
    wide = [f"{k}={b}" for k, b in (("w_bits", layer.w_bits), ("a_bits", layer.a_bits)) if b > width]
    if not wide:
        return []
    return [f"{', '.join(wide)} exceeds {design}'s {width}-bit datapath: modelled as "
            f"{passes(layer.w_bits, width) * passes(layer.a_bits, width)} passes"]


NO_STATS = "no run-time statistics in the profile: {what} taken as the static a_bits={bits}"


def dynamic(layer: LayerProfile, field: str, what: str, floor: int = 1
            ) -> tuple[float, list[str]]:
    """Mean of a run-time histogram (``LayerStats.<field>``), each group taking at least ``floor``
    cycles, or the static activation precision with a note when the profile has no statistics."""
    stats = layer.stats
    hist = getattr(stats, field, None) if stats is not None else None
    if not hist or sum(hist) == 0:
        return float(layer.a_bits), [NO_STATS.format(what=what, bits=layer.a_bits)]
    return hist_mean(hist, floor=floor), []


def expected_max_of_sums(hist: list[int], columns: int, depth: int) -> float:
    """E[max over ``columns`` columns of the sum of ``depth`` group times], group times i.i.d. from
    ``hist`` (counts indexed by cycles), divided by ``depth``: the time per pallet when columns may
    drift ``depth - 1`` pallets apart (run-ahead registers). i.i.d. is an approximation; it tends to
    the mean as depth grows and equals E[max of ``columns`` draws] for depth 1."""
    total = sum(hist)
    p = [c / total for c in hist]
    if depth < 1 or columns < 1:
        raise ValueError(f"expected_max_of_sums: columns={columns}, depth={depth}: expected >= 1")
    dist = [1.0]  # distribution of the sum of 0 draws
    for _ in range(depth):
        nxt = [0.0] * (len(dist) + len(p) - 1)
        for i, a in enumerate(dist):
            if a:
                for j, b in enumerate(p):
                    nxt[i + j] += a * b
        dist = nxt
    cdf, acc = [], 0.0
    for v in dist:
        acc += v
        cdf.append(min(acc, 1.0))
    # E[max] = sum over s of P(max > s) = sum (1 - F(s)^columns)
    e = sum(1.0 - f ** columns for f in cdf[:-1])
    return e / depth


def floored(hist: list[int], floor: int) -> list[int]:
    """The histogram with every bin below ``floor`` moved to ``floor`` (a step takes at least
    ``floor`` cycles)."""
    if len(hist) <= floor:
        return [0] * floor + [sum(hist)]
    return [0] * floor + [sum(hist[:floor + 1])] + list(hist[floor + 1:])

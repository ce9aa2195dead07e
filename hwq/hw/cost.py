"""What a design's cost function returns for one layer, and the helpers every design shares: the
DaDianNao-style loop counts, the memory model, and the use of run-time statistics.

Memory model (first order, the same for every design; assumed):
* values are stored at ``storage_bits`` each, or packed at the layer's own precision with Proteus;
* on-chip reads: every MAC needs a weight and an activation, but a value fetched once is shared by
  the ``w_reuse`` windows / ``a_reuse`` filters that the design processes together, so on-chip bits
  = MACs * (w_store / w_reuse + a_store / a_reuse) + outputs * a_store (written once);
* off-chip (with ``offchip``): the layer's weights and the input pixels its windows touch are read
  and its output written once, at the stored width (the output at this layer's activation
  precision, standing in for the consumer's); a design that runs a batch of B images reads the
  weights once per batch (1/B per image). The input read is ``touched_inputs``: all of it when the
  kernel is at least the stride, a quarter for a 1 x 1 stride-2 convolution (ResNet's downsampling
  shortcuts), which reads only every other row and column;
* footprint: the layer's weights and whole input at the stored width (the input tensor as the
  previous layer leaves it on chip).
Energies: on-chip bits * SRAM pJ/bit, off-chip bits * DRAM pJ/bit (hwq.hw.energy).
"""
from __future__ import annotations

import dataclasses
import functools

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


@functools.lru_cache(maxsize=4096)
def touched_rows(size: int, kernel: int, stride: int, pad: int, out: int,
                 dilation: int = 1) -> int:
    """Of ``size`` input rows (or columns), how many ``out`` windows of ``kernel`` taps at
    ``stride``, over an input padded by ``pad`` on each side, read: the rows i in [0, size) with
    i = stride * o + dilation * f - pad for some output o < out and tap f < kernel. When kernel >=
    stride the windows leave no gap, so every row from the first to the last one reached is read;
    when kernel < stride each window reads its own ``kernel`` rows and skips ``stride - kernel``.
    Dilated taps leave gaps that neighbouring windows may or may not fill, so those rows are
    counted one by one (out * kernel of them at most)."""
    if dilation > 1:
        rows = {stride * o + dilation * f - pad for o in range(out) for f in range(kernel)}
        return sum(1 for i in rows if 0 <= i < size)
    if kernel >= stride:
        last = min(size - 1, stride * (out - 1) + kernel - 1 - pad)
        return max(0, last + 1)
    n = 0
    for o in range(out):
        first = stride * o - pad
        n += max(0, min(size - 1, first + kernel - 1) - max(0, first) + 1)
    return n


def touched_inputs(layer: LayerProfile) -> int:
    """Input activations per sample that the layer's windows read: C * (rows read) * (columns read)
    for a conv (``touched_rows`` on each axis), all of them for an FC layer.

    This is what a loop nest fetches: ZigZag counts an input dimension's size as the distinct
    indices of ``ix = stride * ox + fx`` (Mei et al., IEEE Trans. Computers 2021;
    ``LayerNode.calc_pr_dimension_size``), and SCALE-Sim fetches from DRAM the addresses of its
    im2col operand matrix, which steps the window origin by the stride (Samajdar et al.,
    "SCALE-Sim", arXiv 1811.02883; scale-sim-v2's ``operand_matrix.calc_ifmap_elem_addr``), so a
    1 x 1 stride-2 convolution reads a quarter of its input in both. The two differ from this count only at a padded edge: ZigZag subtracts
    the full padding from both sides even when the last window does not reach the far side's
    padding (a 3 x 3 stride-2 pad-1 layer on 56 x 56 reads 56 rows; ZigZag counts 55), and
    SCALE-Sim takes an input padded beforehand. A dilated convolution's taps are ``dilation``
    apart (ZigZag's ``ix = stride * ox + dilation * fx``). A shape that does not follow from the
    geometry (a hand-written profile) is read whole, an overcount rather than an undercount."""
    if layer.kind != "conv":
        return layer.inputs
    c, h, w = layer.in_shape
    _, ho, wo = layer.out_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.kernel, layer.stride, layer.padding,
                                              layer.dilation)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if (h + 2 * ph - span_h) // sh + 1 != ho or (w + 2 * pw - span_w) // sw + 1 != wo:
        return layer.inputs
    return c * touched_rows(h, kh, sh, ph, ho, dh) * touched_rows(w, kw, sw, pw, wo, dw)


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
    read_bits = packed_bits(touched_inputs(layer), a_store, word)
    out_bits = packed_bits(layer.outputs, a_store, word)
    onchip = layer.macs * (w_store / max(w_reuse, 1) + a_store / max(a_reuse, 1)) + out_bits
    cost.onchip_pj = onchip * cfg.energy.sram_pj_per_bit
    cost.footprint_bits = w_bits_total + in_bits
    # a design that runs a batch fetches the weights once for all of its images
    w_fetch = cdiv(w_bits_total, cfg.batch_size)
    cost.offchip_bits = (w_fetch + read_bits + out_bits) if cfg.offchip else 0
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

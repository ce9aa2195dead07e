"""BitFusion's tiling search: compute cycles, memory stalls and buffer / DRAM traffic of one conv or
FC layer, as the authors' simulator (hsharma35/bitfusion, ``optimizer.py`` and
``accelerator.py``) defines them. Written from its description, vectorised with numpy.

A layer (batch B, output O_h x O_w, K_h x K_w kernel, stride S, IC -> OC channels) is split into
tiles of b images, o_h x o_w outputs, ic input and oc output channels. Tile sizes are powers of two
(capped at the full size; oc counts in multiples of the array's M columns, except under im2col);
every tiling is tried under each of the 120 orders of the five tile loops, and the fastest wins
(ties: the least energy).

Per tile (bits, w/i/o precision p_w, p_a, 32-bit partial sums), with lanes = N * perf:
    weights  ceil(K_h K_w ic / lanes) * lanes * oc * p_w
    inputs   (K_w + (o_w-1) S) (K_h + (o_h-1) S) ic b p_a, or o_h o_w K_h K_w ic b p_a (im2col)
    outputs  o_h o_w ceil(oc / M) M b * 32 (read and written)
A tiling whose tile exceeds half a buffer (double buffering) is not considered. Walking the tile
loops from the innermost out, a buffer keeps its data across the loops its tile does not depend on
until the data no longer fits in half the buffer; from there every loop multiplies its DRAM
traffic. Cycles:
    compute = tiles * b ceil(oc/M) o_h o_w K_h K_w ceil(ic / lanes)
              (im2col: tiles * b o_h o_w ceil(oc/M) ceil(K_h K_w ic / lanes))
    memory  = ceil(DRAM bits outside the first fill and last drain / bandwidth)
    latency = ceil(first fill / bandwidth) + ceil(last drain / bandwidth)
    cycles  = compute + max(0, memory - compute) + latency
Buffer accesses inside a tile follow the cheapest of input-, output- and weight-stationary orders
(the simulator's energy estimate), which is what breaks ties between tilings.

perf = floor(pmax / max(p_a, pmin)) * floor(pmax / max(p_w, pmin)); an operand wider than pmax,
which the simulator does not accept, takes ceil(p / pmax) passes (temporal decomposition, Sharma et
al. ISCA 2018 Section 3).
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

LOOPS = ("b", "ow", "oh", "ic", "oc")
# which buffers a tile loop indexes (the simulator's ``tile_deps``): wgt, act, out
DEPS = {"b": (0, 1, 1), "ow": (0, 1, 1), "oh": (0, 1, 1), "ic": (1, 1, 0), "oc": (1, 0, 1)}
ORDERS = tuple(itertools.permutations(LOOPS))
OUT_BITS = 32


class BufferEnergy(NamedTuple):
    """Energies used to rank equally fast tilings (pJ per cycle of the whole array, pJ per bit)."""

    core_pj_per_cycle: float
    wbuf_read: float
    wbuf_write: float
    ibuf_read: float
    ibuf_write: float
    obuf_read: float
    obuf_write: float
    dram: float


class Tiled(NamedTuple):
    """One layer (all of its batch): cycles, the memory stalls among them, and traffic in bits."""

    cycles: int
    stall_cycles: int
    compute_cycles: int
    wbuf_reads: float
    wbuf_writes: float
    ibuf_reads: float
    ibuf_writes: float
    obuf_reads: float
    obuf_writes: float
    dram_reads: float
    dram_writes: float

    def energy_pj(self, e: BufferEnergy) -> float:
        return (self.compute_cycles * e.core_pj_per_cycle + self.wbuf_reads * e.wbuf_read
                + self.wbuf_writes * e.wbuf_write + self.ibuf_reads * e.ibuf_read
                + self.ibuf_writes * e.ibuf_write + self.obuf_reads * e.obuf_read
                + self.obuf_writes * e.obuf_write + (self.dram_reads + self.dram_writes) * e.dram)


def lanes_ratio(p: int, pmax: int, pmin: int) -> tuple[int, int]:
    """Products per fusion unit along one operand as a fraction (numerator, denominator)."""
    if p <= pmax:
        return pmax // max(p, pmin), 1
    return 1, -(-p // pmax)


def _sizes(full: int, step: int = 1) -> list[int]:
    """Tile sizes step * 2^i up to the full size: ceil(log2(full / step)) + 1 choices."""
    n = math.ceil(math.log2(-(-full // step))) + 1 if full > step else 1
    return [min((1 << i) * step, full) for i in range(n)]


class _Tilings(NamedTuple):
    """The tilings of one layer that fit the buffers, with what does not depend on the loop order
    (arrays over the tilings)."""

    counts: np.ndarray       # (5, T) tile counts in LOOPS order
    tiles: tuple             # weight, input, output tile bits
    caps: np.ndarray         # half of each buffer, bits
    compute: np.ndarray      # compute cycles
    inner_w: np.ndarray      # buffer accesses inside the tiles (bits)
    inner_a: np.ndarray
    inner_o: np.ndarray


def _tilings(kh, kw, oh_full, ow_full, stride, ic_full, oc_full, batch, a_bits, w_bits, im2col,
             n, m, pmax, pmin, wbuf_bits, ibuf_bits, obuf_bits) -> _Tilings:
    pa, qa = lanes_ratio(a_bits, pmax, pmin)
    pw, qw = lanes_ratio(w_bits, pmax, pmin)
    num, den = pa * pw, qa * qw          # lanes = n * num / den

    def ceil_lanes(v):                   # ceil(v / lanes), exactly
        return -(-(v * den) // (n * num))

    lanes = n * num / den
    bs = np.array(_sizes(batch))
    os_ = np.arange(max(len(_sizes(oh_full)), len(_sizes(ow_full))))
    ics = np.array(_sizes(ic_full))
    ocs = np.array(_sizes(oc_full) if im2col else _sizes(oc_full, m))
    b, oi, ic, oc = (a.ravel() for a in np.meshgrid(bs, os_, ics, ocs, indexing="ij"))
    oh = np.minimum(1 << oi, oh_full)
    ow = np.minimum(1 << oi, ow_full)
    nb, noh, now = -(-batch // b), -(-oh_full // oh), -(-ow_full // ow)
    nic, noc = -(-ic_full // ic), -(-oc_full // oc)
    kk = kh * kw

    w_tile = ceil_lanes(kk * ic) * lanes * oc * w_bits
    if im2col:
        a_tile = (ow * oh * kk * ic * b * a_bits).astype(float)
    else:
        a_tile = ((kw + (ow - 1) * stride) * (kh + (oh - 1) * stride) * ic * b * a_bits
                  ).astype(float)
    o_tile = (ow * oh * (-(-oc // m)) * m * b * OUT_BITS).astype(float)
    caps = np.array([wbuf_bits / 2, ibuf_bits / 2, obuf_bits / 2])
    fits = (w_tile <= caps[0]) & (a_tile <= caps[1]) & (o_tile <= caps[2])
    if not fits.any():
        raise ValueError("no tile of the layer fits the buffers (WBUF/IBUF/OBUF): enlarge them")
    sel = np.nonzero(fits)[0]
    b, oh, ow, ic, oc = b[sel], oh[sel], ow[sel], ic[sel], oc[sel]
    counts = np.stack([nb[sel], now[sel], noh[sel], nic[sel], noc[sel]])  # LOOPS order
    tiles = counts.prod(axis=0)

    # order-independent: compute cycles, and buffer accesses inside a tile
    if im2col:
        compute = b * oh * ow * (-(-oc // m)) * ceil_lanes(kk * ic)
        os_loop = ceil_lanes(kk * ic) * lanes
    else:
        compute = b * (-(-oc // m)) * ow * oh * kk * ceil_lanes(ic)
        os_loop = ceil_lanes(ic) * lanes * kk
    compute = tiles * compute
    is_loop = (-(-oc // m)) * m
    ws_loop = b * oh * ow
    is_e = os_loop * ws_loop * (a_bits + is_loop * (w_bits + OUT_BITS))
    os_e = is_loop * ws_loop * (OUT_BITS + os_loop * (a_bits + w_bits))
    ws_e = os_loop * is_loop * (w_bits + ws_loop * (a_bits + OUT_BITS))
    best = np.minimum(np.minimum(is_e, os_e), ws_e)
    macs_t = (kk * ic * oh * ow * b).astype(float)
    outs_t = (oc * oh * ow * b).astype(float)
    inner_a = np.where(is_e == best, macs_t * a_bits, np.where(
        os_e == best, outs_t * kk * ic * a_bits, kk * ic * oc * ws_loop * a_bits))
    inner_o = np.where(is_e == best, macs_t * oc * OUT_BITS, np.where(
        os_e == best, outs_t * OUT_BITS, kk * ic * oc * ws_loop * OUT_BITS))
    inner_w = np.where(is_e == best, macs_t * oc * w_bits, np.where(
        os_e == best, outs_t * kk * ic * w_bits, kk * ic * oc * w_bits))
    return _Tilings(counts, (w_tile[sel], a_tile[sel], o_tile[sel]), caps, compute,
                    tiles * inner_w, tiles * inner_a, tiles * inner_o)


# LOOP_AT[o, level]: the loop (index in LOOPS) at tile level ``level`` (0 = innermost) of
# ORDERS[o]; DEP_AT[o, level]: the buffers (wgt, act, out) that loop indexes
LOOP_AT = np.array([[LOOPS.index(l) for l in order[::-1]] for order in ORDERS])
DEP_AT = np.array([[DEPS[l] for l in order[::-1]] for order in ORDERS], dtype=bool)


def _walk(t: _Tilings, o: np.ndarray, ti: np.ndarray) -> tuple[list, list]:
    """DRAM traffic (bits, per buffer) and the first fill each buffer keeps, for the candidates
    (loop order ``o[i]``, tiling ``ti[i]``). Walking the tile loops from the innermost out, a
    buffer keeps its data across the loops its tile does not depend on until the data no longer
    fits in half the buffer; from there every loop multiplies its traffic."""
    size = [t.tiles[ns][ti] for ns in range(3)]
    kept = [s.copy() for s in size]
    keep = [np.ones(len(ti), dtype=bool) for _ in range(3)]
    flat_counts = t.counts.ravel()
    n_t = t.counts.shape[1]
    for level in range(len(LOOPS)):
        cnt = flat_counts[LOOP_AT[o, level] * n_t + ti]
        deps = DEP_AT[o, level]
        for ns in range(3):
            dep = deps[:, ns]
            np.multiply(size[ns], cnt, out=size[ns], where=dep | ~keep[ns])
            newly = keep[ns] & dep
            fits_now = size[ns] <= t.caps[ns]
            np.copyto(kept[ns], size[ns], where=newly & fits_now)
            keep[ns] &= fits_now | ~newly
    return size, kept


class _Candidates(NamedTuple):
    """What the bandwidth does not change, for each candidate (loop order, tiling): its DRAM
    traffic, the first fill and last drain, the energy that ranks equally fast candidates, and
    ``flat``, its position o * T + tiling in the reference's enumeration (ties go to the first)."""

    compute: np.ndarray
    traffic: np.ndarray      # DRAM reads + writes, bits
    first: np.ndarray
    last: np.ndarray
    energy_pj: np.ndarray
    flat: np.ndarray
    sizes: tuple             # DRAM bits of each buffer (weights, inputs, outputs)
    inner: tuple             # buffer accesses inside the tiles (weights, inputs, outputs)


def _evaluate(t: _Tilings, o: np.ndarray, ti: np.ndarray, energy: BufferEnergy) -> _Candidates:
    size, kept = _walk(t, o, ti)
    compute = t.compute[ti]
    inner_w, inner_a, inner_o = t.inner_w[ti], t.inner_a[ti], t.inner_o[ti]
    # the output buffer's reads from DRAM (partial sums) follow the same walk as its writes
    rd = size[2]
    dram_rd = size[0] + size[1] + size[2]
    dram_wr = rd
    # the simulator charges the compute cycles (cycles - stall, which is exact: both are whole
    # numbers far below 2^53), so the energy does not depend on the bandwidth
    energy_pj = (compute * energy.core_pj_per_cycle + inner_w * energy.wbuf_read
                 + size[0] * energy.wbuf_write + inner_a * energy.ibuf_read
                 + size[1] * energy.ibuf_write + (rd + inner_o) * energy.obuf_read
                 + (size[2] + inner_o) * energy.obuf_write + (dram_rd + dram_wr) * energy.dram)
    return _Candidates(compute, dram_rd + dram_wr, kept[0] + kept[1] + kept[2], kept[2],
                       energy_pj, o * t.counts.shape[1] + ti, tuple(size),
                       (inner_w, inner_a, inner_o))


def _cycles(c: _Candidates, bandwidth: int) -> tuple[np.ndarray, np.ndarray]:
    """Cycles and stall cycles of each candidate at ``bandwidth`` bits per cycle."""
    latency = np.ceil(c.first / bandwidth) + np.ceil(c.last / bandwidth)
    memory = np.ceil((c.traffic - c.first - c.last) / bandwidth)
    stall = np.maximum(0, memory - c.compute) + latency
    return c.compute + stall, stall


def _pick(c: _Candidates, bandwidth: int) -> tuple[tuple, int, np.ndarray, np.ndarray]:
    """The fastest of ``c`` at ``bandwidth``, then the least energy, then the first: its key
    (cycles, energy, flat), index, and the cycles and stalls of all."""
    cycles, stall = _cycles(c, bandwidth)
    # fastest, then least energy, then the first (lexicographic, as np.lexsort over all orders)
    best = cycles == cycles.min()
    best &= c.energy_pj == c.energy_pj[best].min()
    i = int(np.flatnonzero(best)[np.argmin(c.flat[best])])
    return (cycles[i], c.energy_pj[i], c.flat[i]), i, cycles, stall


def _best(parts: list[_Candidates], bandwidth: int) -> Tiled:
    """The fastest candidate of all ``parts`` at ``bandwidth``, then the least energy, then the
    first."""
    picks = [(_pick(c, bandwidth), c) for c in parts]
    (_, i, cycles, stall), c = min(picks, key=lambda pc: pc[0][0])  # keys differ: flat is unique
    (s_w, s_a, s_o), (in_w, in_a, in_o) = c.sizes, c.inner
    return Tiled(cycles=int(cycles[i]), stall_cycles=int(stall[i]),
                 compute_cycles=int(c.compute[i]), wbuf_reads=float(in_w[i]),
                 wbuf_writes=float(s_w[i]), ibuf_reads=float(in_a[i]),
                 ibuf_writes=float(s_a[i]), obuf_reads=float(s_o[i] + in_o[i]),
                 obuf_writes=float(s_o[i] + in_o[i]), dram_reads=float(s_w[i] + s_a[i] + s_o[i]),
                 dram_writes=float(s_o[i]))


@functools.lru_cache(maxsize=None)
def _classes(code: int) -> np.ndarray:
    """The loop orders that can differ for tilings of signature ``code`` (``_signatures``): one
    per class of orders that walk the same sequence of (dependencies, count), the first of each
    class in ORDERS. A loop of count 1 changes nothing wherever it sits, and b, ow and oh index
    the same buffers, so two of them with equal counts can swap places."""
    active = [bool(code >> i & 1) for i in range(5)]
    same = {(0, 1): code >> 5 & 1, (0, 2): code >> 6 & 1, (1, 2): code >> 7 & 1}
    label = list(range(5))
    for (i, j), eq in same.items():  # equal counts among b, ow, oh: one label (transitive)
        if eq and active[i] and active[j]:
            label[j] = label[i] = min(label[i], label[j])
    seen, reps = set(), []
    for o, order in enumerate(ORDERS):
        key = tuple(label[LOOPS.index(l)] for l in order if active[LOOPS.index(l)])
        if key not in seen:
            seen.add(key)
            reps.append(o)
    return np.array(reps)


def _signatures(counts: np.ndarray) -> np.ndarray:
    """Per tiling: bits 0-4 the loops of count > 1 (LOOPS order), bits 5-7 whether b = ow,
    b = oh and ow = oh in count."""
    active = counts > 1
    code = (active * (1 << np.arange(5))[:, None]).sum(axis=0)
    code += (counts[0] == counts[1]) << 5
    code += (counts[0] == counts[2]) << 6
    code += (counts[1] == counts[2]) << 7
    return code


def _expand(t: _Tilings, tilings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidates (order, tiling) of ``tilings``: one order of each class (``_classes``)."""
    code = _signatures(t.counts[:, tilings])
    o_parts, t_parts = [], []
    for c in np.unique(code):
        ti = tilings[code == c]
        reps = _classes(int(c))
        o_parts.append(np.repeat(reps, len(ti)))
        t_parts.append(np.tile(ti, len(reps)))
    return np.concatenate(o_parts), np.concatenate(t_parts)


SEED_TILINGS = 16
"""Tilings with the lowest bound, searched first for the cycles every other must approach."""


def lower_bound(t: _Tilings, bandwidth: int) -> np.ndarray:
    """A bound under each tiling's cycles in every loop order. cycles = max(compute, ceil(M /
    bw)) + ceil(F / bw) + ceil(L / bw), M the DRAM traffic less the first fill F and last drain
    L; every order moves at least each tensor once (a loop a buffer depends on always
    multiplies its traffic), F at least a tile of each buffer, L an output tile, and
    ceil(a) + ceil(b) + ceil(c) >= ceil(a + b + c)."""
    w, a, o = t.tiles
    nb, now, noh, nic, noc = t.counts
    least = w * nic * noc + a * nb * now * noh * nic + 2 * o * nb * now * noh * noc
    fill = np.ceil((w + a + o) / bandwidth) + np.ceil(o / bandwidth)
    return np.maximum(t.compute + fill, np.ceil(least / bandwidth))


class _Walked:
    """The tilings of one layer on one array, buffers and energy table, and the candidates
    walked so far (the walk does not depend on the bandwidth): searches that differ only in
    bandwidth walk each tiling once between them."""

    def __init__(self, t: _Tilings, energy: BufferEnergy):
        self.t, self.energy = t, energy
        self.walked = np.zeros(t.counts.shape[1], dtype=bool)
        self.parts: list[_Candidates] = []

    def walk(self, tilings: np.ndarray) -> None:
        new = tilings[~self.walked[tilings]]
        if len(new):
            self.walked[new] = True
            self.parts.append(_evaluate(self.t, *_expand(self.t, new), self.energy))


@functools.lru_cache(maxsize=48)
def _walked(kh, kw, oh_full, ow_full, stride, ic_full, oc_full, batch, a_bits, w_bits, im2col,
            n, m, pmax, pmin, wbuf_bits, ibuf_bits, obuf_bits, energy) -> _Walked:
    """The layer's _Walked state, kept for the 48 most recent (layer, array, buffers, energy):
    two ResNet-50 configurations, at most about 1 MB each."""
    return _Walked(_tilings(kh, kw, oh_full, ow_full, stride, ic_full, oc_full, batch, a_bits,
                            w_bits, im2col, n, m, pmax, pmin, wbuf_bits, ibuf_bits, obuf_bits),
                   energy)


@functools.lru_cache(maxsize=8192)
def search(kh: int, kw: int, oh_full: int, ow_full: int, stride: int, ic_full: int, oc_full: int,
           batch: int, a_bits: int, w_bits: int, im2col: bool, n: int, m: int, pmax: int,
           pmin: int, wbuf_bits: int, ibuf_bits: int, obuf_bits: int, bandwidth: int,
           energy: BufferEnergy) -> Tiled:
    """The best tiling of one layer (module docstring). Buffer sizes in bits, bandwidth in bits
    per cycle. Raises ValueError when no tile fits the buffers.

    The same result as ``search_reference``, bit for bit (tests/hw/test_sweep.py), from fewer
    candidates: each class of orders that walk the same loops for a tiling (``_classes``) is
    walked once; a tiling whose ``lower_bound`` exceeds the cycles already reached by the
    SEED_TILINGS most promising ones is not walked (it can be neither the fastest nor tied);
    and the walks are kept for the next search that differs only in bandwidth (``_Walked``).
    Picking among more candidates than needed (walked for another bandwidth) is still exact:
    each is a real candidate, and the best one is among them."""
    state = _walked(kh, kw, oh_full, ow_full, stride, ic_full, oc_full, batch, a_bits, w_bits,
                    im2col, n, m, pmax, pmin, wbuf_bits, ibuf_bits, obuf_bits, energy)
    bound = lower_bound(state.t, bandwidth)
    state.walk(np.sort(np.argsort(bound, kind="stable")[:SEED_TILINGS]))
    reached = min(_cycles(c, bandwidth)[0].min() for c in state.parts)
    state.walk(np.flatnonzero(bound <= reached))
    return _best(state.parts, bandwidth)


def search_reference(kh: int, kw: int, oh_full: int, ow_full: int, stride: int, ic_full: int,
                     oc_full: int, batch: int, a_bits: int, w_bits: int, im2col: bool, n: int,
                     m: int, pmax: int, pmin: int, wbuf_bits: int, ibuf_bits: int,
                     obuf_bits: int, bandwidth: int, energy: BufferEnergy) -> Tiled:
    """``search`` the direct way: every tiling under every one of the 120 orders, as the
    simulator enumerates them (uncached). Kept to check the fast path against."""
    t = _tilings(kh, kw, oh_full, ow_full, stride, ic_full, oc_full, batch, a_bits, w_bits,
                 im2col, n, m, pmax, pmin, wbuf_bits, ibuf_bits, obuf_bits)
    n_t = t.counts.shape[1]
    o = np.repeat(np.arange(len(ORDERS)), n_t)
    ti = np.tile(np.arange(n_t), len(ORDERS))
    return _best([_evaluate(t, o, ti, energy)], bandwidth)

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


@functools.lru_cache(maxsize=8192)
def search(kh: int, kw: int, oh_full: int, ow_full: int, stride: int, ic_full: int, oc_full: int,
           batch: int, a_bits: int, w_bits: int, im2col: bool, n: int, m: int, pmax: int,
           pmin: int, wbuf_bits: int, ibuf_bits: int, obuf_bits: int, bandwidth: int,
           energy: BufferEnergy) -> Tiled:
    """The best tiling of one layer (module docstring). Buffer sizes in bits, bandwidth in bits
    per cycle. Raises ValueError when no tile fits the buffers."""
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
    counts = {"b": nb[sel], "oh": noh[sel], "ow": now[sel], "ic": nic[sel], "oc": noc[sel]}
    w_tile, a_tile, o_tile = w_tile[sel], a_tile[sel], o_tile[sel]
    tiles = counts["b"] * counts["oh"] * counts["ow"] * counts["ic"] * counts["oc"]

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
    inner_a, inner_o, inner_w = tiles * inner_a, tiles * inner_o, tiles * inner_w

    # order-dependent: what each buffer keeps across the tile loops (all orders at once)
    order_counts = np.stack([np.stack([counts[l] for l in order[::-1]]) for order in ORDERS])
    order_deps = np.array([[DEPS[l] for l in order[::-1]] for order in ORDERS], dtype=bool)
    shape = (len(ORDERS), len(sel))
    size = [np.broadcast_to(t, shape).astype(float) for t in (w_tile, a_tile, o_tile)]
    kept = [s.copy() for s in size]
    keep = [np.ones(shape, dtype=bool) for _ in range(3)]
    rd, rd_kept, rd_keep = size[2].copy(), size[2].copy(), np.ones(shape, dtype=bool)
    for level in range(len(LOOPS)):
        cnt = order_counts[:, level, :]
        for ns in range(3):
            dep = order_deps[:, level, ns][:, None]
            grow = ~keep[ns] | dep
            size[ns] = np.where(grow, size[ns] * cnt, size[ns])
            fits_now = size[ns] <= caps[ns]
            newly = keep[ns] & dep
            kept[ns] = np.where(newly & fits_now, size[ns], kept[ns])
            keep[ns] = np.where(newly & ~fits_now, False, keep[ns])
        dep = order_deps[:, level, 2][:, None]
        grow = ~rd_keep | dep
        rd = np.where(grow, rd * cnt, rd)
        newly = rd_keep & dep
        rd_kept = np.where(newly & (rd <= caps[2]), size[2], rd_kept)
        rd_keep = np.where(newly & (rd > caps[2]), False, rd_keep)

    dram_rd = size[0] + size[1] + size[2]
    dram_wr = rd
    first = kept[0] + kept[1] + kept[2]
    last = rd_kept
    latency = np.ceil(first / bandwidth) + np.ceil(last / bandwidth)
    memory = np.ceil((dram_rd + dram_wr - first - last) / bandwidth)
    stall = np.maximum(0, memory - compute) + latency
    cycles = compute + stall
    energy_pj = ((cycles - stall) * energy.core_pj_per_cycle + inner_w * energy.wbuf_read
                 + size[0] * energy.wbuf_write + inner_a * energy.ibuf_read
                 + size[1] * energy.ibuf_write + (rd + inner_o) * energy.obuf_read
                 + (size[2] + inner_o) * energy.obuf_write + (dram_rd + dram_wr) * energy.dram)
    # fastest, then least energy (lexicographic over all orders and tilings)
    idx = np.lexsort((energy_pj.ravel(), cycles.ravel()))[0]
    o, t = divmod(int(idx), len(sel))
    return Tiled(cycles=int(cycles[o, t]), stall_cycles=int(stall[o, t]),
                 compute_cycles=int(compute[t]), wbuf_reads=float(inner_w[t]),
                 wbuf_writes=float(size[0][o, t]), ibuf_reads=float(inner_a[t]),
                 ibuf_writes=float(size[1][o, t]), obuf_reads=float(rd[o, t] + inner_o[t]),
                 obuf_writes=float(size[2][o, t] + inner_o[t]), dram_reads=float(dram_rd[o, t]),
                 dram_writes=float(dram_wr[o, t]))

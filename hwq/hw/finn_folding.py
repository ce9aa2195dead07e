"""FINN folding from a profile: PE and SIMD for every layer so that the slowest layer meets a rate.

FINN (Umuroglu et al., FPGA 2017; Blott et al., FINN-R, TRETS 2018) gives every layer its own
matrix-vector unit; a layer with an MH x MW weight matrix (per group) folded onto PE x SIMD takes
groups * (MH / PE) * (MW / SIMD) * Ox*Oy cycles per image (hwq.hw.finn), and the pipeline's rate
is set by its slowest layer. FINN's rules: PE divides MH, SIMD divides MW.

Two ways to fold for a budget of T cycles per layer (the rate freq / T):

* ``set_folding``: FINN's own heuristic (``SetFolding``, Xilinx/finn,
  ``finn/transformation/fpgadataflow/set_folding.py``) for matrix-vector units: raise SIMD through
  the divisors of MW until the layer is under the target or the weight stream would exceed
  ``mvau_wwidth_max`` bits (w_bits * SIMD, default 36), then PE through the divisors of MH until it
  is under the target; if a layer cannot meet it, run again with the slowest layer's cycles as the
  target (two-pass relaxation) so that the others are not folded faster than the pipeline runs.
  FINN's target is strict (cycles < target).
* ``balanced``: for each layer, the (PE, SIMD) pair of divisors with the fewest lanes
  (PE x SIMD: hwq's area is proportional to them, and so are FINN's LUTs) among those within T
  cycles; equal lanes take equal cycles, and among them a weight stream within FINN's 36 bits is
  preferred, then the wider SIMD. Every pair is tried, so no layer has more lanes than the rate
  needs: never more than FINN's heuristic at the same rate, and fewer where SIMD-first overshoots
  (MW = 27: SIMD 3 -> 9 -> 27). At BNN-PYNQ's own rates it needs 2,095 lanes for CNV and 5,888
  for LFC where the published hand foldings use 2,272 and 6,272 and SetFolding 2,533 and 6,272
  (tests/hw/test_generate.py).

``finn_json`` writes a folding in FINN's folding-config shape (``{"Defaults": {}, "<node>":
{"PE": .., "SIMD": ..}}``, read by FINN's ``ApplyConfig``) with the node names FINN gives the
matrix-vector units of a chain network (``MVAU_hls_0``, ``MVAU_hls_1``, ... in layer order).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

from ..profile import LayerProfile, Profile
from .finn import matrix


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Fold(NamedTuple):
    pe: int
    simd: int
    cycles: int
    """Cycles per image of the layer: groups * (MH / PE) * (MW / SIMD) * windows."""


def cycles(layer: LayerProfile, pe: int, simd: int) -> int:
    mh, mw = matrix(layer)
    return layer.groups * (mh // pe) * (mw // simd) * layer.windows


MVAU_WWIDTH_MAX = 36
"""FINN's default ``mvau_wwidth_max``: the widest weight stream (w_bits x SIMD) SetFolding grows
SIMD to before it raises PE (Xilinx/finn, DataflowBuildConfig)."""


@functools.lru_cache(maxsize=4096)
def _staircase(groups: int, mh: int, mw: int, windows: int, w_bits: int, simd_max: int
               ) -> tuple[Fold, ...]:
    """The foldings worth having: by increasing lanes, each one faster than all with fewer lanes.
    Equal lanes take equal cycles; among them a weight stream within MVAU_WWIDTH_MAX bits is
    preferred, then the wider SIMD. SIMD at most ``simd_max``."""
    options = sorted(((pe * simd, groups * (mh // pe) * (mw // simd) * windows,
                       w_bits * simd > MVAU_WWIDTH_MAX, -simd, pe)
                      for pe in divisors(mh) for simd in divisors(mw) if simd <= simd_max))
    out: list[Fold] = []
    for lanes, cyc, _, neg_simd, pe in options:
        if not out or cyc < out[-1].cycles:
            out.append(Fold(pe, -neg_simd, cyc))
    return tuple(out)


def options(layer: LayerProfile, wwidth_max: int | None = None) -> tuple[Fold, ...]:
    """The layer's useful foldings, fewest lanes first (each faster than the ones before);
    ``wwidth_max``: keep the weight stream (w_bits x SIMD) within that many bits, as FINN's
    SetFolding does (None: any SIMD dividing MW, which FINN's rules allow)."""
    mh, mw = matrix(layer)
    cap = mw if wwidth_max is None else max(1, wwidth_max // layer.w_bits)
    return _staircase(layer.groups, mh, mw, layer.windows, layer.w_bits, cap)


def balanced(profile: Profile, budget: int, wwidth_max: int | None = None
             ) -> dict[str, Fold] | None:
    """Per layer, the folding with the fewest lanes within ``budget`` cycles per image; None when
    some layer cannot reach it even fully unfolded. ``wwidth_max``: as in ``options``."""
    out = {}
    for layer in profile.layers:
        fit = [f for f in options(layer, wwidth_max) if f.cycles <= budget]
        if not fit:
            return None
        out[layer.name] = fit[0]
    return out


def fastest(profile: Profile) -> int:
    """The lowest budget every layer can meet: the slowest layer fully unfolded."""
    return max(options(layer)[-1].cycles for layer in profile.layers)


def budgets(profile: Profile, limit: int = 512) -> list[int]:
    """Budgets at which some layer's folding changes (every distinct layer cycle count from
    ``fastest`` up), at most ``limit`` of them spread log-uniformly, the end points kept."""
    lo = fastest(profile)
    vals = sorted({f.cycles for layer in profile.layers for f in options(layer) if f.cycles >= lo})
    if len(vals) <= limit:
        return vals
    logs = [math.log(v) for v in vals]
    picks, j = [], 0
    for i in range(limit):
        want = logs[0] + (logs[-1] - logs[0]) * i / (limit - 1)
        while j < len(vals) - 1 and logs[j] < want:
            j += 1
        if not picks or vals[j] != picks[-1]:
            picks.append(vals[j])
    return picks


def set_folding(profile: Profile, target_cycles: int, mvau_wwidth_max: int = MVAU_WWIDTH_MAX,
                two_pass_relaxation: bool = True) -> dict[str, Fold]:
    """FINN's SetFolding heuristic on the profile's layers (module docstring): every layer under
    ``target_cycles`` (strictly) where it can be."""
    out = {}
    for layer in profile.layers:
        mh, mw = matrix(layer)
        pe = simd = 1
        for s in divisors(mw):
            prev, simd = simd, s
            if cycles(layer, pe, simd) < target_cycles:
                break
            if layer.w_bits * simd > mvau_wwidth_max:
                simd = prev
                break
        for p in divisors(mh):
            pe = p
            if cycles(layer, pe, simd) < target_cycles:
                break
        out[layer.name] = Fold(pe, simd, cycles(layer, pe, simd))
    slowest = max(f.cycles for f in out.values())
    if two_pass_relaxation and slowest > target_cycles:
        return set_folding(profile, slowest, mvau_wwidth_max, two_pass_relaxation=False)
    return out


def check(profile: Profile, folding: dict) -> None:
    """FINN's rules: PE divides MH and SIMD divides MW for every layer (ValueError naming it)."""
    for layer in profile.layers:
        pe, simd = folding[layer.name][:2]
        mh, mw = matrix(layer)
        if mh % pe or mw % simd:
            raise ValueError(f"folding of {layer.name!r}: PE={pe}, SIMD={simd} break FINN's rule "
                             f"(PE | MH={mh}, SIMD | MW={mw})")


def lanes(profile: Profile, folding: dict) -> int:
    """PE x SIMD lanes of every layer (times its groups), weighted by w_bits x a_bits: what
    hwq's FINN area is proportional to (hwq.hw.finn.FinnConfig.area_mm2)."""
    return sum(l.groups * folding[l.name][0] * folding[l.name][1] * l.w_bits * l.a_bits
               for l in profile.layers)


def finn_json(profile: Profile, folding: dict) -> dict:
    """The folding in FINN's folding-config shape, with FINN's node names for a chain network."""
    out: dict = {"Defaults": {}}
    for i, layer in enumerate(profile.layers):
        pe, simd = folding[layer.name][:2]
        out[f"MVAU_hls_{i}"] = {"PE": int(pe), "SIMD": int(simd)}
    return out

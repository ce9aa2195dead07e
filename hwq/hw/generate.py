"""hwq.generate: the cheapest configuration of a design that meets a target on a profile
("accelerator configuration from a profile"), written as a config TOML that ``hwq map --config``
reads back, with its report.

    g = hwq.generate("resnet50", "systolic_ws", fps=100)        # fps, latency, energy, area
    g.write("out/")             # config.toml, report.txt, report.json, sweep.csv (+ FINN folding)
    hwq.map("resnet50", "systolic_ws", config="out/config.toml")  # the same numbers

Targets are bounds (fps at least, latency / energy per image / area at most; units as
hwq.hw.sweep.parse_target). The search is a sweep (hwq.sweep) over ``grid``, by default the design's
``search_space``; the pick is the feasible point meeting every target that is lowest in
``minimize`` (default area, the cost of the silicon; latency when area is itself a target).

FINN is sized per layer, so it is searched differently: for a budget of T cycles per layer (rate
freq / T), every layer takes the folding with the fewest lanes within T (hwq.hw.finn_folding
.balanced); the budgets tried are those at which some layer's folding changes. The chosen folding
is written in the TOML (``[finn.folding]``, by layer name) and in FINN's folding-config JSON, and
compared with FINN's own SetFolding heuristic at the same rate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from .._io import atomic_write_text
from ..profile import Profile
from . import finn_folding
from .config import ArchConfig
from .finn import FinnConfig
from .mapper import _config, map as map_
from .registry import get
from .report import Report
from .sweep import (SweepResult, _options, _profiles, _same_layers, evaluate, parse_target, pareto,
                    sweep)


@dataclasses.dataclass
class Generated:
    """The chosen configuration (``config``), its sweep row (``row``: the metrics), the report of
    hwq.map on it, the sweep it was picked from, and for FINN the per-layer folding with FINN's
    own heuristic at the same rate (``finn_heuristic``: folding, lanes, fps)."""

    arch: str
    profile: Profile
    targets: dict[str, float]
    minimize: str
    config: ArchConfig
    row: dict
    report: Report
    sweep: SweepResult
    folding: dict | None = None
    finn_heuristic: dict | None = None

    def to_toml(self) -> str:
        """The configuration as a TOML ``[arch]`` table (every option, so that nothing depends on
        defaults that may change), for ``hwq map --config`` / ``hwq.map(config=path)``."""
        d = self.config.to_dict()
        head = [f"# hwq generate: {self.arch} on {self.profile.name}, targets "
                + (", ".join(f"{k} {'>=' if k == 'fps' else '<='} {v:g}"
                             for k, v in self.targets.items()) or "none")
                + f", minimizing {self.minimize}",
                f"# fps {self.row['fps']:.6g}, latency {self.row['latency_s']:.6g} s, energy "
                f"{self.row['energy_pj']:.6g} pJ per image, area {self.row['area_mm2']:.6g} mm^2"]
        return "\n".join(head) + "\n" + toml_table(self.arch, d)

    def summary(self) -> str:
        r = self.row
        out = [f"{self.arch} on {self.profile.name}: chosen among {self.sweep.points} points "
               f"(minimizing {self.minimize})",
               f"  {r['fps']:,.1f} images/s, latency {r['latency_s'] * 1e3:,.3f} ms, energy "
               f"{r['energy_pj'] / 1e6:,.3f} uJ per image, area {r['area_mm2']:,.3f} mm^2, "
               f"utilization {r['utilization']:.2f}"]
        if self.folding is None:
            out.append("  " + ", ".join(f"{k}={r[k]}" for k in self.sweep.params))
        if self.finn_heuristic is not None:
            h = self.finn_heuristic
            if h["fps"] < r["fps"] * (1 - 1e-9):
                out.append(f"  FINN's SetFolding does not reach this rate: {h['fps']:,.1f} "
                           f"images/s at most (36-bit weight streams), {h['lanes']:,} lane-bits")
            else:
                out.append(f"  FINN's SetFolding at the same rate: {h['lanes']:,} lane-bits; "
                           f"hwq's balanced folding: {h['hwq_lanes']:,} lane-bits "
                           f"({h['hwq_lanes'] / h['lanes']:.2f}x)")
        return "\n".join(out)

    def write(self, out_dir: str | os.PathLike) -> list[str]:
        """config.toml, report.txt, report.json, sweep.csv, and for FINN folding.json (FINN's
        folding-config shape); returns the paths written."""
        os.makedirs(out_dir, exist_ok=True)
        files = {"config.toml": self.to_toml(),
                 "report.txt": self.summary() + "\n\n" + self.report.table() + "\n",
                 "report.json": self.report.to_json(),
                 "sweep.csv": self.sweep.to_csv()}
        if self.folding is not None:
            files["folding.json"] = json.dumps(
                finn_folding.finn_json(self.profile, self.folding), indent=1) + "\n"
        paths = []
        for name, text in files.items():
            path = os.path.join(os.fspath(out_dir), name)
            atomic_write_text(path, text)
            paths.append(path)
        return paths


def toml_table(name: str | list[str], d: dict[str, Any]) -> str:
    """``[name]`` with scalars and lists of scalars, then a sub-table ``[name.key]`` per dict."""
    path = [name] if isinstance(name, str) else list(name)
    lines = ["[" + ".".join(_key(k) for k in path) + "]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    text = "\n".join(lines) + "\n"
    for k, v in d.items():
        if isinstance(v, dict):
            text += "\n" + toml_table(path + [k], v)
    return text


def _key(k: str) -> str:
    """A bare TOML key when it can be one, else a quoted one."""
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"{v!r} cannot be written as a config value")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ValueError(f"{v!r} ({type(v).__name__}) cannot be written to TOML")


def generate(profile, arch: str, targets: dict[str, Any] | None = None, *,
             grid: dict | None = None, minimize: str | None = None, sample: str | None = None,
             n: int | None = None, seed: int = 0, config: Any = None,
             **target_kwargs: Any) -> Generated:
    """The cheapest configuration of ``arch`` meeting ``targets`` on ``profile`` (module
    docstring). targets: {"fps": 3000, "latency": "2ms", "energy": "150uJ", "area": 12} or as
    keywords (``fps=3000``); grid, sample, n, seed, config: as hwq.sweep (default grid: the
    design's ``search_space``; FINN is folded per layer and refuses them, see the module
    docstring)."""
    targets = {**(targets or {}), **target_kwargs}
    bounds = dict(parse_target(f"{k}={v}") for k, v in targets.items())
    if isinstance(profile, (list, tuple)):
        raise ValueError(f"generate takes one profile; got a {type(profile).__name__}")
    (prof,) = _profiles([profile])
    a = get(arch)
    base = _config(arch, a, config, {})
    if isinstance(base, FinnConfig):
        given = [k for k, v in (("grid", grid), ("sample", sample), ("n", n)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} given for finn, which is folded per layer and "
                             "not swept over a grid: set its other options with config=")
        return _generate_finn(prof, arch, base, targets, bounds, minimize)
    grid = dict(a.config.search_space) if grid is None else grid
    if not grid:
        raise ValueError(f"arch {arch!r} has no default search space: give a grid")
    res = sweep(prof, arch, grid, sample=sample, n=n, seed=seed, config=config)
    row = res.pick(minimize, **targets)
    cfg = base.replace(**_options({}, {k: row[k] for k in res.params}))
    report = map_(prof, arch, config=cfg)
    return Generated(arch, prof, bounds, minimize or _default_minimize(bounds), cfg, row, report,
                     res)


def _default_minimize(bounds: dict) -> str:
    return "latency_s" if "area_mm2" in bounds else "area_mm2"


def _generate_finn(prof: Profile, arch: str, base: FinnConfig, targets: dict, bounds: dict,
                   minimize: str | None) -> Generated:
    """FINN: one point per per-layer cycle budget (module docstring)."""
    same = _same_layers(prof)
    candidates = finn_folding.budgets(prof)
    if "fps" in bounds:  # the exact budget of the rate asked for
        b = math.floor(base.freq_hz / bounds["fps"])
        if b >= candidates[0]:
            candidates = sorted(set(candidates) | {b})
    rows, foldings = [], []
    for point, budget in enumerate(candidates):
        folding = finn_folding.balanced(prof, budget)
        cfg = base.replace(folding={k: [f.pe, f.simd] for k, f in folding.items()})
        m = evaluate(prof, arch, cfg, same)
        rows.append({"point": point, "workload": prof.name, "budget_cycles": budget, **m,
                     "pareto": False})
        foldings.append(folding)
    for r in rows:
        r.pop("_capacity", None)
    res = SweepResult(arch=arch, params=["budget_cycles"], workloads=[prof.name],
                      objectives=["seconds", "area_mm2"], rows=rows, profiles=[prof],
                      options={i: {"folding": {k: [f.pe, f.simd] for k, f in fold.items()}}
                               for i, fold in enumerate(foldings)})
    for r, on in zip(rows, pareto([[r["seconds"], r["area_mm2"]] for r in rows])):
        r["pareto"] = bool(on)
    row = res.pick(minimize, **targets)
    folding = foldings[row["point"]]
    finn_folding.check(prof, {k: (f.pe, f.simd) for k, f in folding.items()})
    cfg = base.replace(folding={k: [f.pe, f.simd] for k, f in folding.items()})
    report = map_(prof, arch, config=cfg)
    # FINN's own heuristic at the same rate (its target is strict: below budget + 1)
    slowest = max(f.cycles for f in folding.values())
    heur = finn_folding.set_folding(prof, slowest + 1)
    heuristic = {"folding": {k: [f.pe, f.simd] for k, f in heur.items()},
                 "lanes": finn_folding.lanes(prof, heur),
                 "hwq_lanes": finn_folding.lanes(prof, folding),
                 "fps": base.freq_hz / max(f.cycles for f in heur.values())}
    return Generated(arch, prof, bounds, minimize or _default_minimize(bounds), cfg, row, report,
                     res, folding={k: [f.pe, f.simd] for k, f in folding.items()},
                     finn_heuristic=heuristic)


__all__ = ["generate", "Generated", "toml_table"]

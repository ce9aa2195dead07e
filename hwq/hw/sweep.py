"""hwq.sweep: cost many configurations of one design on one or more workloads, and find the
Pareto front of the objectives you name (pre-RTL design-space exploration, as Aladdin, Timeloop
and ZigZag do it for their models).

    r = hwq.sweep("resnet50", "systolic_ws", grid={"rows": [32, 64, 128], "cols": [32, 64, 128]})
    r.front()                                 # the non-dominated rows (latency, energy, area)
    r.to_csv("sweep.csv"); r.plot_pareto("pareto.png", chosen=r.pick(fps=100))

Every point is costed by the design's own cost functions (``Arch.costs``) and totalled by the
same function as ``hwq.map`` (``hwq.hw.mapper.network_total``), so a point equals ``hwq.map`` with
its configuration (tested on every design). A point the design cannot build (a refused option such
as zero lanes, a layer no tile of which fits BitFusion's buffers) stays in the table, marked
infeasible with the reason.

The grid names config fields (``hwq.hw.get(arch).config.accepted()``), or ``energy.<field>`` for
the energy table. ``sample="random"`` draws ``n`` distinct grid points; ``sample="lhs"`` a Latin
hypercube: each parameter's values are cut into ``n`` equal strata and every stratum is used once
(McKay, Beckman and Conover, Technometrics 1979), repeated points dropped.

``SweepResult.to_json`` writes ``{"format": "hwq.sweep", "version": 1, "arch": ..., "archs": [...],
"params": [...], "workloads": [...], "objectives": [...], "base": {...}, "rows": [...]}`` (a
metric that is not finite, such as an infeasible point's, as null); ``SweepResult.from_json``
reads the table back (front, pick, table, CSV, Pareto plot) and refuses a file without that
header. The profiles are not in the file, so a sweep read back cannot map a point again.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from .._io import atomic_write, atomic_write_text, read_json
from .._table import text_table
from ..profile import Profile
from .config import ArchConfig
from .finn import FinnConfig
from .mapper import _config, network_total
from .registry import ARCHS, get
from .report import check_header

FORMAT = "hwq.sweep"
VERSION = 1

OBJECTIVES = {"latency_s": "min", "seconds": "min", "cycles": "min", "energy_pj": "min",
              "area_mm2": "min", "edp": "min", "fps": "max", "utilization": "max"}
"""Objectives a front can be taken over, and which way is better. seconds: time per image at
steady state (1 / fps); latency_s: one image from input to output; energy_pj: per image;
edp: energy x latency (pJ s)."""
METRICS = ("cycles", "seconds", "fps", "latency_s", "energy_pj", "compute_pj", "onchip_pj",
           "offchip_pj", "edp", "area_mm2", "utilization", "stall_cycles", "macs")
TARGETS = {"fps": ("fps", ">=", 1.0), "latency": ("latency_s", "<=", 1e-3),
           "energy": ("energy_pj", "<=", 1e6), "area": ("area_mm2", "<=", 1.0)}
"""A target name -> (table column, sense, scale of a bare number): fps in images/s, latency in
ms, energy in uJ per image, area in mm^2 unless a unit is given."""
UNITS = {"latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
         "energy": {"j": 1e12, "mj": 1e9, "uj": 1e6, "nj": 1e3, "pj": 1.0},
         "area": {"mm2": 1.0, "um2": 1e-6}, "fps": {"fps": 1.0}}
ALL = "all"
"""The workload name of the rows that total several workloads for one point."""


def parse_target(text: str) -> tuple[str, float]:
    """``"fps=3000"``, ``"latency=2ms"``, ``"energy=150uJ"``, ``"area=12mm2"`` -> (table column,
    bound in the column's unit: images/s, s, pJ, mm^2)."""
    m = re.fullmatch(r"\s*(\w+)\s*=\s*([0-9.eE+-]+)\s*([A-Za-z0-9]*)\s*", str(text))
    if not m or m.group(1) not in TARGETS:
        raise ValueError(f"target {text!r} is not accepted: expected NAME=VALUE with NAME one of "
                         f"{', '.join(TARGETS)} (fps=3000, latency=2ms, energy=150uJ, area=12mm2)")
    name, value, unit = m.group(1), m.group(2), m.group(3).lower()
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"target {text!r}: {value!r} is not a number") from None
    if not 0 < v < math.inf:
        raise ValueError(f"target {text!r}: expected a finite value > 0")
    column, _, scale = TARGETS[name]
    if unit:
        if unit not in UNITS[name]:
            raise ValueError(f"target {text!r}: unit {m.group(3)!r} is not accepted for {name}; "
                             f"accepted: {', '.join(UNITS[name])}")
        scale = UNITS[name][unit]
    return column, v * scale


def parse_value(text: str) -> Any:
    """A grid value typed on the command line: an int, a float, true/false, else the string."""
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(t.lower(), t)


def meets(row: dict, targets: dict[str, float]) -> bool:
    """Whether a feasible row meets every target (column -> bound, as parse_target gives)."""
    if not row["feasible"]:
        return False
    for column, bound in targets.items():
        sense = next(s for c, s, _ in TARGETS.values() if c == column)
        v = row[column]
        if math.isnan(v) or (v < bound if sense == ">=" else v > bound):
            return False
    return True


@dataclasses.dataclass
class SweepResult:
    """The table of a sweep: one row per (point, workload) (plus a workload ``"all"`` row per
    point when there are several workloads: latencies, times and energies summed, the largest
    area), with the parameters, ``feasible`` / ``reason``, the metrics (METRICS) and ``pareto``
    (on the objectives, among the rows of the same workload)."""

    arch: str
    params: list[str]
    workloads: list[str]
    objectives: list[str]
    rows: list[dict]
    base: dict = dataclasses.field(default_factory=dict)
    """Options applied under every point (the ``config`` argument)."""
    profiles: list = dataclasses.field(default_factory=list, repr=False)
    """The profiles swept (for ``report`` and ``plot_layers``)."""
    options: dict = dataclasses.field(default_factory=dict, repr=False)
    """Options of a point not given by its parameters, by point (FINN's generator: the folding
    chosen for each cycle budget)."""
    parts: dict = dataclasses.field(default_factory=dict, repr=False)
    """Several designs in one sweep (``sweep_designs``): design -> its own sweep; the rows carry
    an ``arch`` column and global point numbers, ``local`` maps them to the design's own."""
    local: dict = dataclasses.field(default_factory=dict, repr=False)
    source: str | None = None
    """The file this table was read from (``from_json``), which holds no profiles and no
    per-point options: ``config``, ``report`` and ``plot_layers`` are then refused."""

    @property
    def archs(self) -> list[str]:
        """The designs swept (one, or several with ``sweep_designs``)."""
        return list(self.parts) if self.parts else [self.arch]

    def _part(self, row: dict) -> tuple["SweepResult", dict]:
        """The design's own sweep and the row as it numbers it (several designs), or self."""
        if not self.parts:
            return self, row
        return self.parts[row["arch"]], {**row, "point": self.local[row["point"]]}

    @property
    def points(self) -> int:
        return len({r["point"] for r in self.rows})

    def summary_rows(self) -> list[dict]:
        """The rows the front is taken over: ``"all"`` with several workloads, else the one."""
        w = ALL if len(self.workloads) > 1 else self.workloads[0]
        return [r for r in self.rows if r["workload"] == w]

    def front(self) -> list[dict]:
        """The Pareto-optimal rows (see ``pareto``), in point order."""
        return [r for r in self.summary_rows() if r["pareto"]]

    def point(self, index: int) -> dict:
        """The summary row of point ``index``."""
        for r in self.summary_rows():
            if r["point"] == index:
                return r
        raise KeyError(f"no point {index} in the sweep (0..{self.points - 1})")

    def config(self, index_or_row: int | dict) -> dict[str, Any]:
        """The options of a point, as ``hwq.map(..., config=...)`` takes them (the base options
        with the point's parameters on top; ``energy.x`` keys gathered into an ``energy`` dict)."""
        self._needs_run("config")
        row = self.point(index_or_row) if isinstance(index_or_row, int) else index_or_row
        if self.parts:
            part, row = self._part(row)
            return part.config(row)
        if row["point"] in self.options:
            return {**self.base, **self.options[row["point"]]}
        return _options(self.base, {k: row[k] for k in self.params})

    def pick(self, minimize: str | None = None, **targets: float | str) -> dict:
        """The feasible summary row meeting every target (``fps=3000``, ``latency="2ms"``, ...:
        see parse_target) that is lowest in ``minimize`` (default: area_mm2, or latency_s when
        area is a target); ties go to lower energy, then lower latency, then the first point.
        ValueError saying what the best points reached when none meets the targets."""
        bounds = dict(parse_target(f"{k}={v}") for k, v in targets.items())
        if minimize is None:
            minimize = "latency_s" if "area_mm2" in bounds else "area_mm2"
        _check_objectives([minimize])
        sign = 1 if OBJECTIVES[minimize] == "min" else -1
        rows = self.summary_rows()
        ok = [r for r in rows if meets(r, bounds) and not math.isnan(r[minimize])]
        if not ok:
            feasible = [r for r in rows if r["feasible"]]
            if not feasible:
                reasons = sorted({r["reason"] for r in rows})
                raise ValueError(f"no feasible point among the {len(rows)} swept on {self.arch}: "
                                 + "; ".join(reasons[:3]))
            want = ", ".join(f"{c} {'>=' if c == 'fps' else '<='} {v:g}" for c, v in bounds.items())
            best = {c: (max if c == "fps" else min)(r[c] for r in feasible) for c in bounds}
            got = ", ".join(f"{c} {v:g}" for c, v in best.items())
            raise ValueError(f"no configuration of the {len(rows)} swept on {self.arch} meets "
                             f"{want}; the best reached: {got}. Widen the grid or relax the "
                             "target")
        return min(ok, key=lambda r: (sign * r[minimize], r["energy_pj"], r["latency_s"],
                                      r["point"]))

    def columns(self) -> list[str]:
        return (["point"] + (["arch"] if self.parts else []) + ["workload"] + self.params
                + ["feasible", "reason", "pareto"] + list(METRICS))

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = self.columns()
        w.writerow(cols)
        for r in self.rows:
            w.writerow([_cell(r[c]) for c in cols])
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "arch": self.arch, "archs": self.archs, "params": self.params,
                "workloads": self.workloads,
                "objectives": self.objectives, "base": self.base,
                "rows": [{c: _json(r[c]) for c in self.columns()} for r in self.rows]}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The table as JSON (module docstring); written to ``path`` atomically when given."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> "SweepResult":
        """The table of ``to_dict`` (``source`` names where it came from): ValueError for a
        missing or other header (``"format"`` must be ``"hwq.sweep"``, ``"version"`` 1) or a
        field out of the layout. Null metrics read as NaN."""
        check_header(d, FORMAT, VERSION, "an hwq.sweep table, written by SweepResult.to_json")
        keys = ("arch", "archs", "params", "workloads", "objectives", "base", "rows")
        missing = [k for k in keys if k not in d]
        unknown = sorted(set(d) - set(keys) - {"format", "version"})
        if missing or unknown:
            raise ValueError("; ".join(([f"missing field(s) {missing}"] if missing else [])
                                       + ([f"unknown field(s) {unknown}"] if unknown else []))
                             + f"; accepted: format, version, {', '.join(keys)}")
        if not isinstance(d["arch"], str):
            raise ValueError(f"field 'arch' = {d['arch']!r} is not accepted: expected a string")
        for k in ("archs", "params", "workloads", "objectives"):
            if not isinstance(d[k], list) or not all(isinstance(x, str) for x in d[k]) \
                    or (k != "params" and not d[k]):
                raise ValueError(f"field {k!r} = {d[k]!r} is not accepted: expected a "
                                 f"{'' if k == 'params' else 'non-empty '}list of strings")
        _check_objectives(d["objectives"])
        if not isinstance(d["base"], dict):
            raise ValueError(f"field 'base' = {d['base']!r} is not accepted: expected an object")
        several = len(d["archs"]) > 1
        cols = (["point"] + (["arch"] if several else []) + ["workload"] + d["params"]
                + ["feasible", "reason", "pareto"] + list(METRICS))
        rows = d["rows"]
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"field 'rows' is not accepted: expected a non-empty list of "
                             f"objects with the columns {cols}")
        out = []
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or set(r) != set(cols):
                got = sorted(r) if isinstance(r, dict) else type(r).__name__
                raise ValueError(f"rows[{i}] = {got} is not accepted: expected the columns "
                                 f"{cols}")
            row = dict(r)
            for m in METRICS:
                v = row[m]
                if v is None:
                    row[m] = math.nan
                elif isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"rows[{i}].{m} = {v!r} is not accepted: expected a number "
                                     "or null")
            out.append(row)
        common = dict(workloads=d["workloads"], objectives=d["objectives"], source=source)
        if not several:
            return cls(arch=d["arch"], params=d["params"], rows=out, base=d["base"], **common)
        # several designs: each design's own table, numbered from 0 as sweep_designs made it
        parts, local = {}, {}
        for a in d["archs"]:
            mine = [r for r in out if r["arch"] == a]
            number = {p: j for j, p in enumerate(dict.fromkeys(r["point"] for r in mine))}
            local.update(number)
            own = [p for p in d["params"] if any(r[p] is not None for r in mine)]
            parts[a] = cls(arch=a, params=own, rows=[
                {**{k: v for k, v in r.items() if k not in ("arch", "point")},
                 "point": number[r["point"]]} for r in mine], **common)
        return cls(arch=d["arch"], params=d["params"], rows=out, base=d["base"], parts=parts,
                   local=local, **common)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "SweepResult":
        """A sweep table written by ``to_json`` (module docstring); ValueError naming the file
        when it is not one."""
        path = os.fspath(path)
        data = read_json(path, "sweep file")
        try:
            return cls.from_dict(data, source=path)
        except ValueError as e:
            raise ValueError(f"sweep file {path!r}: {e}") from None

    def _needs_run(self, what: str) -> None:
        if self.source is not None:
            raise ValueError(f"{what} is not available on a sweep read from {self.source!r}: the "
                             "file holds the table, not the profiles or each point's options; "
                             "run hwq.sweep again (its rows give each point's parameters)")

    def table(self, rows: Sequence[dict] | None = None) -> str:
        """A text table of ``rows`` (default: the Pareto front)."""
        rows = self.front() if rows is None else rows
        design = ["arch"] if self.parts else []
        cols = (["point"] + design + self.params
                + ["fps", "latency_ms", "energy_uJ", "area_mm2", "util"])
        body = [[str(r["point"])] + [r[d] for d in design]
                + ["-" if r[p] is None else str(r[p]) for p in self.params]
                + [_fmt(r["fps"], 1), _fmt(r["latency_s"] * 1e3, 3), _fmt(r["energy_pj"] / 1e6, 2),
                   _fmt(r["area_mm2"], 2), _fmt(r["utilization"], 2)] for r in rows]
        n_inf = sum(not r["feasible"] for r in self.summary_rows())
        head = (f"{self.arch} on {', '.join(self.workloads)}: {self.points} points, "
                f"{n_inf} infeasible, {len(self.front())} on the front of "
                f"{', '.join(self.objectives)}")
        # every column right-aligned (left=0), as this table always was (the arch column too)
        return head + "\n" + text_table(cols, body, left=0)

    def __str__(self) -> str:
        return self.table()

    def report(self, index_or_row: int | dict, workload: str | None = None):
        """hwq.map of a point on one of the workloads (default the first): per-layer numbers."""
        self._needs_run("report")
        row = self.point(index_or_row) if isinstance(index_or_row, int) else index_or_row
        names = [p.name for p in self.profiles]
        name = names[0] if workload is None else workload
        if name not in names:
            raise ValueError(f"workload {name!r} is not in the sweep; accepted: {names}")
        from .mapper import map as map_
        return map_(self.profiles[names.index(name)], row.get("arch", self.arch),
                    config=self.config(row))

    def plot_layers(self, path: str | os.PathLike, index_or_row: int | dict,
                    workload: str | None = None) -> None:
        """Per-layer cycles and energy of a point on one workload (as ``hwq map --plot``)."""
        from .report import plot
        plot([self.report(index_or_row, workload)], path)

    def plot_pareto(self, path: str | os.PathLike, x: str | None = None, y: str | None = None,
                    chosen: dict | None = None) -> None:
        """A scatter of every feasible point on objectives ``x`` and ``y`` (default the first
        two), the front highlighted and ``chosen`` (a row) marked (matplotlib)."""
        plt = _pyplot()
        x = x or self.objectives[0]
        y = y or (self.objectives[1] if len(self.objectives) > 1 else "area_mm2")
        _check_objectives([x, y])
        rows = [r for r in self.summary_rows() if r["feasible"]]
        fig, ax = plt.subplots(figsize=(7, 5))
        if self.parts:  # several designs: each in its own shade
            for i, a in enumerate(self.archs):
                mine = [r for r in rows if r["arch"] == a]
                ax.scatter([r[x] for r in mine], [r[y] for r in mine], s=10, alpha=0.5,
                           c=f"C{(i + 2) % 10}", label=f"{a} ({len(mine)})")
        else:
            ax.scatter([r[x] for r in rows], [r[y] for r in rows], s=10, c="0.7",
                       label="points")
        front = sorted((r for r in rows if r["pareto"]), key=lambda r: r[x])
        ax.scatter([r[x] for r in front], [r[y] for r in front], s=18, c="tab:blue",
                   edgecolors="k" if self.parts else "face",
                   label=f"Pareto front ({', '.join(self.objectives)})")
        if chosen is not None:
            ax.scatter([chosen[x]], [chosen[y]], s=120, marker="*", c="tab:red", zorder=3,
                       label=f"chosen: point {chosen['point']}")
        for axis, name in ((ax.set_xscale, x), (ax.set_yscale, y)):
            vals = [r[name] for r in rows if r[name] > 0]
            if vals and max(vals) / min(vals) > 50:
                axis("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{self.arch} on {', '.join(self.workloads)}: {len(rows)} feasible points")
        ax.legend(fontsize=7)
        fig.tight_layout()
        try:
            atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"), mode="wb")
        finally:
            plt.close(fig)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    return plt


def _fmt(v: float, digits: int) -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else f"{v:,.{digits}f}"


def _cell(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _check_objectives(objectives: Iterable[str]) -> None:
    for o in objectives:
        if o not in OBJECTIVES:
            raise ValueError(f"objective {o!r} is not accepted; accepted: {', '.join(OBJECTIVES)}")


def _options(base: dict, params: dict) -> dict[str, Any]:
    out = dict(base)
    for k, v in params.items():
        if k.startswith("energy."):
            out["energy"] = {**out.get("energy", {}), k[len("energy."):]: v}
        else:
            out[k] = v
    return out


def pareto(values: np.ndarray) -> np.ndarray:
    """Non-dominated mask of ``values`` (N x M, lower is better in every column): a row is
    dominated when another is no worse in every column and better in one. Rows with NaN are
    never on the front (and dominate nothing). Equal rows are all kept."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    ok = ~np.isnan(values).any(axis=1)
    mask = np.zeros(n, dtype=bool)
    idx = np.nonzero(ok)[0]
    # sorted lexicographically, a row can only be dominated by rows before it
    order = idx[np.lexsort(values[idx].T[::-1])]
    front: list[int] = []
    for i in order:
        v = values[i]
        if front:
            f = values[front]
            if np.any(np.all(f <= v, axis=1) & np.any(f < v, axis=1)):
                continue
        front.append(i)
        mask[i] = True
    return mask


def _grid(grid: dict, accepted: list[str]) -> tuple[list[str], list[list]]:
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid={grid!r} is not accepted: expected a non-empty dict of config "
                         f"field -> list of values; fields: {', '.join(accepted)}")
    from .energy import EnergyTable
    energy_fields = [f.name for f in dataclasses.fields(EnergyTable)]
    names, values = [], []
    for k, v in grid.items():
        ok = k in accepted and k != "energy" or (k.startswith("energy.")
                                                 and k[len("energy."):] in energy_fields)
        if not ok:
            raise ValueError(f"grid key {k!r} is not accepted: expected a config field "
                             f"({', '.join(a for a in accepted if a != 'energy')}) or "
                             f"energy.<field> ({', '.join(energy_fields)})")
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            v = [v]
        v = [x.item() if isinstance(x, np.generic) else x for x in v]  # numpy -> Python
        if not v:
            raise ValueError(f"grid[{k!r}] is empty: expected at least one value")
        names.append(k)
        values.append(v)
    return names, values


def _indices(sizes: list[int], sample: str | None, n: int | None, seed: int) -> list[tuple]:
    """Grid points as index tuples: all of them, or a random / Latin-hypercube sample of n."""
    total = math.prod(sizes)
    if sample in (None, "grid"):
        if n is not None:
            raise ValueError("n is only for sample='random' or 'lhs' (the full grid has "
                             f"{total} points)")
        return list(itertools.product(*(range(s) for s in sizes)))
    if sample not in ("random", "lhs"):
        raise ValueError(f"sample={sample!r} is not accepted: expected None/'grid', 'random' or "
                         "'lhs'")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not accepted: expected an integer >= 1 points to sample")
    rng = np.random.default_rng(seed)
    if sample == "random":
        if n >= total:
            return list(itertools.product(*(range(s) for s in sizes)))
        flat = rng.choice(total, size=n, replace=False) if total < 2 ** 62 else \
            rng.integers(0, total, size=n)
        out = []
        for f in sorted(set(int(x) for x in flat)):
            idx = []
            for s in reversed(sizes):
                f, r = divmod(f, s)
                idx.append(r)
            out.append(tuple(reversed(idx)))
        return out
    cols = []
    for s in sizes:
        strata = (rng.permutation(n) + rng.random(n)) / n      # one draw per stratum
        cols.append(np.minimum((strata * s).astype(int), s - 1))
    seen, out = set(), []
    for t in zip(*cols):
        t = tuple(int(x) for x in t)
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _profiles(profiles) -> list[Profile]:
    from .. import workloads
    if isinstance(profiles, (Profile, str, os.PathLike)):
        profiles = [profiles]
    out = []
    for p in profiles:
        if isinstance(p, (str, os.PathLike)):
            if isinstance(p, str) and p in workloads.NAMES and not os.path.exists(p):
                p = workloads.build(p)
            else:
                p = Profile.from_json(p)
        if not isinstance(p, Profile):
            raise ValueError(f"profile {type(p).__name__} is not accepted: expected a hwq.Profile, "
                             "the path of a profile JSON file or a workload name")
        p.validate()
        out.append(p)
    if not out:
        raise ValueError("profiles is empty: expected at least one profile or workload")
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        out = [dataclasses.replace(p, name=f"{p.name}#{i}") if names.count(p.name) > 1 else p
               for i, p in enumerate(out)]
    return out


def _same_layers(profile: Profile) -> list[int]:
    """For each layer, the first layer equal to it in everything but the name (a per-layer cost
    function gives both the same cost: ResNet-50's 54 layers have 24 different ones)."""
    firsts: list[tuple[Any, int]] = []
    out = []
    for i, layer in enumerate(profile.layers):
        key = dataclasses.replace(layer, name="")
        j = next((k for other, k in firsts if other == key), None)
        if j is None:
            firsts.append((key, i))
            j = i
        out.append(j)
    return out


def layer_costs(profile: Profile, arch: str, cfg: ArchConfig, same: list[int] | None = None
                ) -> list:
    """``get(arch).costs(profile, cfg)``, costing each distinct layer once when the design costs
    layers on their own (``Arch.network`` None, or FINN without a folding): the same Cost values,
    in the same order."""
    a = get(arch)
    # FINN's network cost only checks that its folding names layers of the profile: without a
    # folding, its layers are costed on their own like the other per-layer designs
    per_layer = a.network is None or (isinstance(cfg, FinnConfig) and not cfg.folding)
    if not per_layer:
        return a.costs(profile, cfg)
    same = _same_layers(profile) if same is None else same
    costs: list = []
    for i, layer in enumerate(profile.layers):
        costs.append(a.cost(layer, cfg) if same[i] == i else costs[same[i]])
    return costs


def evaluate(profile: Profile, arch: str, cfg: ArchConfig, same: list[int] | None = None) -> dict:
    """The metrics of one configuration on one profile (what hwq.map's total reports), or
    ``feasible`` False with the reason when the design cannot run it. ``same``: _same_layers of
    the profile, when already known."""
    try:
        costs = layer_costs(profile, arch, cfg, same)
        t = network_total(profile, costs, cfg)
    except ValueError as e:
        return _infeasible(str(e))
    e = t.energy_pj
    return {"feasible": True, "reason": "", "cycles": float(t.cycles), "seconds": t.seconds,
            "fps": t.fps, "latency_s": t.latency_s, "energy_pj": e.total,
            "compute_pj": e.compute, "onchip_pj": e.onchip, "offchip_pj": e.offchip,
            "edp": e.total * t.latency_s, "area_mm2": t.area_mm2, "utilization": t.utilization,
            "stall_cycles": float(t.stall_cycles), "macs": t.macs,
            "_capacity": _ratio(t.macs, t.utilization)}


def _ratio(a, b):
    return a / b if b > 0 else math.nan


def _infeasible(reason: str) -> dict:
    row = {m: math.nan for m in METRICS}
    row.update(feasible=False, reason=reason, macs=0, _capacity=math.nan)
    return row


def _combine(rows: list[dict]) -> dict:
    """One point over several workloads: times, latencies and energies add up (the workloads run
    one after another); area is the largest (one chip runs them all); utilization over all MACs."""
    bad = [r for r in rows if not r["feasible"]]
    if bad:
        return _infeasible("; ".join(f"{r['workload']}: {r['reason']}" for r in bad))
    out = {"feasible": True, "reason": ""}
    for m in ("cycles", "seconds", "latency_s", "energy_pj", "compute_pj", "onchip_pj",
              "offchip_pj", "stall_cycles", "macs", "_capacity"):
        out[m] = sum(r[m] for r in rows)
    out["fps"] = _ratio(1.0, out["seconds"])
    out["edp"] = out["energy_pj"] * out["latency_s"]
    out["area_mm2"] = max(r["area_mm2"] for r in rows)
    out["utilization"] = _ratio(out["macs"], out["_capacity"])
    return out


def _mark_front(rows: list[dict], workloads: list[str], objectives: list[str]) -> None:
    """Set each row's ``pareto``: on the front of ``objectives`` among the feasible rows of its
    workload (and of the ``"all"`` rows when there are several workloads)."""
    for r in rows:
        r["pareto"] = False
    for w in ([ALL] if len(workloads) > 1 else []) + list(workloads):
        sub = [r for r in rows if r["workload"] == w and r["feasible"]]
        if sub:
            vals = np.array([[r[o] if OBJECTIVES[o] == "min" else -r[o] for o in objectives]
                             for r in sub], dtype=float)
            for r, on in zip(sub, pareto(vals)):
                r["pareto"] = bool(on)


def sweep(profiles, arch: str | Sequence[str], grid: dict | None = None, *,
          sample: str | None = None, n: int | None = None, seed: int = 0,
          objectives: Sequence[str] = ("latency_s", "energy_pj", "area_mm2"),
          config: Any = None) -> SweepResult:
    """Cost design ``arch`` at every point of ``grid`` on every profile.

    profiles: a Profile, a profile JSON path or a workload name, or a list of them.
    arch: a design name, or several (a list, or names joined by commas): see sweep_designs.
    grid: {config field: [values]} (``energy.<field>`` for the energy table); every combination
        is a point, or ``n`` of them with ``sample="random"`` / ``"lhs"`` (``seed``). None: the
        design's ``search_space``.
    objectives: table columns for the Pareto front (OBJECTIVES: latency_s, energy_pj, area_mm2,
        fps, utilization, seconds, cycles, edp).
    config: options under every point (a dict, a TOML path or a config), as hwq.map takes them.
    """
    archs = _arch_list(arch)
    if len(archs) > 1:
        return sweep_designs(profiles, archs, grid, sample=sample, n=n, seed=seed,
                             objectives=objectives, config=config)
    arch = archs[0]
    a = get(arch)
    if grid is None:
        grid = dict(a.config.search_space)
        if not grid:
            raise ValueError(f"arch {arch!r} has no default search space: give a grid")
    objectives = list(objectives)
    if not objectives:
        raise ValueError("objectives is empty: expected at least one of " + ", ".join(OBJECTIVES))
    _check_objectives(objectives)
    base_cfg = _config(arch, a, config, {})
    default = a.default_config().to_dict()
    base = {k: v for k, v in base_cfg.to_dict().items() if v != default[k]}
    names, values = _grid(grid, a.config.accepted())
    profs = _profiles(profiles)
    same = [_same_layers(p) for p in profs]
    rows: list[dict] = []
    for point, idx in enumerate(_indices([len(v) for v in values], sample, n, seed)):
        params = {k: v[i] for k, v, i in zip(names, values, idx)}
        try:
            cfg = base_cfg.replace(**_options({}, params))
        except (ValueError, TypeError) as e:
            cfg, reason = None, str(e)
        per = []
        for p, sm in zip(profs, same):
            m = evaluate(p, arch, cfg, sm) if cfg is not None else _infeasible(reason)
            per.append({"point": point, "workload": p.name, **params, **m})
        rows += per
        if len(profs) > 1:
            rows.append({"point": point, "workload": ALL, **params, **_combine(per)})
    for r in rows:
        r.pop("_capacity", None)
    _mark_front(rows, [p.name for p in profs], objectives)
    return SweepResult(arch=arch, params=names, workloads=[p.name for p in profs],
                       objectives=objectives, rows=rows, base=base, profiles=profs)


def _arch_list(arch) -> list[str]:
    if isinstance(arch, str):
        names = [a.strip() for a in arch.split(",") if a.strip()]
    elif isinstance(arch, Sequence) and all(isinstance(a, str) for a in arch):
        names = list(arch)
    else:
        raise ValueError(f"arch={arch!r} is not accepted: expected a design name, several joined "
                         "by commas, or a list of names")
    if not names:
        raise ValueError(f"arch={arch!r} names no design")
    if len(set(names)) != len(names):
        raise ValueError(f"arch={arch!r} names a design twice")
    for name in names:
        get(name)  # an unknown name: ValueError listing the designs
    return names


def _design_grids(archs: list[str], grid: dict | None) -> dict[str, dict]:
    """Each design's grid: the keys ``"<design>.<field>"`` (or a ``{design: {field: values}}``
    entry) are that design's; the other keys go to every design; a design given no key of its
    own sweeps its ``search_space`` under the shared keys."""
    if grid is not None and not isinstance(grid, dict):
        raise ValueError(f"grid={grid!r} is not accepted: expected a dict or None")
    shared: dict = {}
    own: dict[str, dict] = {a: {} for a in archs}
    for k, v in (grid or {}).items():
        head, dot, field = k.partition(".")
        if k in own and isinstance(v, dict):
            own[k].update(v)
        elif dot and head in own:
            own[head][field] = v
        elif k in ARCHS or (dot and head in ARCHS):
            raise ValueError(f"grid key {k!r} names a design that is not swept; swept: "
                             f"{', '.join(archs)}")
        else:
            shared[k] = v
    out = {}
    for a in archs:
        g = own[a] or dict(get(a).config.search_space)
        if not g and not shared:
            raise ValueError(f"arch {a!r} has no default search space: give it a grid "
                             f"({a}.<field>=...)")
        out[a] = {**g, **shared}
    return out


def sweep_designs(profiles, archs: Sequence[str], grid: dict | None = None, *,
                  sample: str | None = None, n: int | None = None, seed: int = 0,
                  objectives: Sequence[str] = ("latency_s", "energy_pj", "area_mm2"),
                  config: Any = None) -> SweepResult:
    """Several designs in one table and one Pareto front: which design to build, and how.

    Each design is swept as ``sweep`` does (its points equal ``hwq.map``), over its own grid:
    ``grid`` keys ``"<design>.<field>"`` are that design's, other keys are every design's (each
    must accept them, such as ``freq_hz``), and a design given no key of its own sweeps its
    ``search_space``. ``sample`` / ``n`` apply to each design's grid. ``config``: options under
    every point of every design, or ``{design: options}``. The rows gain an ``arch`` column and
    number the points across designs; parameters a design does not have are None; the front,
    ``pick``, ``config``, ``report`` and the plots work across designs."""
    archs = _arch_list(list(archs) if not isinstance(archs, str) else archs)
    grids = _design_grids(archs, grid)
    if isinstance(config, dict) and config and set(config) <= set(ARCHS):
        configs = {a: config.get(a) for a in archs}
    else:
        configs = {a: config for a in archs}
    objectives = list(objectives)
    parts: dict[str, SweepResult] = {}
    for a in archs:
        parts[a] = sweep(profiles, a, grids[a], sample=sample, n=n, seed=seed,
                         objectives=objectives, config=configs[a])
    params: list[str] = []
    for part in parts.values():
        params += [p for p in part.params if p not in params]
    rows, local, offset = [], {}, 0
    for a, part in parts.items():
        for r in part.rows:
            row = {"point": offset + r["point"], "arch": a}
            row.update({k: v for k, v in r.items() if k != "point"})
            for p in params:
                row.setdefault(p, None)
            rows.append(row)
            local[offset + r["point"]] = r["point"]
        offset += part.points
    workloads = parts[archs[0]].workloads
    _mark_front(rows, workloads, objectives)
    first = parts[archs[0]]
    return SweepResult(arch=",".join(archs), params=params, workloads=workloads,
                       objectives=objectives, rows=rows, profiles=first.profiles, parts=parts,
                       local=local)

"""The result of hwq.map: per-layer and total cycles, time, energy and ratios to a baseline.

speedup = baseline seconds / seconds (time, so designs at different clocks compare fairly; equal to
the cycle ratio at equal clocks); energy_efficiency = baseline energy / energy, both on the same
profile. utilization = MACs / (cycles * the design's peak MACs per cycle at the layer's precision).

JSON layout (``VERSION`` 1), written by ``Report.to_json`` and read back by ``Report.from_json``::

    {"format": "hwq.report", "version": 1, "arch": "loom", "baseline": "dadiannao",
     "profile": "resnet50", "config": {...}, "notes": [...], "layers": [{...}, ...], "total": {...}}

The header is ``"format"`` / ``"version"``, as in every hwq file (profiles, plans, sweeps); a file
without it, or with another format, is refused with a ValueError naming the file. ``hwq map
--format json`` writes a list of such reports (``read_reports`` reads it). Quantities that are not
defined for a layer (``fps``, ``latency_s``, ``area_mm2``) are NaN, written as JSON's ``NaN``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Sequence

from .._io import atomic_write, atomic_write_text, read_json
from .._table import text_table

FORMAT = "hwq.report"
VERSION = 1


def check_header(data: Any, fmt: str, version: int, what: str) -> None:
    """ValueError unless ``data`` is a JSON object whose ``"format"`` is ``fmt`` and whose
    ``"version"`` is the int ``version`` (the header of every hwq file); ``what`` says which kind
    of file is expected. The caller adds the file's name."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object with \"format\": {fmt!r} ({what}), got a "
                         f"{type(data).__name__}")
    if "format" not in data:
        raise ValueError(f"field 'format' is missing: expected {fmt!r} ({what}; a file written "
                         "before hwq added the header can be given \"format\": "
                         f"{fmt!r}, \"version\": {version})")
    if data["format"] != fmt:
        raise ValueError(f"field 'format' = {data['format']!r} is not accepted: expected {fmt!r} "
                         f"({what})")
    v = data.get("version")
    if type(v) is not int or v != version:  # not true, not 1.0
        raise ValueError(f"field 'version' = {v!r} is not accepted: this hwq reads {fmt} "
                         f"version {version}")


def _fields(d: Any, cls: type, where: str, derived: Sequence[str] = ()) -> dict[str, Any]:
    """The entries of ``d`` named like ``cls``'s fields (ValueError for a missing or unknown
    one; ``derived``: entries written for the reader's convenience and ignored)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in d]
    unknown = sorted(set(d) - set(names) - set(derived))
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing field(s) {missing}"] if missing else [])
            + ([f"unknown field(s) {unknown}"] if unknown else []))
            + f"; accepted: {', '.join(names)}")
    return {n: d[n] for n in names if n in d}


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} = {v!r} is not accepted: expected a number")
    return v


@dataclasses.dataclass
class Energy:
    """Picojoules, split by where they are spent."""

    compute: float = 0.0
    onchip: float = 0.0
    offchip: float = 0.0

    @property
    def total(self) -> float:
        return self.compute + self.onchip + self.offchip

    def __add__(self, other: "Energy") -> "Energy":
        return Energy(self.compute + other.compute, self.onchip + other.onchip,
                      self.offchip + other.offchip)

    def to_dict(self) -> dict[str, float]:
        return {"compute": self.compute, "onchip": self.onchip, "offchip": self.offchip,
                "total": self.total}

    @classmethod
    def from_dict(cls, d: Any, where: str = "energy_pj") -> "Energy":
        """The inverse of ``to_dict`` (``total`` is derived, so not read)."""
        f = _fields(d, cls, where, derived=("total",))
        return cls(**{k: _number(v, f"{where}.{k}") for k, v in f.items()})


@dataclasses.dataclass
class LayerReport:
    """One layer (or, for ``Report.total``, the network: sums, except footprint_bits, the largest
    layer's, which is what must fit on chip at once). cycles at the design's clock; seconds =
    cycles / clock; energy_pj in picojoules; footprint_bits / offchip_bits as in hwq.hw.cost;
    stall_cycles: cycles among ``cycles`` waiting for memory (designs that model bandwidth).

    Set on ``Report.total`` only (NaN on layers): ``seconds`` = time per image at steady state
    (the slowest layer's for a pipelined design, the sum otherwise), ``fps`` = 1 / seconds,
    ``latency_s`` = one image from input to output (the sum of the layers, times the batch when
    a design processes a batch together), ``area_mm2`` = the configuration's silicon area."""

    name: str
    kind: str
    macs: int
    cycles: float
    seconds: float
    energy_pj: Energy
    utilization: float
    speedup: float
    energy_efficiency: float
    footprint_bits: int = 0
    offchip_bits: int = 0
    stall_cycles: float = 0.0
    fps: float = math.nan
    latency_s: float = math.nan
    area_mm2: float = math.nan
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["energy_pj"] = self.energy_pj.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "layer") -> "LayerReport":
        """The inverse of ``to_dict``; ValueError naming ``where`` and the field."""
        f = _fields(d, cls, where)
        for k in ("name", "kind"):
            if not isinstance(f[k], str):
                raise ValueError(f"{where}.{k} = {f[k]!r} is not accepted: expected a string")
        notes = f.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"{where}.notes = {notes!r} is not accepted: expected a list of "
                             "strings")
        for k, v in f.items():
            if k not in ("name", "kind", "notes", "energy_pj"):
                _number(v, f"{where}.{k}")
        f["energy_pj"] = Energy.from_dict(f["energy_pj"], f"{where}.energy_pj")
        return cls(**f)


COLUMNS = ("layer", "kind", "MACs", "cycles", "time_us", "util", "speedup", "compute_uJ",
           "onchip_uJ", "offchip_uJ", "energy_uJ", "eff")


@dataclasses.dataclass
class Report:
    """``layers`` in profile order and ``total`` for the network; ``notes`` lists what the model
    approximated or lacked (e.g. run-time statistics), also per layer."""

    arch: str
    baseline: str
    profile: str
    layers: list[LayerReport]
    total: LayerReport
    config: dict[str, Any]
    notes: list[str] = dataclasses.field(default_factory=list)

    def __getitem__(self, name: str) -> LayerReport:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer named {name!r} in the report")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "arch": self.arch, "baseline": self.baseline, "profile": self.profile,
                "config": _plain(self.config), "notes": self.notes,
                "layers": [l.to_dict() for l in self.layers], "total": self.total.to_dict()}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON text (module docstring); written to ``path`` atomically."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: Any) -> "Report":
        """The inverse of ``to_dict``: ValueError for a missing or other header (``"format"``
        must be ``"hwq.report"``, ``"version"`` 1) or a field out of the layout."""
        check_header(d, FORMAT, VERSION, "an hwq.map report, written by Report.to_json")
        f = _fields({k: v for k, v in d.items() if k not in ("format", "version")}, cls,
                    "report")
        for k in ("arch", "baseline", "profile"):
            if not isinstance(f[k], str):
                raise ValueError(f"report field {k!r} = {f[k]!r} is not accepted: expected a "
                                 "string")
        if not isinstance(f["config"], dict):
            raise ValueError(f"report field 'config' = {f['config']!r} is not accepted: expected "
                             "an object")
        notes = f.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"report field 'notes' = {notes!r} is not accepted: expected a list "
                             "of strings")
        if not isinstance(f["layers"], list):
            raise ValueError(f"report field 'layers' = {f['layers']!r} is not accepted: expected "
                             "a list")
        f["layers"] = [LayerReport.from_dict(l, f"layers[{i}]") for i, l in enumerate(f["layers"])]
        f["total"] = LayerReport.from_dict(f["total"], "total")
        return cls(**f)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Report":
        """A report written by ``to_json``; ValueError naming the file when it is not one (a
        list of reports, as ``hwq map --format json`` writes, is read by ``read_reports``)."""
        data = read_json(path, "report file")
        if isinstance(data, list):
            raise ValueError(f"report file {os.fspath(path)!r} holds a list of {len(data)} "
                             "reports (hwq map --format json): read it with "
                             "hwq.hw.read_reports")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"report file {os.fspath(path)!r}: {e}") from None

    def rows(self) -> list[list[str]]:
        return [_row(l) for l in self.layers + [self.total]]

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        return reports_csv([self], path)

    def table(self) -> str:
        """A text table: one row per layer and a total row."""
        head = list(COLUMNS)
        body = [_row(l) for l in self.layers]
        total = _row(self.total)
        t = self.total
        out = [f"{self.arch} vs {self.baseline} on {self.profile}: speedup "
               f"{t.speedup:.2f}x, energy efficiency {t.energy_efficiency:.2f}x; "
               f"{_fmt(t.fps, 1)} images/s, latency {_fmt(t.latency_s * 1e3, 3)} ms, "
               f"area {_fmt(t.area_mm2, 2)} mm^2",
               text_table(head, body, total=total, left=2)]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _fmt(v: float, digits: int = 2) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:,.{digits}f}"


def _row(l: LayerReport) -> list[str]:
    return [l.name, l.kind, f"{l.macs:,}", f"{l.cycles:,.0f}", _fmt(l.seconds * 1e6),
            _fmt(l.utilization), _fmt(l.speedup), _fmt(l.energy_pj.compute / 1e6, 3),
            _fmt(l.energy_pj.onchip / 1e6, 3), _fmt(l.energy_pj.offchip / 1e6, 3),
            _fmt(l.energy_pj.total / 1e6, 3), _fmt(l.energy_efficiency)]


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    return v


def reports_json(reports: Sequence[Report], path: str | os.PathLike | None = None) -> str:
    """Several reports as a JSON list of ``Report.to_dict`` objects, each with its header (what
    ``hwq map --format json`` writes); written to ``path`` atomically when given."""
    text = json.dumps([r.to_dict() for r in reports], indent=1) + "\n"
    if path is not None:
        atomic_write_text(path, text)
    return text


def read_reports(path: str | os.PathLike) -> list[Report]:
    """The reports in ``path``: a list of them (``reports_json``, ``hwq map --format json``) or
    one (``Report.to_json``). ValueError naming the file and the entry when one is not a
    report."""
    data = read_json(path, "report file")
    try:
        if isinstance(data, list):
            out = []
            for i, d in enumerate(data):
                try:
                    out.append(Report.from_dict(d))
                except ValueError as e:
                    raise ValueError(f"entry {i}: {e}") from None
            return out
        return [Report.from_dict(data)]
    except ValueError as e:
        raise ValueError(f"report file {os.fspath(path)!r}: {e}") from None


CSV_COLUMNS = ("arch", "baseline", "layer", "kind", "macs", "cycles", "seconds", "utilization",
               "speedup", "compute_pj", "onchip_pj", "offchip_pj", "energy_pj",
               "energy_efficiency", "footprint_bits", "offchip_bits", "stall_cycles", "fps",
               "latency_s", "area_mm2", "notes")


def reports_csv(reports: Sequence[Report], path: str | os.PathLike | None = None) -> str:
    """One row per layer (and a "total" row) per report, machine-readable numbers."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in reports:
        for l in r.layers + [r.total]:
            e = l.energy_pj
            w.writerow([r.arch, r.baseline, l.name, l.kind, l.macs, repr(float(l.cycles)),
                        repr(l.seconds), repr(l.utilization), repr(l.speedup), repr(e.compute),
                        repr(e.onchip), repr(e.offchip), repr(e.total), repr(l.energy_efficiency),
                        l.footprint_bits, l.offchip_bits, repr(float(l.stall_cycles)),
                        repr(l.fps), repr(l.latency_s), repr(l.area_mm2), " | ".join(l.notes)])
    text = buf.getvalue()
    if path is not None:
        atomic_write_text(path, text)
    return text


def plot(reports: Sequence[Report], path: str | os.PathLike) -> None:
    """Per-layer cycles and energy of several designs on the same profile, as a PNG (matplotlib,
    optional: ImportError with an install hint when missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from None
    names = [l.name for l in reports[0].layers]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, len(names) * 0.25), 8), sharex=True)
    width = 0.8 / len(reports)
    for i, r in enumerate(reports):
        xs = [j + i * width for j in range(len(names))]
        ax1.bar(xs, [l.cycles for l in r.layers], width, label=r.arch)
        ax2.bar(xs, [l.energy_pj.total / 1e6 for l in r.layers], width, label=r.arch)
    ax1.set_ylabel("cycles")
    ax1.set_yscale("log")
    ax2.set_ylabel("energy (uJ)")
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax1.legend(fontsize=7)
    ax1.set_title(f"{reports[0].profile}: per-layer cycles and energy")
    fig.tight_layout()
    try:  # atomically, like every file hwq writes
        atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"), mode="wb")
    finally:
        plt.close(fig)

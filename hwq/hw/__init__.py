"""Accelerator models: one file per design (a config dataclass with the paper's defaults and a
per-layer cost function, every constant cited), a shared 45 nm energy table, and hwq.map.

``hwq.hw.ARCHS`` lists the registered names; ``hwq.map(profile, "stripes")`` costs a Profile.
"""
from .config import ArchConfig
from .cost import Cost
from .energy import HOROWITZ_45NM, EnergyTable
from .mapper import map
from .registry import ARCHS, Arch, get
from .report import Energy, LayerReport, Report, plot, read_reports, reports_csv, reports_json
from .sweep import SweepResult, sweep  # noqa: E402  (hwq.hw.sweep is then the function)
from .generate import Generated, generate  # noqa: E402

# map is left out: "from hwq.hw import *" keeps the builtin (hwq.hw.map is unchanged)
__all__ = ["ARCHS", "Arch", "get", "ArchConfig", "Cost", "EnergyTable", "HOROWITZ_45NM",
           "Energy", "LayerReport", "Report", "plot", "reports_csv", "reports_json",
           "read_reports", "sweep", "SweepResult",
           "generate", "Generated"]

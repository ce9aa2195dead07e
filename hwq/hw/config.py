"""The configuration every accelerator model shares, and its loading from Python and TOML.

Each design's file subclasses ArchConfig with its own fields and paper defaults. Change a value from
Python (``hwq.map(p, "stripes", tiles=8)`` or ``StripesConfig(tiles=8)``) or from a TOML file::

    [stripes]            # a table per design (or the keys at top level for a one-design file)
    tiles = 8
    [stripes.energy]
    dram_pj_per_64b = 2600.0

Unknown keys and wrongly typed values are refused with the key, the value and what is accepted.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar

from .._io import read_toml as _read_toml
from .energy import HOROWITZ_45NM, EnergyTable


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Fields every design has.

    freq_hz: clock (Hz); speedups compare time, so designs at different clocks compare fairly.
    storage_bits: bits per value in on-chip and off-chip memory when values are not packed (the
        datapath width: 16 for DaDianNao's fixed point, MICRO 2014).
    proteus: store each layer's weights and activations packed at the layer's own precision
        (Proteus, Judd et al., ICS 2016): cuts footprint, on-chip reads and off-chip traffic.
    offchip: each layer reads its weights and input from DRAM and writes its output there (a
        layer-by-layer schedule, assumed). False models a design that keeps everything on chip
        (DaDianNao's 36 MB eDRAM), with no off-chip traffic.
    energy: the per-operation energy table (45 nm Horowitz by default).
    """

    freq_hz: float = 606e6
    storage_bits: int = 16
    proteus: bool = False
    offchip: bool = True
    energy: EnergyTable = HOROWITZ_45NM

    pipelined: ClassVar[bool] = False
    """True for a dataflow design whose layers run concurrently on separate hardware (FINN): its
    throughput is set by the slowest layer, its latency by the sum. False: one layer at a time."""
    search_space: ClassVar[dict[str, tuple]] = {}
    """The default grid of ``hwq generate`` (hwq.hw.generate): option -> values to try. Each design
    sets its own (assumed: powers of two around the paper's organisation); empty: give a grid."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            want = type(f.default) if f.default is not dataclasses.MISSING else None
            if f.name == "energy":
                if not isinstance(v, EnergyTable):
                    raise ValueError(f"{type(self).__name__} energy={v!r} is not accepted: expected "
                                     "an EnergyTable (or a table of its fields in TOML)")
            elif want is bool and not isinstance(v, bool):
                raise ValueError(f"{type(self).__name__} {f.name}={v!r} is not accepted: expected "
                                 "true or false")
            elif want is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{type(self).__name__} {f.name}={v!r} is not accepted: expected "
                                 "an integer >= 0")
            elif want is float and (isinstance(v, bool) or not isinstance(v, (int, float))
                                    or not 0 < v < math.inf):
                raise ValueError(f"{type(self).__name__} {f.name}={v!r} is not accepted: expected "
                                 "a finite number > 0")
            elif want is str and not isinstance(v, str):
                raise ValueError(f"{type(self).__name__} {f.name}={v!r} is not accepted: expected "
                                 "a string")
        self.check()

    def check(self) -> None:
        """Design-specific checks (choices, positive sizes); subclasses override."""

    def area_mm2(self, profile=None) -> float:
        """Silicon area of this configuration in mm^2, scaled from the paper's reported area and
        process (each design's file cites its figures); every design defines it. ``profile``:
        the network, for designs whose hardware is sized per layer (FINN)."""
        raise NotImplementedError(f"{type(self).__name__} does not define area_mm2")

    @property
    def batch_size(self) -> int:
        """Images processed together (reports are per image; an image waits for its batch)."""
        return getattr(self, "batch", 1)

    @classmethod
    def accepted(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **overrides: Any) -> "ArchConfig":
        """A copy with fields changed; an unknown name is refused with the accepted ones."""
        unknown = sorted(set(overrides) - set(self.accepted()))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown option(s) {unknown}; accepted: "
                             f"{self.accepted()}")
        if isinstance(overrides.get("energy"), dict):
            overrides["energy"] = _energy(type(self).__name__, overrides["energy"], self.energy)
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchConfig":
        return cls().replace(**d)

    @classmethod
    def from_toml(cls, path: str | os.PathLike, table: str | None = None) -> "ArchConfig":
        """Read a config from a TOML file: the ``[table]`` when given and present, else the keys
        at top level (sub-tables naming other designs are skipped)."""
        return cls.from_dict(read_toml(path, table, cls.accepted()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _energy(owner: str, d: dict[str, Any], base: EnergyTable) -> EnergyTable:
    accepted = [f.name for f in dataclasses.fields(EnergyTable)]
    unknown = sorted(set(d) - set(accepted))
    if unknown:
        raise ValueError(f"{owner} energy: unknown field(s) {unknown}; accepted: {accepted}")
    return dataclasses.replace(base, **d)


def read_toml(path: str | os.PathLike, table: str | None, accepted: list[str]) -> dict[str, Any]:
    """The options in a TOML file for one design: its ``[table]`` when present, else the top-level
    keys (tables are kept only when they name an option, such as ``energy``: the others are other
    designs' tables)."""
    data = _read_toml(path, "config")  # names the path when not UTF-8, not TOML, too nested
    if table is not None and isinstance(data.get(table), dict):
        return dict(data[table])
    return {k: v for k, v in data.items() if not isinstance(v, dict) or k in accepted}

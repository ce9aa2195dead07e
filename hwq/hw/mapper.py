"""hwq.map(profile, arch, baseline="dadiannao", **config) -> Report."""
from __future__ import annotations

import math
import os
from typing import Any

from ..profile import Profile
from .config import ArchConfig, read_toml
from .cost import Cost
from .registry import Arch, get
from .report import Energy, LayerReport, Report


def _config(name: str, arch: Arch, config: Any, overrides: dict[str, Any]) -> ArchConfig:
    cfg = arch.default_config()
    if isinstance(config, ArchConfig):
        if not isinstance(config, arch.config):
            raise ValueError(f"config={type(config).__name__} is not accepted for arch {name!r}: "
                             f"expected a {arch.config.__name__}")
        cfg = config
    elif isinstance(config, (str, os.PathLike)):
        cfg = cfg.replace(**read_toml(config, name, arch.config.accepted()))
    elif isinstance(config, dict):
        cfg = cfg.replace(**config)
    elif config is not None:
        raise ValueError(f"config={config!r} is not accepted: expected None, a config dataclass, "
                         "a dict, or the path of a TOML file")
    return cfg.replace(**overrides) if overrides else cfg


def _costs(profile: Profile, arch: Arch, cfg: ArchConfig) -> list[Cost]:
    return arch.costs(profile, cfg)


def _seconds(c: Cost, cfg: ArchConfig) -> float:
    return c.cycles / (c.freq_hz or cfg.freq_hz)


def timing(costs: list[Cost], cfg: ArchConfig) -> tuple[float, float]:
    """(seconds per image at steady state, latency of one image in seconds).

    One layer at a time: an image takes the sum of its layers, and waits for its batch.
    A pipeline (``cfg.pipelined``, FINN): every layer works on a different image, so a new image
    enters every slowest-layer interval; one image's latency is the sum of the layers (FINN's
    ``dataflow_performance`` analysis: max_cycles for the rate, critical-path cycles for latency).
    """
    layer_s = [_seconds(c, cfg) for c in costs]
    if not layer_s:
        return math.nan, math.nan
    if cfg.pipelined:
        return max(layer_s), sum(layer_s)
    return sum(layer_s), sum(layer_s) * cfg.batch_size


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def network_total(profile: Profile, costs: list[Cost], cfg: ArchConfig) -> LayerReport:
    """``Report.total`` of a network from its layers' costs, without the ratios to a baseline
    (speedup and energy_efficiency are NaN): hwq.map and hwq.sweep both take it from here."""
    energy = sum((Energy(c.compute_pj, c.onchip_pj, c.offchip_pj) for c in costs), Energy())
    seconds, latency = timing(costs, cfg)
    capacity = sum(c.cycles * c.peak_macs_per_cycle for c in costs)
    return LayerReport(
        name="total", kind="", macs=profile.macs, cycles=sum(c.cycles for c in costs),
        seconds=seconds, energy_pj=energy, utilization=_ratio(profile.macs, capacity),
        speedup=math.nan, energy_efficiency=math.nan,
        footprint_bits=max(c.footprint_bits for c in costs),
        offchip_bits=sum(c.offchip_bits for c in costs),
        stall_cycles=sum(c.stall_cycles for c in costs), fps=_ratio(1.0, seconds),
        latency_s=latency, area_mm2=cfg.area_mm2(profile))


def map(profile: Profile | str | os.PathLike, arch: str, baseline: str = "dadiannao",
        config: Any = None, baseline_config: Any = None, **overrides: Any) -> Report:
    """Cost every layer of ``profile`` on design ``arch`` and on ``baseline`` (same profile).

    profile: a Profile, or the path of a profile JSON file.
    arch, baseline: names in hwq.hw.ARCHS.
    config: the arch's options as a config dataclass, a dict, or a TOML file (its ``[arch]`` table
        or its top-level keys); ``**overrides`` change single options on top
        (``hwq.map(p, "stripes", tiles=8)``). baseline_config: the same for the baseline, which
        otherwise runs with its defaults.
    """
    if isinstance(profile, (str, os.PathLike)):
        profile = Profile.from_json(profile)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile={type(profile).__name__} is not accepted: expected a "
                         "hwq.Profile or the path of a profile JSON file")
    profile.validate()
    a, b = get(arch), get(baseline)
    cfg = _config(arch, a, config, overrides)
    bcfg = _config(baseline, b, baseline_config, {})
    costs, bcosts = _costs(profile, a, cfg), _costs(profile, b, bcfg)

    layers = []
    for layer, c, bc in zip(profile.layers, costs, bcosts):
        e = Energy(c.compute_pj, c.onchip_pj, c.offchip_pj)
        be = Energy(bc.compute_pj, bc.onchip_pj, bc.offchip_pj)
        s, bs = _seconds(c, cfg), _seconds(bc, bcfg)
        layers.append(LayerReport(
            name=layer.name, kind=layer.kind, macs=layer.macs, cycles=c.cycles, seconds=s,
            energy_pj=e, utilization=_ratio(layer.macs, c.cycles * c.peak_macs_per_cycle),
            speedup=_ratio(bs, s), energy_efficiency=_ratio(be.total, e.total),
            footprint_bits=c.footprint_bits, offchip_bits=c.offchip_bits,
            stall_cycles=c.stall_cycles, notes=list(c.notes)))

    benergy = sum((Energy(c.compute_pj, c.onchip_pj, c.offchip_pj) for c in bcosts), Energy())
    bseconds, _ = timing(bcosts, bcfg)
    total = network_total(profile, costs, cfg)
    total.speedup = _ratio(bseconds, total.seconds)
    total.energy_efficiency = _ratio(benergy.total, total.energy_pj.total)
    notes = []
    for l in layers:
        for n in l.notes:
            if n not in notes:
                notes.append(n)
    counted = {n: sum(n in l.notes for l in layers) for n in notes}
    notes = [f"{n} ({k} layer{'s' if k > 1 else ''})" for n, k in counted.items()]
    bnotes = sorted({n for c in bcosts for n in c.notes})
    notes += [f"baseline {baseline}: {n}" for n in bnotes]
    return Report(arch=arch, baseline=baseline, profile=profile.name, layers=layers, total=total,
                  config=cfg.to_dict(), notes=notes)

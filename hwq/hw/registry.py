"""The registered accelerator models: name -> (config class, cost function, preset options).

Adding a design: one file with a config dataclass and ``cost(layer, cfg) -> Cost``, and one line
here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from . import (bitfusion, dadiannao, diannao, dstripes, envision, eyeriss, finn, loom, pragmatic,
               proteus, shift, stripes, systolic, tartan, yodann)
from .config import ArchConfig


@dataclasses.dataclass(frozen=True)
class Arch:
    config: type[ArchConfig]
    cost: Callable
    preset: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Options that make this name a variant of a design (e.g. a systolic dataflow)."""
    network: Callable | None = None
    """``network(profile, cfg) -> list[Cost]`` for a design that costs a layer with knowledge of
    the network (BitFusion runs the layer reading the input as im2col); None: ``cost`` per layer."""

    def costs(self, profile, cfg: ArchConfig) -> list:
        if self.network is not None:
            return self.network(profile, cfg)
        return [self.cost(layer, cfg) for layer in profile.layers]

    def default_config(self) -> ArchConfig:
        return self.config(**self.preset)


ARCHS: dict[str, Arch] = {
    "dadiannao": Arch(dadiannao.DaDianNaoConfig, dadiannao.cost),
    "diannao": Arch(diannao.DianNaoConfig, diannao.cost),
    "stripes": Arch(stripes.StripesConfig, stripes.cost),
    "dstripes": Arch(dstripes.DynamicStripesConfig, dstripes.cost),
    "loom": Arch(loom.LoomConfig, loom.cost),
    "loom_dynamic": Arch(loom.LoomConfig, loom.cost, {"dynamic": True}),
    "tartan": Arch(tartan.TartanConfig, tartan.cost),
    "pragmatic": Arch(pragmatic.PragmaticConfig, pragmatic.cost),
    "pragmatic_col": Arch(pragmatic.PragmaticConfig, pragmatic.cost, {"run_ahead": 1}),
    "proteus": Arch(proteus.ProteusConfig, proteus.cost),
    "envision": Arch(envision.EnvisionConfig, envision.cost),
    "yodann": Arch(yodann.YodaNNConfig, yodann.cost),
    "finn": Arch(finn.FinnConfig, finn.cost, network=finn.network_cost),
    "shift": Arch(shift.ShiftConfig, shift.cost),
    "eyeriss": Arch(eyeriss.EyerissConfig, eyeriss.cost),
    "bitfusion": Arch(bitfusion.BitFusionConfig, bitfusion.cost, network=bitfusion.network_cost),
    "systolic_ws": Arch(systolic.SystolicConfig, systolic.cost, {"dataflow": "ws"}),
    "systolic_os": Arch(systolic.SystolicConfig, systolic.cost, {"dataflow": "os"}),
    "systolic_is": Arch(systolic.SystolicConfig, systolic.cost, {"dataflow": "is"}),
}


def get(name: str) -> Arch:
    if name not in ARCHS:
        raise ValueError(f"arch {name!r} is not known; accepted: {', '.join(ARCHS)}")
    return ARCHS[name]

"""Proteus (Judd et al., "Proteus: Exploiting Numerical Precision Variability in Deep Neural
Networks", ICS 2016).

Stores each layer's weights and activations at the layer's own precision, packed, and expands
them on the way to the compute units: the memory footprint and the traffic shrink, the compute does
not change. Here: DaDianNao's compute with packed storage. Any other design takes packed storage
with ``proteus=True`` (``hwq.map(p, "stripes", proteus=True)``). Footprint of a layer = its weights
and input activations, each tensor packed into 16-bit words (hwq.hw.cost.packed_bits).
Reported: -43% inter-layer traffic, -38% footprint, -15% energy (another version: -41% traffic,
-14% energy).
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .cost import Cost
from .dadiannao import DaDianNaoConfig, parallel_cost


@dataclasses.dataclass(frozen=True)
class ProteusConfig(DaDianNaoConfig):
    proteus: bool = True
    """Packed per-layer storage (the point of the design)."""


def cost(layer: LayerProfile, cfg: ProteusConfig) -> Cost:
    return parallel_cost(layer, cfg, "Proteus")

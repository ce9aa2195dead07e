"""Tartan (Delmas Lascorz et al., "Tartan: Accelerating Fully-Connected and Convolutional Layers in
Deep Learning Networks by Exploiting Numerical Precision Variability", arXiv 1707.09068, 2017).

Extends Stripes to FC layers: conv layers as Stripes (time scales with p_a / 16, 16 windows per
tile); FC layers, which have one window, process the weights bit-serially instead, so their time
scales with p_w / 16 of DaDianNao's. Reported: 1.90x speedup and 1.17x energy efficiency over
DaDianNao without accuracy loss; 2.04x / 1.25x at 99% relative accuracy.
"""
from __future__ import annotations

import dataclasses

from ..profile import LayerProfile
from .cost import Cost, dadn_steps, memory, reduction, single_window
from .stripes import StripesConfig, serial_conv


@dataclasses.dataclass(frozen=True)
class TartanConfig(StripesConfig):
    pass


def cost(layer: LayerProfile, cfg: TartanConfig) -> Cost:
    if not single_window(layer):
        return serial_conv(layer, cfg, layer.a_bits, layer.a_bits, [])
    filters = cfg.filters * cfg.tiles
    base = dadn_steps(layer, cfg.lanes, filters) * layer.windows
    scale = layer.w_bits / 16
    c = Cost(cycles=base * scale, peak_macs_per_cycle=filters * cfg.lanes / scale,
             compute_pj=layer.macs * cfg.energy.mac_pj(layer.w_bits, cfg.width, reduction(layer)),
             notes=[])
    return memory(layer, cfg, w_reuse=1, a_reuse=min(layer.filters_per_group, filters), cost=c)

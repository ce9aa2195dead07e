"""Shape-only reference networks (the classic CNNs of the accelerator papers) as Profiles.

``hwq.workloads.build("alexnet")`` returns a Profile with every conv and FC layer at 16-bit fixed
point (the DaDianNao baseline) and no run-time statistics. The layers are editable, so a paper's
per-layer precision table can be typed in::

    p = hwq.workloads.build("alexnet")
    p["conv1"].a_bits = 9
    p.set_bits(a_bits=[9, 7, 4, 5, 7, 16, 16, 16])   # one per layer, in order
"""
from __future__ import annotations

from typing import Callable

from ..profile import Profile
from . import alexnet, googlenet, mobilenet_v2, nin, resnet, vgg19, vgg_cnn

BUILDERS: dict[str, Callable[[], Profile]] = {
    "alexnet": alexnet.build,
    "nin": nin.build,
    "googlenet": googlenet.build,
    "vgg_m": vgg_cnn.build_m,
    "vgg_s": vgg_cnn.build_s,
    "vgg19": vgg19.build,
    "resnet18": lambda: resnet.build("resnet18"),
    "resnet50": lambda: resnet.build("resnet50"),
    "mobilenet_v2": mobilenet_v2.build,
}
NAMES = tuple(BUILDERS)


def build(name: str, w_bits: int = 16, a_bits: int = 16) -> Profile:
    """The workload ``name`` (one of NAMES) with every layer at ``w_bits`` / ``a_bits``."""
    if name not in BUILDERS:
        raise ValueError(f"workload {name!r} is not known; accepted: {', '.join(NAMES)}")
    p = BUILDERS[name]()
    for layer in p.layers:
        layer.w_bits, layer.a_bits = w_bits, a_bits
        layer.w_quant, layer.a_quant = f"fixed:{w_bits}", f"fixed:{a_bits}"
    p.validate()
    return p


__all__ = ["build", "NAMES", "BUILDERS"]

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
from . import (alexnet, bitfusion_bench, finn_bench, googlenet, mobilenet_v2, nin, resnet, vgg19,
               vgg_cnn)

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
    # BitFusion's benchmarks, with the paper's per-layer precisions
    "bf_alexnet": bitfusion_bench.alexnet,
    "bf_svhn": bitfusion_bench.svhn,
    "bf_cifar10": bitfusion_bench.cifar10,
    "bf_lenet5": bitfusion_bench.lenet5,
    "bf_vgg7": bitfusion_bench.vgg7,
    "bf_resnet18": bitfusion_bench.resnet18,
    "bf_rnn": bitfusion_bench.rnn,
    "bf_lstm": bitfusion_bench.lstm,
    # the 1x-wide AlexNet and ResNet-18 that the BitFusion authors' Eyeriss results ran
    "bf_alexnet_1x": lambda: bitfusion_bench.alexnet(wide=1),
    "bf_resnet18_1x": lambda: bitfusion_bench.resnet18(wide=1),
    # FINN's BNN-PYNQ networks, binary, with the padded sizes the overlays synthesise
    "finn_cnv": finn_bench.cnv,
    "finn_lfc": finn_bench.lfc,
}
NAMES = tuple(BUILDERS)


def build(name: str, w_bits: int | None = None, a_bits: int | None = None) -> Profile:
    """The workload ``name`` (one of NAMES) with every layer at ``w_bits`` / ``a_bits``; None keeps
    the network's own precisions (16-bit fixed point for the classic CNNs, the paper's per-layer
    precisions for the ``bf_*`` BitFusion benchmarks, binary for ``finn_*``)."""
    if name not in BUILDERS:
        raise ValueError(f"workload {name!r} is not known; accepted: {', '.join(NAMES)}")
    for what, v in (("w_bits", w_bits), ("a_bits", a_bits)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32):
            raise ValueError(f"{what}={v!r} is not accepted: expected an integer 1..32 or None")
    p = BUILDERS[name]()
    for layer in p.layers:
        if w_bits is not None:
            layer.w_bits, layer.w_quant, layer.w_pow2 = w_bits, f"fixed:{w_bits}", False
        if a_bits is not None:
            layer.a_bits, layer.a_quant = a_bits, f"fixed:{a_bits}"
    p.validate()
    return p


__all__ = ["build", "NAMES", "BUILDERS"]

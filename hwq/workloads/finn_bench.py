"""FINN's reference networks as the BNN-PYNQ overlays synthesise them (Umuroglu et al., FPGA 2017;
Xilinx/BNN-PYNQ, ``bnn/src/network/{cnvW1A1,lfcW1A1}/hw/config.h``), binary weights and
activations, with the matrix sizes the hardware really has: LFC's 784 inputs padded to 832 and the
10 classes of both padded to 64 output rows.

CNV (CIFAR-10): 3x3 convs without padding 64-64, pool, 128-128, pool, 256-256, then FC 256-512-
512-10. LFC (MNIST): FC 784-1024-1024-1024-10. ``FOLDING`` holds the PE / SIMD of each layer in
those headers; their "Ext Latency" (cycles per image of each layer) is ``EXT_LATENCY``.
"""
from __future__ import annotations

from ..profile import Profile
from .builder import Net

FOLDING = {
    "finn_cnv": {"conv0": [16, 3], "conv1": [32, 32], "conv2": [16, 32], "conv3": [16, 32],
                 "conv4": [4, 32], "conv5": [1, 32], "fc0": [1, 4], "fc1": [1, 8], "fc2": [4, 1]},
    "finn_lfc": {"fc0": [32, 64], "fc1": [64, 32], "fc2": [32, 64], "fc3": [16, 8]},
}
"""{network: {layer: [PE, SIMD]}} from BNN-PYNQ's cnvW1A1 and lfcW1A1 config.h."""
EXT_LATENCY = {
    "finn_cnv": {"conv0": 32400, "conv1": 28224, "conv2": 20736, "conv3": 28800, "conv4": 20736,
                 "conv5": 18432, "fc0": 32768, "fc1": 32768, "fc2": 8192},
    "finn_lfc": {"fc0": 416, "fc1": 512, "fc2": 512, "fc3": 512},
}
"""Cycles per image of each layer, as printed in those config.h headers ("Ext Latency")."""


def _binary(net: Net, name: str, source: str, shape) -> Profile:
    for layer in net.layers:
        layer.w_bits = layer.a_bits = 1
        layer.w_quant = layer.a_quant = "binary"
        layer.w_pow2 = True
    return net.profile(name, shape, source)


def cnv() -> Profile:
    net = Net((3, 32, 32))
    net.conv("conv0", 64, 3).conv("conv1", 64, 3).pool(2, 2)
    net.conv("conv2", 128, 3).conv("conv3", 128, 3).pool(2, 2)
    net.conv("conv4", 256, 3).conv("conv5", 256, 3)
    net.fc("fc0", 512).fc("fc1", 512).fc("fc2", 64)
    return _binary(net, "finn_cnv", "BNN-PYNQ cnvW1A1 (classes padded to 64)", (3, 32, 32))


def lfc() -> Profile:
    net = Net((832,))
    net.fc("fc0", 1024).fc("fc1", 1024).fc("fc2", 1024).fc("fc3", 64)
    return _binary(net, "finn_lfc", "BNN-PYNQ lfcW1A1 (input padded to 832, classes to 64)",
                   (832,))

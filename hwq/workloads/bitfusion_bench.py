"""The eight benchmarks of BitFusion (Sharma et al., ISCA 2018, Table 2) as its authors' simulator
defines them (hsharma35/bitfusion, ``src/benchmarks/benchmarks.py``), with their per-layer
precisions: AlexNet and ResNet-18 in their WRPN 2x-wide form (the form the authors' published sweep
ran), SVHN and CIFAR-10 (QNN), LeNet-5, VGG-7 and ResNet-18 (TWN), and the RNN and LSTM
(PTB) matrix products.

Shapes follow that simulator: 'SAME' pads k // 2 on both sides, 2x2 max pools of stride 2 (floor).
A layer's a_bits is the precision of its input tensor (the network input's for the first layer),
w_bits its weights'; binary values take 1 bit. The authors ran batch 16; a Profile is per sample.
"""
from __future__ import annotations

from ..profile import Profile
from .builder import Net

NAMES = ("bf_alexnet", "bf_svhn", "bf_cifar10", "bf_lenet5", "bf_vgg7", "bf_resnet18", "bf_rnn",
         "bf_lstm", "bf_alexnet_1x", "bf_resnet18_1x")


def _conv(net: Net, name: str, out: int, k: int, w_bits: int, a_bits: int, stride: int = 1,
          same: bool = True) -> Net:
    net.conv(name, out, k, stride=stride, pad=k // 2 if same else 0)
    layer = net.layers[-1]
    layer.w_bits, layer.a_bits = w_bits, a_bits
    return net


def _fc(net: Net, name: str, out: int, w_bits: int, a_bits: int) -> Net:
    net.fc(name, out)
    layer = net.layers[-1]
    layer.w_bits, layer.a_bits = w_bits, a_bits
    return net


def _finish(net: Net, name: str, shape: tuple[int, ...], source: str) -> Profile:
    for layer in net.layers:
        layer.w_quant = "binary" if layer.w_bits == 1 else f"fixed:{layer.w_bits}"
        layer.w_pow2 = layer.w_bits == 1  # +/-1 weights
        layer.a_quant = "binary" if layer.a_bits == 1 else f"fixed:{layer.a_bits}"
    return net.profile(name, shape, f"BitFusion benchmark {source} (hsharma35/bitfusion)")


def alexnet(wide: int = 2) -> Profile:
    """AlexNet, two towers (conv1_a / conv1_b ...) as in the simulator: WRPN 2x wide (what the
    published BitFusion sweep ran) or ``wide=1`` (what the published Eyeriss results ran; its
    first layer has 4-bit weights)."""
    net = Net((3, 227, 227))
    towers = []
    for t in ("a", "b"):   # both towers read the input first (and run as im2col)
        x = net.fork()
        _conv(x, f"conv1_{t}", 48 * wide, 11, 8 if wide == 2 else 4, 8, stride=4,
              same=False).pool(2, 2)
        towers.append(x)
    for t, x in zip(("a", "b"), towers):
        _conv(x, f"conv2_{t}", 128 * wide, 5, 4, 4).pool(2, 2)
    cat = net.fork().concat(*towers)
    outs = []
    for t in ("a", "b"):
        x = cat.fork()
        _conv(x, f"conv3_{t}", 192 * wide, 3, 4, 4)
        _conv(x, f"conv4_{t}", 192 * wide, 3, 4, 4)
        _conv(x, f"conv5_{t}", 128 * wide, 3, 4, 4).pool(2, 2)
        outs.append(x)
    top = cat.fork().concat(*outs)
    _fc(top, "fc1", 4096 * wide, 4, 4)
    _fc(top, "fc2", 4096 * wide, 4, 4)
    _fc(top, "fc3", 1000, 8, 8)
    name = "bf_alexnet" if wide == 2 else "bf_alexnet_1x"
    return _finish(net, name, (3, 227, 227), f"AlexNet ({'WRPN 2x' if wide == 2 else '1x'})")


def svhn() -> Profile:
    """SVHN QNN: binary weights and activations, 8-bit input."""
    net = Net((3, 32, 32))
    _conv(net, "conv0", 64, 3, 1, 8)
    _conv(net, "conv1", 64, 3, 1, 1).pool(2, 2)
    _conv(net, "conv2", 128, 3, 1, 1)
    _conv(net, "conv3", 128, 3, 1, 1).pool(2, 2)
    _conv(net, "conv4", 256, 3, 1, 1)
    _conv(net, "conv5", 256, 3, 1, 1).pool(2, 2)
    _fc(net, "fc6", 1024, 1, 1)
    _fc(net, "fc7", 1024, 1, 1)
    _fc(net, "fc8", 10, 1, 1)
    return _finish(net, "bf_svhn", (3, 32, 32), "SVHN (QNN)")


def cifar10() -> Profile:
    """CIFAR-10 QNN: 2-bit weights and activations, 8-bit first layer."""
    net = Net((3, 32, 32))
    _conv(net, "conv0", 128, 3, 8, 8)
    _conv(net, "conv1", 128, 3, 2, 2).pool(2, 2)
    _conv(net, "conv2", 256, 3, 2, 2)
    _conv(net, "conv3", 256, 3, 2, 2).pool(2, 2)
    _conv(net, "conv4", 512, 3, 2, 2)
    _conv(net, "conv5", 512, 3, 2, 2).pool(2, 2)
    _fc(net, "fc6", 1024, 2, 2)
    _fc(net, "fc7", 1024, 2, 2)
    _fc(net, "fc8", 10, 2, 2)
    return _finish(net, "bf_cifar10", (3, 32, 32), "CIFAR-10 (QNN)")


def lenet5() -> Profile:
    """LeNet-5 TWN: 2-bit (ternary) weights and activations."""
    net = Net((1, 32, 32))
    _conv(net, "conv0", 32, 5, 2, 2).pool(2, 2)
    _conv(net, "conv1", 64, 5, 2, 2).pool(2, 2)
    _fc(net, "fc1", 512, 2, 2)
    _fc(net, "fc2", 10, 2, 2)
    return _finish(net, "bf_lenet5", (1, 32, 32), "LeNet-5 (TWN)")


def vgg7() -> Profile:
    """VGG-7 TWN on CIFAR-10: two towers from the input, summed before the FC layer."""
    net = Net((3, 32, 32))
    towers = []
    for t in ("a", "b"):
        x = net.fork()
        _conv(x, f"conv1_{t}", 128, 3, 2, 2).pool(2, 2)
        towers.append(x)
    for i, width in ((2, 256), (3, 512)):
        for t, x in zip(("a", "b"), towers):
            _conv(x, f"conv{i}_{t}", width, 3, 2, 2).pool(2, 2)
    _fc(towers[0], "fc1", 1024, 2, 2)
    return _finish(net, "bf_vgg7", (3, 32, 32), "VGG-7 (TWN)")


def resnet18(wide: int = 2) -> Profile:
    """ResNet-18 as the simulator defines it: a 1x1 then a 3x3 conv per unit; WRPN 2x wide (the
    BitFusion sweep) or ``wide=1`` (TWN; the published Eyeriss results)."""
    net = Net((3, 224, 224))
    _conv(net, "conv1_a", 64 * wide, 7, 8, 8, stride=2).pool(2, 2)
    for mod, width in zip(range(2, 6), (64 * wide, 128 * wide, 256 * wide, 512 * wide)):
        for i in (1, 2):
            stride = 2 if (i == 1 and mod > 2) else 1
            _conv(net, f"module{mod}/conv{mod}_{i}_a", width, 1, 4, 4, stride=stride)
            _conv(net, f"module{mod}/conv{mod}_{i}_b", width, 3, 4, 4)
    name = "bf_resnet18" if wide == 2 else "bf_resnet18_1x"
    return _finish(net, name, (3, 224, 224), f"ResNet-18 ({'WRPN 2x' if wide == 2 else 'TWN 1x'})")


def _matmul(name: str, size: int) -> Profile:
    net = Net((size,))
    _fc(net, "matmul", size, 4, 4)
    return _finish(net, name, (size,), f"{name[3:].upper()} (PTB), a {size} x {size} product")


def rnn() -> Profile:
    return _matmul("bf_rnn", 4096)


def lstm() -> Profile:
    return _matmul("bf_lstm", 3600)

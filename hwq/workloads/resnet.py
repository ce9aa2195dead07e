"""ResNet-18 and ResNet-50 (He et al., CVPR 2016), layer names as in torchvision.

224x224 input. ResNet-50 uses the stride on the 3x3 conv of each bottleneck (torchvision's
"ResNet v1.5"; the paper puts it on the first 1x1): 4.1 G MACs per image (3.8-3.9 G for v1).
ResNet-18: 1.8 G MACs. Projection shortcuts (1x1 conv, "downsample") where the shape changes.
"""
from .builder import Net

LAYERS = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}


def _basic(net: Net, p: str, width: int, stride: int) -> None:
    x = net.fork()
    net.conv(p + "conv1", width, 3, stride=stride, pad=1).conv(p + "conv2", width, 3, pad=1)
    if stride != 1 or x.shape[0] != width:
        x.conv(p + "downsample.0", width, 1, stride=stride)


def _bottleneck(net: Net, p: str, width: int, stride: int) -> None:
    x = net.fork()
    net.conv(p + "conv1", width, 1).conv(p + "conv2", width, 3, stride=stride, pad=1)
    net.conv(p + "conv3", width * 4, 1)
    if stride != 1 or x.shape[0] != width * 4:
        x.conv(p + "downsample.0", width * 4, 1, stride=stride)


def build(name: str = "resnet50"):
    block = _bottleneck if name == "resnet50" else _basic
    net = Net((3, 224, 224))
    net.conv("conv1", 64, 7, stride=2, pad=3).pool(3, 2, pad=1)          # 112 -> 56
    for stage, (n, width) in enumerate(zip(LAYERS[name], (64, 128, 256, 512)), start=1):
        for i in range(n):
            block(net, f"layer{stage}.{i}.", width, 2 if (i == 0 and stage > 1) else 1)
    net.global_pool().fc("fc", 1000)
    return net.profile(name, (3, 224, 224), f"{name} (He et al. 2016; torchvision layout)")

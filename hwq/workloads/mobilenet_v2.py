"""MobileNetV2 (Sandler et al., CVPR 2018, Table 2), width 1.0, layer names as in torchvision.

224x224 input; inverted residual blocks (1x1 expand by t, 3x3 depthwise, 1x1 project) with the
(t, c, n, s) settings of Table 2, a 1x1 conv to 1280 and a 1000-way FC. About 0.30 G MACs per image
(the paper: 300 M multiply-adds), 3.5 M weights.
"""
from .builder import Net

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))


def build():
    net = Net((3, 224, 224))
    net.conv("features.0.0", 32, 3, stride=2, pad=1)
    idx = 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            p = f"features.{idx}.conv."
            hidden = net.shape[0] * t
            j = 0
            if t != 1:
                net.conv(p + "0.0", hidden, 1)
                j = 1
            net.conv(p + f"{j}.0", hidden, 3, stride=s if i == 0 else 1, pad=1, groups=hidden)
            net.conv(p + f"{j + 1}", c, 1)
            idx += 1
    net.conv(f"features.{idx}.0", 1280, 1)
    net.global_pool().fc("classifier.1", 1000)
    return net.profile("mobilenet_v2", (3, 224, 224), "MobileNetV2 1.0 (Sandler et al. 2018)")

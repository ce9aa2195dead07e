"""GoogLeNet (Szegedy et al., CVPR 2015, Table 1) as in Caffe's bvlc_googlenet deploy net.

224x224 input; the two auxiliary classifiers exist only for training and are left out. Max pools
3/2 rounded up (Caffe); each inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 pool -> 1x1.
About 1.5 G MACs per image (the paper: "1.5 billion multiply-adds").
"""
from .builder import Net

# (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): Table 1 of the paper.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _inception(net: Net, tag: str) -> None:
    c1, r3, c3, r5, c5, pp = INCEPTION[tag]
    p = f"inception_{tag}/"
    b1 = net.fork().conv(p + "1x1", c1, 1)
    b2 = net.fork().conv(p + "3x3_reduce", r3, 1).conv(p + "3x3", c3, 3, pad=1)
    b3 = net.fork().conv(p + "5x5_reduce", r5, 1).conv(p + "5x5", c5, 5, pad=2)
    b4 = net.fork().pool(3, 1, pad=1).conv(p + "pool_proj", pp, 1)
    net.concat(b1, b2, b3, b4)


def build():
    net = Net((3, 224, 224))
    net.conv("conv1/7x7_s2", 64, 7, stride=2, pad=3).pool(3, 2, ceil=True)      # 112 -> 56
    net.conv("conv2/3x3_reduce", 64, 1).conv("conv2/3x3", 192, 3, pad=1)
    net.pool(3, 2, ceil=True)                                                  # 28
    _inception(net, "3a"), _inception(net, "3b")
    net.pool(3, 2, ceil=True)                                                  # 14
    for tag in ("4a", "4b", "4c", "4d", "4e"):
        _inception(net, tag)
    net.pool(3, 2, ceil=True)                                                  # 7
    _inception(net, "5a"), _inception(net, "5b")
    net.global_pool().fc("loss3/classifier", 1000)
    return net.profile("googlenet", (3, 224, 224), "Caffe bvlc_googlenet deploy (no auxiliary "
                       "classifiers)")

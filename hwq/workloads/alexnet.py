"""AlexNet as in Caffe's bvlc_alexnet (Krizhevsky et al., NIPS 2012; Jia et al., Caffe 2014).

227x227 input; conv2, conv4 and conv5 are grouped (groups=2), the two-GPU split of the paper.
About 0.72 G MACs per image (conv 0.67 G + fc 0.06 G), 61 M weights.
"""
from .builder import Net


def build():
    net = Net((3, 227, 227))
    net.conv("conv1", 96, 11, stride=4).pool(3, 2, ceil=True)          # 55 -> 27
    net.conv("conv2", 256, 5, pad=2, groups=2).pool(3, 2, ceil=True)   # 27 -> 13
    net.conv("conv3", 384, 3, pad=1)
    net.conv("conv4", 384, 3, pad=1, groups=2)
    net.conv("conv5", 256, 3, pad=1, groups=2).pool(3, 2, ceil=True)   # 13 -> 6
    net.fc("fc6", 4096).fc("fc7", 4096).fc("fc8", 1000)
    return net.profile("alexnet", (3, 227, 227), "Caffe bvlc_alexnet (grouped conv2/4/5)")

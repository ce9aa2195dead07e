"""VGG_CNN_M and VGG_CNN_S (Chatfield et al., "Return of the Devil in the Details", BMVC 2014,
Table 1: CNN-M and CNN-S), the "VGG_M" and "VGG_S" of the Stripes paper (Judd et al., MICRO 2016).

224x224 input, max pools rounded up (Caffe). CNN-M: conv1 96x7x7/2, pool 3/2, conv2 256x5x5/2 pad 1,
pool 3/2, conv3-5 512x3x3 pad 1, pool 3/2, fc 4096-4096-1000. CNN-S: conv1 96x7x7/2, pool 3/3,
conv2 256x5x5/1 (no padding, as in the model zoo's VGG_CNN_S; unverified), pool 2/2, conv3-5
512x3x3 pad 1, pool 3/3, fc 4096-4096-1000. Both reach fc6 with a 512x6x6 input, as in the paper.
"""
from .builder import Net


def build_m():
    net = Net((3, 224, 224))
    net.conv("conv1", 96, 7, stride=2).pool(3, 2, ceil=True)              # 109 -> 54
    net.conv("conv2", 256, 5, stride=2, pad=1).pool(3, 2, ceil=True)      # 26 -> 13
    net.conv("conv3", 512, 3, pad=1).conv("conv4", 512, 3, pad=1)
    net.conv("conv5", 512, 3, pad=1).pool(3, 2, ceil=True)                # 13 -> 6
    net.fc("fc6", 4096).fc("fc7", 4096).fc("fc8", 1000)
    return net.profile("vgg_m", (3, 224, 224), "VGG_CNN_M (Chatfield et al. 2014, CNN-M)")


def build_s():
    net = Net((3, 224, 224))
    net.conv("conv1", 96, 7, stride=2).pool(3, 3, ceil=True)              # 109 -> 37
    net.conv("conv2", 256, 5).pool(2, 2, ceil=True)                       # 33 -> 17
    net.conv("conv3", 512, 3, pad=1).conv("conv4", 512, 3, pad=1)
    net.conv("conv5", 512, 3, pad=1).pool(3, 3, ceil=True)                # 17 -> 6
    net.fc("fc6", 4096).fc("fc7", 4096).fc("fc8", 1000)
    return net.profile("vgg_s", (3, 224, 224), "VGG_CNN_S (Chatfield et al. 2014, CNN-S)")

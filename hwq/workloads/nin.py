"""Network in Network, ImageNet model (Lin et al., ICLR 2014; the Caffe model zoo "NIN-imagenet").

224x224 input; four mlpconv blocks (a k x k conv followed by two 1x1 "cccp" convs), max pools 3/2
(Caffe, rounded up), global average pooling, no FC layer. About 1.1 G MACs per image.
"""
from .builder import Net


def build():
    net = Net((3, 224, 224))
    net.conv("conv1", 96, 11, stride=4).conv("cccp1", 96, 1).conv("cccp2", 96, 1)    # 54
    net.pool(3, 2, ceil=True)                                                         # 27
    net.conv("conv2", 256, 5, pad=2).conv("cccp3", 256, 1).conv("cccp4", 256, 1)
    net.pool(3, 2, ceil=True)                                                         # 13
    net.conv("conv3", 384, 3, pad=1).conv("cccp5", 384, 1).conv("cccp6", 384, 1)
    net.pool(3, 2, ceil=True)                                                         # 6
    net.conv("conv4-1024", 1024, 3, pad=1).conv("cccp7-1024", 1024, 1)
    net.conv("cccp8-1024", 1000, 1)
    return net.profile("nin", (3, 224, 224), "Caffe model zoo NIN-imagenet")

"""VGG-19 (Simonyan & Zisserman, ICLR 2015, configuration E).

224x224 input; 16 conv layers 3x3 pad 1 in five stages (64, 128, 256, 512, 512 filters) with 2x2
max pools, then fc 4096-4096-1000. About 19.6 G MACs per image, 144 M weights.
"""
from .builder import Net

STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def build():
    net = Net((3, 224, 224))
    for s, (width, depth) in enumerate(STAGES, start=1):
        for i in range(1, depth + 1):
            net.conv(f"conv{s}_{i}", width, 3, pad=1)
        net.pool(2, 2)
    net.fc("fc6", 4096).fc("fc7", 4096).fc("fc8", 1000)
    return net.profile("vgg19", (3, 224, 224), "VGG-19, configuration E")

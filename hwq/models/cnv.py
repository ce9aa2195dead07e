"""CNV, the VGG-like CIFAR-10 network of FINN (Umuroglu et al., "FINN: A Framework for Fast,
Scalable Binarized Neural Network Inference", FPGA 2017, sec. 4; the BinaryNet topology of
Courbariaux et al. 2016 scaled down), as in Brevitas' bnn_pynq examples: six 3x3 convolutions
without padding (64, 64, pool, 128, 128, pool, 256, 256) on 32x32 inputs, then FC 512, FC 512 and
the classifier, BatchNorm after every layer but the last. 32x32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5
-> 3 -> 1; 1.5 M parameters, 59 M MACs per image.
"""
from __future__ import annotations

from torch import nn

CONVS = (64, 64, "pool", 128, 128, "pool", 256, 256)


class CNV(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        layers, cin = [], in_channels
        for c in CONVS:
            if c == "pool":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(cin, c, 3, bias=False), nn.BatchNorm2d(c), act()]
            cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(256, 512, bias=False), nn.BatchNorm1d(512), act(),
            nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), act(),
            nn.Linear(512, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))

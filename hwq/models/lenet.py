"""LeNet-5 for 28x28 MNIST (LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998), in its common modern form: the 28x28 input is padded by 2 to the
paper's 32x32, max pooling replaces the trainable subsampling, BatchNorm follows each layer (so
binary activations see signed inputs), and the classifier is a plain linear layer (no RBF units).
conv1 6@5x5 -> pool -> conv2 16@5x5 -> pool -> fc1 120 -> fc2 84 -> fc3 classes; 0.42 M MACs.
"""
from __future__ import annotations

from torch import nn


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(6), act()
        self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(16), act()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120, bias=False)
        self.bn3, self.act3 = nn.BatchNorm1d(120), act()
        self.fc2 = nn.Linear(120, 84, bias=False)
        self.bn4, self.act4 = nn.BatchNorm1d(84), act()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.pool(self.act2(self.bn2(self.conv2(x))))
        x = self.act3(self.bn3(self.fc1(x.flatten(1))))
        x = self.act4(self.bn4(self.fc2(x)))
        return self.fc3(x)

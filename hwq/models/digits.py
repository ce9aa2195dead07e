"""A small CNN for the 8x8 handwritten digits of scikit-learn (1 x 8 x 8 inputs, 10 classes).

Three 3x3 convolutions (16, 32, 32 filters by default), each followed by BatchNorm and the
activation, 2x2 max pooling after the second and third (8x8 -> 4x4 -> 2x2), and one linear
classifier: 1 x 8 x 8 -> 16 x 8 x 8 -> 32 x 4 x 4 -> 32 x 2 x 2 -> 10; 15.4 k parameters and
0.45 M MACs per image. Convolutions have no bias (BatchNorm follows). Layer names (conv1, conv2,
conv3, fc) are what recipes and plans refer to.
"""
from __future__ import annotations

from torch import nn


class DigitsCNN(nn.Module):
    """``act``: activation class (nn.ReLU; nn.Hardtanh before binary activations, BNN practice)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 channels: tuple[int, int, int] = (16, 32, 32), act: type[nn.Module] = nn.ReLU):
        super().__init__()
        if len(channels) != 3 or not all(isinstance(c, int) and c > 0 for c in channels):
            raise ValueError(f"channels={channels!r} is not accepted: expected three positive ints")
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(c1), act()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(c2), act()
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1, bias=False)
        self.bn3, self.act3 = nn.BatchNorm2d(c3), act()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * c3, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.pool(self.act2(self.bn2(self.conv2(x))))
        x = self.pool(self.act3(self.bn3(self.conv3(x))))
        return self.fc(x.flatten(1))

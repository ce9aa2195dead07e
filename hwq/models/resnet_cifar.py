"""ResNet-20/32/44/56 for 32x32 CIFAR images (He et al., "Deep Residual Learning", CVPR 2016, sec.
4.2): a 3x3 stem with 16 filters, three stages of n basic blocks with 16/32/64 filters (stride 2 at
the start of stages 2 and 3), global average pooling and a linear classifier; 6n + 2 layers.
Shortcuts are option A of the paper: identity, subsampled and zero-padded in channels where the
shape changes, so they hold no weights (ResNet-20: 0.27 M parameters, 40.6 M MACs).
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.act2(out + short)


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
            raise ValueError(f"depth={depth!r} is not accepted: expected 6n + 2 (20, 32, 44, 56, ...)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = act()
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1, act))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layers(self.act1(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def resnet20(num_classes: int = 10, act: type[nn.Module] = nn.ReLU) -> CifarResNet:
    """ResNet-20 for CIFAR. ``act``: nn.ReLU, or nn.Hardtanh for binary activations (BNN practice)."""
    return CifarResNet(20, num_classes, act)

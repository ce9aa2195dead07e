"""ResNet-20/32/44/56 for 32x32 CIFAR images (He et al., "Deep Residual Learning", CVPR 2016, sec.
4.2): a 3x3 stem with 16 filters, three stages of n basic blocks with 16/32/64 filters (stride 2 at
the start of stages 2 and 3), global average pooling and a linear classifier; 6n + 2 layers.
Shortcuts are option A of the paper: identity, subsampled and zero-padded in channels where the
shape changes, so they hold no weights (ResNet-20: 0.27 M parameters, 40.6 M MACs).

Two block structures, ``shortcut``:

- "pair" (He et al.): a shortcut around each pair of 3x3 convs, act(bn2(conv2(act(bn1(conv1(x)))))
  + x). The default, and every model trained before the option existed.
- "every" (Bi-Real Net, Liu et al., ECCV 2018, "1-layer-per-block"): a shortcut around every 3x3
  conv, y = act(bn1(conv1(x)) + x), out = act(bn2(conv2(y)) + y). In a binary network the real
  values of x and y reach the next block past the sign of each conv's input, so the binary convs
  add to a real-valued signal instead of replacing it. This is the structure of IR-Net's CIFAR-10
  ResNet-20 (Qin et al., CVPR 2020: 86.5% at W1A1; their code, github.com/htqin/IR-Net,
  CIFAR-10/ResNet20/1w1a/resnet.py, applies Hardtanh after each add and keeps option A's
  zero-padded shortcut where the shape changes). Bi-Real's ImageNet nets downsample the shortcut
  with a 2x2 average pool and a real-valued 1x1 conv instead; here both structures keep option A,
  as IR-Net does on CIFAR: no weights on the shortcut, the same parameters and MACs as "pair", and
  nothing but binary convs and adds for the packed deployment.
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """He et al.'s basic block: a shortcut around the pair conv1, conv2 (option A)."""

    shortcut: ClassVar[str] = "pair"  # the block structure, as CifarResNet's ``shortcut`` names it

    def __init__(self, cin: int, cout: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act()
        self.stride, self.pad = stride, cout - cin

    def _short(self, x):
        """Option A: x subsampled by the stride and zero-padded to cout channels (no weights)."""
        short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return short

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self._short(x))


class BiRealBlock(BasicBlock):
    """Bi-Real Net's structure (module docstring): a shortcut around each conv, the option-A one
    around conv1 (which may change the shape), the identity around conv2. Same modules, names and
    parameters as BasicBlock, so a recipe's layer patterns (layers.3.conv1, ...) apply to both."""

    shortcut: ClassVar[str] = "every"

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)) + self._short(x))
        return self.act2(self.bn2(self.conv2(out)) + out)

    # The two structures have the same parameter names and shapes, so without a mark a Bi-Real
    # state_dict would load into the pair ResNet (and back) without a word and compute the wrong
    # network. The mark ("layers.N._extra_state" = {"shortcut": "every"}) makes a strict load of
    # either into the other fail on that key; the pair block has none, so every pair checkpoint
    # loads as before.
    def get_extra_state(self) -> dict[str, str]:
        return {"shortcut": self.shortcut}

    def set_extra_state(self, state) -> None:
        if state != {"shortcut": self.shortcut}:
            raise ValueError(f"state_dict entry _extra_state = {state!r} is not accepted for a "
                             f"Bi-Real block: expected {{'shortcut': {self.shortcut!r}}}")


BLOCKS: dict[str, type[BasicBlock]] = {b.shortcut: b for b in (BasicBlock, BiRealBlock)}
SHORTCUTS = tuple(BLOCKS)  # ("pair", "every")


class CifarResNet(nn.Module):
    """``shortcut``: "pair" (He et al., default) or "every" (Bi-Real Net); module docstring."""

    def __init__(self, depth: int = 20, num_classes: int = 10, act: type[nn.Module] = nn.ReLU,
                 shortcut: str = "pair"):
        super().__init__()
        if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
            raise ValueError(f"depth={depth!r} is not accepted: expected 6n + 2 "
                             "(20, 32, 44, 56, ...)")
        if not isinstance(shortcut, str) or shortcut not in BLOCKS:
            raise ValueError(f"shortcut={shortcut!r} is not accepted: expected one of "
                             f"{list(SHORTCUTS)} (a shortcut around each pair of convs, He et al. "
                             "2016; or around every conv, Bi-Real Net)")
        block = BLOCKS[shortcut]
        self.shortcut = shortcut
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = act()
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(block(cin, cout, 2 if (stage > 0 and i == 0) else 1, act))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layers(self.act1(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def resnet20(num_classes: int = 10, act: type[nn.Module] = nn.ReLU,
             shortcut: str = "pair") -> CifarResNet:
    """ResNet-20 for CIFAR. ``act``: nn.ReLU, or nn.Hardtanh for binary activations (BNN practice).
    ``shortcut``: "pair" (He et al.) or "every" (Bi-Real Net's structure)."""
    return CifarResNet(20, num_classes, act, shortcut)

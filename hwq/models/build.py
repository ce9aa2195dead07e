"""Models by name, as recipes name them: ``build("digits_cnn", num_classes=10, act="relu")``.

hwq's own: digits_cnn (8x8 digits), lenet5 (MNIST), resnet20 (CIFAR; ``shortcut="every"`` for
Bi-Real Net's shortcut around every conv), cnv (FINN's CIFAR net).
torchvision's: resnet18, mobilenet_v2 (untrained; their ReLU / ReLU6 modules are swapped for
``act`` when it is not "relu").
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .cnv import CNV
from .digits import DigitsCNN
from .lenet import LeNet5
from .resnet_cifar import CifarResNet

ACTS = {"relu": nn.ReLU, "hardtanh": nn.Hardtanh}
TORCHVISION = ("resnet18", "mobilenet_v2")


def _resnet20(num_classes: int, in_channels: int, act: type[nn.Module],
              shortcut: str = "pair") -> nn.Module:
    if in_channels != 3:
        raise ValueError(f"in_channels={in_channels} is not accepted for resnet20: expected 3 "
                         "(CIFAR RGB images)")
    return CifarResNet(20, num_classes, act, shortcut)


OWN = {"digits_cnn": DigitsCNN, "lenet5": LeNet5, "cnv": CNV, "resnet20": _resnet20}
NAMES = tuple(OWN) + TORCHVISION
# The structure options a recipe's [model] section or `hwq export` may set, and the model that
# takes each (hwq.train.run and hwq.export.source check against this one table).
OPTION_OWNERS = {"channels": "digits_cnn", "shortcut": "resnet20"}


def _swap_acts(model: nn.Module, act: type[nn.Module]) -> None:
    for name, m in list(model.named_modules()):
        for cname, child in list(m.named_children()):
            if type(child) in (nn.ReLU, nn.ReLU6):
                setattr(m, cname, act())


def build(name: str, num_classes: int = 10, in_channels: int = 3, act: str = "relu",
          **options: Any) -> nn.Module:
    """A freshly initialised model. ``act``: "relu" or "hardtanh" (for binary activations).
    ``options``: extra constructor arguments (e.g. channels=(16, 32, 32) for digits_cnn,
    shortcut="every" for resnet20)."""
    if name not in NAMES:
        raise ValueError(f"model name={name!r} is not accepted: expected one of {list(NAMES)}")
    if act not in ACTS:
        raise ValueError(f"model act={act!r} is not accepted: expected one of {list(ACTS)}")
    if name in OWN:
        return OWN[name](num_classes=num_classes, in_channels=in_channels, act=ACTS[act],
                         **options)
    import torchvision
    if in_channels != 3:
        raise ValueError(f"in_channels={in_channels} is not accepted for {name}: torchvision's "
                         "models take 3-channel images")
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    if act != "relu":
        _swap_acts(model, ACTS[act])
    return model

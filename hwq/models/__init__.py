"""Reference models used by the recipes, tests and benchmarks; ``build(name)`` makes one by name."""
from .build import NAMES, build
from .cnv import CNV
from .digits import DigitsCNN
from .lenet import LeNet5
from .resnet_cifar import CifarResNet, resnet20

__all__ = ["CifarResNet", "resnet20", "DigitsCNN", "LeNet5", "CNV", "build", "NAMES"]

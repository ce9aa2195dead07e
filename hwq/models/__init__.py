"""Reference models used by the recipes, tests and benchmarks."""
from .resnet_cifar import CifarResNet, resnet20

__all__ = ["CifarResNet", "resnet20"]

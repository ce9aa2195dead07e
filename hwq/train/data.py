"""Data sets by name, as recipes name them: ``datasets(name, dir, download, augment)``.

- digits: scikit-learn's 8x8 handwritten digits (1,797 images of 1 x 8 x 8, values 0..16; Alpaydin
  and Kaynak, UCI 1998), shipped inside the scikit-learn package: no download. Fixed split: a
  permutation with seed 0, the first 450 images (25%) for test, the other 1,347 for training.
  Pixels are scaled to [0, 1] and standardised with the training split's mean and std.
- mnist, cifar10: torchvision's data sets under ``dir`` (downloaded only with download=True).
- imagenet: an ImageFolder tree ``dir/train/<class>/*.JPEG`` and ``dir/val/<class>/*.JPEG``,
  224 x 224 crops (the standard ResNet preprocessing).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, TensorDataset

NAMES = ("digits", "mnist", "cifar10", "imagenet")
DIGITS_TEST = 450  # 25% of 1,797
DIGITS_SPLIT_SEED = 0
# Per-channel mean and std of the training splits (the usual published values).
MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class Data(NamedTuple):
    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]  # one sample, (C, H, W)
    num_classes: int


def digits() -> Data:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return Data(TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test]), (1, 8, 8), 10)


def _missing(name: str, folder: str, err: Exception) -> ValueError:
    return ValueError(
        f"data set {name!r} was not found under data.dir = {folder!r} ({err}). Download it once "
        f"with --download (or --set data.download=true), or point --data-dir at a folder that "
        f"holds it")


def _torchvision(name: str, folder: str, download: bool, augment: bool) -> Data:
    from torchvision import datasets, transforms as T
    if name == "mnist":
        cls, stats, shape = datasets.MNIST, MNIST_STATS, (1, 28, 28)
        aug = [T.RandomCrop(28, padding=2)] if augment else []
    else:
        cls, stats, shape = datasets.CIFAR10, CIFAR10_STATS, (3, 32, 32)
        aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    norm = [T.ToTensor(), T.Normalize(*stats)]
    try:
        train = cls(folder, train=True, download=download, transform=T.Compose(aug + norm))
        test = cls(folder, train=False, download=download, transform=T.Compose(norm))
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
        raise _missing(name, folder, e) from None
    return Data(train, test, shape, 10)


def _imagenet(folder: str, augment: bool) -> Data:
    from torchvision import datasets, transforms as T
    norm = [T.ToTensor(), T.Normalize(*IMAGENET_STATS)]
    train_tf = ([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if augment
                else [T.Resize(256), T.CenterCrop(224)])
    parts = {}
    for split in ("train", "val"):
        path = os.path.join(folder, split)
        if not os.path.isdir(path):
            raise ValueError(f"data set 'imagenet': folder {path!r} does not exist. ImageNet cannot "
                             "be downloaded automatically: get ILSVRC2012 from image-net.org and "
                             "arrange it as DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG, "
                             "then pass --data-dir DIR")
        tf = train_tf if split == "train" else [T.Resize(256), T.CenterCrop(224)]
        parts[split] = datasets.ImageFolder(path, transform=T.Compose(tf + norm))
    return Data(parts["train"], parts["val"], (3, 224, 224), len(parts["train"].classes))


def datasets(name: str, folder: str = "data", download: bool = False,
             augment: bool = False) -> Data:
    """Training and test sets of data set ``name`` (see the module docstring)."""
    if name not in NAMES:
        raise ValueError(f"data.name = {name!r} is not accepted: expected one of {list(NAMES)}")
    if name == "digits":
        if augment:
            raise ValueError("data.augment = true is not accepted for 'digits': 8x8 images have "
                             "no room for crops; set it to false")
        return digits()
    if name == "imagenet":
        if download:
            raise ValueError("data.download = true is not accepted for 'imagenet': it must be "
                             "obtained from image-net.org by hand")
        return _imagenet(folder, augment)
    return _torchvision(name, folder, download, augment)

"""Data sets by name, as recipes name them: ``datasets(name, dir, download, augment, ...)``.

- digits: scikit-learn's 8x8 handwritten digits (1,797 images of 1 x 8 x 8, values 0..16; Alpaydin
  and Kaynak, UCI 1998), shipped inside the scikit-learn package: no download. Fixed split: a
  permutation with seed 0, the first 450 images (25%) for test, the other 1,347 for training.
  Pixels are scaled to [0, 1] and standardised with the training split's mean and std.
- mnist, cifar10, folder: small images held in memory as uint8 tensors (hwq.train.images), from
  either an image folder ``dir/train/<class>/*.png|jpg`` and ``dir/test/`` (or ``dir/val/``), PNG or
  JPEG, grayscale or RGB, decoded once and cached; or, for mnist and cifar10, torchvision's own
  files under ``dir`` (downloaded only with download=True). Channels, image size and class count
  come from the data; the normalisation mean and std are computed from the training split.
  Augmentation (padded random crop, horizontal flip) runs on whole batches on the training device.
- imagenet: an ImageFolder tree ``dir/train/<class>/*.JPEG`` and ``dir/val/<class>/*.JPEG``,
  224 x 224 crops (the standard ResNet preprocessing), decoded per sample by DataLoader workers.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, TensorDataset

from . import images

NAMES = ("digits", "mnist", "cifar10", "folder", "imagenet")
SMALL = ("mnist", "cifar10", "folder")  # held in memory as uint8 tensors (hwq.train.images)
DIGITS_TEST = 450  # 25% of 1,797
DIGITS_SPLIT_SEED = 0
# ImageNet's per-channel mean and std (torchvision's published values): its 1.3 M images are not
# held in memory, so its statistics are not recomputed.
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


def _torchvision_arrays(name: str, folder: str, download: bool):
    """uint8 images (N, C, H, W) and labels of torchvision's MNIST or CIFAR-10 files, per split."""
    from torchvision import datasets as tv
    cls = {"mnist": tv.MNIST, "cifar10": tv.CIFAR10}[name]
    out = []
    for train in (True, False):
        try:
            ds = cls(folder, train=train, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
            raise _missing(name, folder, e) from None
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # MNIST: N,H,W; CIFAR: N,H,W,C
        out.append((x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64),
                    list(ds.classes)))
    return out


def _subset(n: int, xtr, ytr, xte, yte):
    """A seed-0 random subset: ``n`` training images and the same fraction of the test images
    (at least one)."""
    if not (isinstance(n, int) and 0 < n <= len(xtr)):
        raise ValueError(f"data.subset = {n!r} is not accepted: expected 0 (all) or a number of "
                         f"training images from 1 to {len(xtr)}")
    g = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(xtr), generator=g)[:n]
    te = torch.randperm(len(xte), generator=g)[:max(1, round(n * len(xte) / len(xtr)))]
    return xtr[tr], ytr[tr], xte[te], yte[te]


def small_images(name: str, folder: str, download: bool = False, augment: bool = False,
                 crop_padding: int = 4, flip: bool = True, cache_dir: str | None = "",
                 log=None, subset: int = 0) -> Data:
    """MNIST, CIFAR-10 or any folder of small images, held in memory (hwq.train.images).

    ``folder`` holds either the image-folder layout (train/ and test/ or val/, one subfolder per
    class) or, for mnist and cifar10, torchvision's files. ``cache_dir``: where decoded image
    folders are cached ("" = images.default_cache_dir(), None = no cache)."""
    if not os.path.isdir(folder):
        raise ValueError(f"data.dir = {folder!r} is not a folder: {images.LAYOUT}"
                         + ("" if name == "folder" else
                            f", or torchvision's {name} files (--download fetches them)"))
    if images.is_image_folder(folder):
        if download:
            raise ValueError(f"data.download = true is not accepted for the image folder "
                             f"{folder!r}: it is read as it is; set download to false")
        cache = images.default_cache_dir() if cache_dir == "" else cache_dir
        test_split = images.find_test_split(folder)
        xtr, ytr, classes = images.load_split(os.path.join(folder, "train"), cache, log=log)
        xte, yte, _ = images.load_split(os.path.join(folder, test_split), cache, classes, log=log)
        if xte.shape[1:] != xtr.shape[1:]:
            raise ValueError(f"data folder {folder!r}: test images are {tuple(xte.shape[1:])} "
                             f"(C, H, W) but training images are {tuple(xtr.shape[1:])}: "
                             "expected the same shape")
    elif name == "folder":
        raise ValueError(f"data folder {folder!r} has no train/ subfolder: {images.LAYOUT}")
    else:
        (xtr, ytr, classes), (xte, yte, _) = _torchvision_arrays(name, folder, download)
    if subset:
        xtr, ytr, xte, yte = _subset(subset, xtr, ytr, xte, yte)
    mean, std = images.channel_stats(xtr)
    pad, do_flip = (crop_padding, flip) if augment else (0, False)
    train = images.ImageTensors(xtr, ytr, mean, std, classes, pad, do_flip)
    test = images.ImageTensors(xte, yte, mean, std, classes)
    return Data(train, test, tuple(xtr.shape[1:]), len(classes))


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
             augment: bool = False, crop_padding: int = 4, flip: bool = True,
             cache_dir: str | None = "", log=None, subset: int = 0) -> Data:
    """Training and test sets of data set ``name`` (see the module docstring). ``crop_padding``,
    ``flip``: the augmentation of small images when ``augment``; ``cache_dir``: see
    small_images; ``subset``: train and test on a random part (small images only)."""
    if subset and name not in SMALL:
        raise ValueError(f"data.subset = {subset!r} is not accepted for {name!r}: only "
                         f"{list(SMALL)} take a subset; set it to 0")
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
    return small_images(name, folder, download, augment, crop_padding, flip, cache_dir, log,
                        subset)

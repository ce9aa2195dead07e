"""Small-image data sets held in memory as uint8 tensors, with augmentation as batch tensor ops.

Small images (CIFAR-10, MNIST, a user's own 32 x 32 folder) are decoded once into one uint8 tensor
of shape (N, C, H, W) (CIFAR-10's 50,000 training images: 154 MB). Per-sample PIL transforms in a
DataLoader cost more than a ResNet-20 step on a 2-core CPU; here a batch is one index into that
tensor, one copy to the training device, and then, on the device:

- a padded random crop: each image is shifted by (dy, dx) drawn uniformly from [-p, p], with zeros
  (black) coming in at the border: torchvision's ``RandomCrop(size, padding=p)`` on the raw image;
- a horizontal flip with probability 1/2 (``RandomHorizontalFlip``);
- normalisation ``(x / 255 - mean) / std`` per channel, with the mean and std of the training split
  (computed from the data, not copied from a paper).

The random draws come from a generator the caller seeds (the engine: seed, epoch and step), so a
resumed run augments exactly as an uninterrupted one.

Image folders (``train/<class>/*.png|jpg``, ``test/`` or ``val/``) are decoded with Pillow
and cached as a file keyed by the list of files (relative path and size of every image): a cache
built from another file list is refused as stale, an unreadable one as corrupt, each with a message
naming the cache file. The cache is written atomically.
"""
from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from .._io import atomic_torch_save

EXTENSIONS = (".png", ".jpg", ".jpeg")
CACHE_FORMAT = "hwq.image_cache"
CACHE_VERSION = 1
TEST_SPLITS = ("test", "val")


class ImageTensors(Dataset):
    """A classification data set held as uint8 images (N, C, H, W) and int64 labels (N,).

    ``dataset[i]`` gives the normalised float image (no augmentation) and its label, so it works
    wherever a torch Dataset does; ``batch(indices, device, generator)`` gives a whole batch on
    ``device``, augmented when a generator is passed. ``mean`` / ``std``: per channel, in [0, 1]
    units. ``crop_padding``: pixels of the padded random crop (0: none); ``flip``: random
    horizontal flips."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std,
                 classes: list[str] | None = None, crop_padding: int = 0, flip: bool = False):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images: expected a uint8 tensor (N, C, H, W), got {images.dtype} "
                             f"of shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels: expected shape ({images.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        c = images.shape[1]
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(c)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(c)
        if not bool((self.std > 0).all()):
            raise ValueError(f"std = {self.std.tolist()} is not accepted: expected values > 0 "
                             "(a channel with no variation cannot be standardised)")
        if not (isinstance(crop_padding, int) and 0 <= crop_padding < min(images.shape[2:])):
            raise ValueError(f"crop_padding = {crop_padding!r} is not accepted: expected an "
                             f"integer from 0 to {min(images.shape[2:]) - 1}")
        self.images, self.labels = images, labels.to(torch.int64)
        self.classes = list(classes) if classes is not None else None
        self.crop_padding, self.flip = crop_padding, bool(flip)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.normalize(self.images[i:i + 1])[0], int(self.labels[i])

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, on x's device."""
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        return (x.float().div_(255.0) - mean).div_(std)

    def batch(self, indices, device: torch.device | str = "cpu",
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at ``indices``, on ``device``: normalised, and augmented when
        ``generator`` (a CPU generator) is given and this data set augments."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        x = self.images.index_select(0, idx).to(device, non_blocking=True)
        y = self.labels.index_select(0, idx).to(device, non_blocking=True)
        if generator is not None and self.augments:
            x = augment(x, self.crop_padding, self.flip, generator)
        return self.normalize(x), y


def augment(x: torch.Tensor, crop_padding: int, flip: bool,
            generator: torch.Generator) -> torch.Tensor:
    """Padded random crop and random horizontal flip of a batch ``x`` (B, C, H, W), any dtype.

    Draws, in this order, from the CPU ``generator``: the row shifts, the column shifts (each
    uniform in [0, 2p]) and the flip coins, then gathers the crops on x's device in one indexing
    operation."""
    b, _, h, w = x.shape
    p = crop_padding
    if p > 0:
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        # padded[n, c, rows[n, i], cols[n, j]] for every n, c, i, j
        n = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ch = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[n, ch, rows, cols]
    if flip:
        coin = torch.rand(b, generator=generator).to(x.device) < 0.5
        x = torch.where(coin.view(b, 1, 1, 1), x.flip(3), x)
    return x


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), in [0, 1] units,
    accumulated in float64 (population std, as torchvision's CIFAR figures are computed)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(4096):
        v = chunk.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        s += v.sum(1)
        s2 += (v * v).sum(1)
    n = images.numel() // c
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# ----------------------------------------------------------------------------------------------
# Image folders

class Split(NamedTuple):
    files: list[str]      # paths relative to the split folder, "<class>/<name>"
    labels: list[int]
    classes: list[str]


LAYOUT = ("expected DIR/train/<class>/*.png|*.jpg and DIR/test/<class>/... (or DIR/val/...), "
          "one subfolder per class, as torchvision's ImageFolder")


def find_test_split(folder: str) -> str:
    """The name of the test split folder of image folder ``folder``: "test" or "val"."""
    for name in TEST_SPLITS:
        if os.path.isdir(os.path.join(folder, name)):
            return name
    raise ValueError(f"data folder {folder!r} has no test/ or val/ subfolder: {LAYOUT}")


def is_image_folder(folder: str) -> bool:
    """Whether ``folder`` has the image-folder layout's train/ subfolder."""
    return os.path.isdir(os.path.join(folder, "train"))


def scan(split_dir: str, classes: list[str] | None = None) -> Split:
    """The image files of one split folder, by class (subfolders in sorted order, or ``classes``:
    the training split's, so that labels agree between splits)."""
    if not os.path.isdir(split_dir):
        raise ValueError(f"data folder {split_dir!r} does not exist: {LAYOUT}")
    found = sorted(d for d in os.listdir(split_dir)
                   if not d.startswith(".") and os.path.isdir(os.path.join(split_dir, d)))
    if not found:
        raise ValueError(f"data folder {split_dir!r} has no class subfolders: {LAYOUT}")
    if classes is None:
        classes = found
    elif found != classes:
        raise ValueError(f"data folder {split_dir!r} has classes {found[:12]}, but the training "
                         f"split has {classes[:12]}: expected the same class subfolders")
    files, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(f for f in os.listdir(os.path.join(split_dir, cls)) if not f.startswith("."))
        bad = [f for f in names if os.path.splitext(f)[1].lower() not in EXTENSIONS]
        if bad:
            raise ValueError(f"data folder {os.path.join(split_dir, cls)!r} holds {bad[0]!r}, which "
                             f"is not an image: expected files ending in {list(EXTENSIONS)}")
        if not names:
            raise ValueError(f"data folder {os.path.join(split_dir, cls)!r} holds no images: "
                             f"every class subfolder needs at least one")
        files += [f"{cls}/{f}" for f in names]
        labels += [label] * len(names)
    return Split(files, labels, classes)


def file_list_key(split_dir: str, split: Split) -> str:
    """SHA-256 of the split's file list: every relative path, its size in bytes and its label."""
    h = hashlib.sha256()
    for f, y in zip(split.files, split.labels):
        h.update(f"{f}\t{os.path.getsize(os.path.join(split_dir, f))}\t{y}\n".encode())
    return h.hexdigest()


def _read_image(path: str) -> torch.Tensor:
    """One 8-bit image file as uint8 (C, H, W): C = 1 for grayscale, 3 for colour (palette and
    CMYK images converted to RGB, an alpha channel dropped)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise ValueError(f"image {path!r} has {img.mode!r} pixels (16- or 32-bit): "
                                 "expected 8-bit grayscale or colour")
            mode = "L" if img.mode in ("1", "L", "LA") else "RGB"
            a = np.asarray(img.convert(mode))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"image {path!r} cannot be decoded ({e}): expected a PNG or "
                         "JPEG file") from None
    return torch.from_numpy(a.copy()).unsqueeze(0) if a.ndim == 2 \
        else torch.from_numpy(a.copy()).permute(2, 0, 1)


def decode(split_dir: str, files: list[str]) -> torch.Tensor:
    """Decode the images (Pillow) into one uint8 tensor (N, C, H, W).

    Every image must have the same height and width. Grayscale images give C = 1 when all images
    are grayscale; when any image has colour, grayscale ones are repeated into three channels (as
    ImageFolder's RGB conversion does)."""
    imgs = []
    for f in files:
        path = os.path.join(split_dir, f)
        img = _read_image(path)
        if imgs and img.shape[1:] != imgs[0].shape[1:]:
            raise ValueError(f"image {path!r} is {img.shape[2]}x{img.shape[1]} pixels, but "
                             f"{os.path.join(split_dir, files[0])!r} is {imgs[0].shape[2]}x"
                             f"{imgs[0].shape[1]}: every image of a data folder must have the "
                             "same size (resize them first)")
        imgs.append(img)
    channels = max(i.shape[0] for i in imgs)
    return torch.stack([i.expand(channels, -1, -1) for i in imgs])


def cache_path(cache_dir: str, split_dir: str) -> str:
    """Where the cache of ``split_dir`` lives: one file per folder (its absolute path hashed)."""
    real = os.path.realpath(split_dir)
    tag = hashlib.sha256(real.encode()).hexdigest()[:16]
    parent = os.path.basename(os.path.dirname(real)) or "data"
    return os.path.join(cache_dir, f"{parent}-{os.path.basename(real)}-{tag}.pt")


def _read_cache(path: str, key: str) -> dict | None:
    if not os.path.exists(path):
        return None
    fix = "delete it and it will be rebuilt from the images"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, bit-flipped, not a torch file: all are "corrupt"
        raise ValueError(f"image cache {path!r} is corrupt ({type(e).__name__}: "
                         f"{str(e)[:120]}): {fix}") from None
    ok = (isinstance(state, dict) and state.get("format") == CACHE_FORMAT
          and isinstance(state.get("images"), torch.Tensor) and state["images"].dtype == torch.uint8
          and state["images"].dim() == 4 and isinstance(state.get("labels"), torch.Tensor)
          and state["labels"].shape == state["images"].shape[:1])
    if not ok:
        raise ValueError(f"image cache {path!r} is corrupt (not a {CACHE_FORMAT} file, or its "
                         f"tensors do not fit each other): {fix}")
    if state.get("version") != CACHE_VERSION:
        raise ValueError(f"image cache {path!r} has version {state.get('version')!r}, this hwq "
                         f"reads version {CACHE_VERSION}: {fix}")
    if state.get("key") != key:
        raise ValueError(f"image cache {path!r} is stale: it was built from another list of "
                         f"files ({state.get('n_files')} then, the folder changed since): {fix}")
    return state


def load_split(split_dir: str, cache_dir: str | None, classes: list[str] | None = None,
               log=None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images (uint8, N x C x H x W), labels and class names of one split folder, decoded once
    and cached under ``cache_dir`` (None: no cache)."""
    split = scan(split_dir, classes)
    key = file_list_key(split_dir, split)
    path = cache_path(cache_dir, split_dir) if cache_dir else None
    state = _read_cache(path, key) if path else None
    if state is not None:
        return state["images"], state["labels"], list(state["classes"])
    if log is not None:
        log(f"decoding {len(split.files):,} images of {split_dir} once"
            + (f" (cached in {path})" if path else ""))
    images = decode(split_dir, split.files)
    labels = torch.tensor(split.labels, dtype=torch.int64)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        state = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                 "n_files": len(split.files), "classes": split.classes, "images": images,
                 "labels": labels}
        atomic_torch_save(path, state)
    return images, labels, split.classes


def default_cache_dir() -> str:
    """$HWQ_CACHE, else $XDG_CACHE_HOME/hwq, else ~/.cache/hwq."""
    if os.environ.get("HWQ_CACHE"):
        return os.environ["HWQ_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hwq")

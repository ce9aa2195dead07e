"""Small-image data sets (hwq.train.images, hwq.train.data): batch augmentation against a
per-image reference, statistics in float64, image folders (PNG/JPEG, gray/RGB) decoded like PIL,
the cache (reused, stale and corrupt files refused), bad layouts named, torchvision's MNIST files."""
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from hwq.train import data as data_mod
from hwq.train import images


def test_augment_matches_per_image_crop_and_flip():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (37, 3, 9, 11), dtype=torch.uint8)
    out = images.augment(x, 3, True, torch.Generator().manual_seed(5))
    # independent reference: draw in the documented order, then pad-and-slice one image at a time
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 7, (37,), generator=g)
    dx = torch.randint(0, 7, (37,), generator=g)
    coin = torch.rand(37, generator=g) < 0.5
    for n in range(37):
        ref = torch.nn.functional.pad(x[n], (3, 3, 3, 3))[:, dy[n]:dy[n] + 9, dx[n]:dx[n] + 11]
        if coin[n]:
            ref = ref.flip(2)
        assert torch.equal(out[n], ref), n
    assert out.dtype == torch.uint8
    # every shift and both flips occur: the draws really vary
    assert len(set(dy.tolist())) == 7 and coin.any() and not coin.all()


def test_augment_without_crop_or_flip_is_identity():
    x = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    assert torch.equal(images.augment(x, 0, False, torch.Generator()), x)


def test_channel_stats_float64_reference():
    x = torch.randint(0, 256, (5000, 3, 4, 4), dtype=torch.uint8)
    mean, std = images.channel_stats(x)
    v = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert np.allclose(mean, v.mean(1).numpy(), rtol=0, atol=1e-12)
    assert np.allclose(std, v.std(1, unbiased=False).numpy(), rtol=0, atol=1e-9)


def test_image_tensors_normalises_and_batches():
    x = torch.randint(0, 256, (10, 2, 4, 4), dtype=torch.uint8)
    y = torch.arange(10)
    ds = images.ImageTensors(x, y, (0.5, 0.25), (0.2, 0.1))
    img, label = ds[3]
    ref = (x[3].double() / 255 - torch.tensor([0.5, 0.25]).double().view(2, 1, 1)) \
        / torch.tensor([0.2, 0.1]).double().view(2, 1, 1)
    assert label == 3 and torch.allclose(img.double(), ref, atol=1e-5)
    xb, yb = ds.batch([3, 7])
    assert torch.equal(xb[0], img) and yb.tolist() == [3, 7]


@pytest.mark.parametrize("kw, match", [
    (dict(std=(0.0, 1.0)), "std"),
    (dict(crop_padding=4), "crop_padding = 4"),
    (dict(crop_padding=-1), "crop_padding = -1"),
])
def test_image_tensors_bad_arguments(kw, match):
    args = dict(mean=(0.5, 0.5), std=(0.2, 0.2))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        images.ImageTensors(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.zeros(2), **args)
    with pytest.raises(ValueError, match="uint8"):
        images.ImageTensors(torch.zeros(2, 2, 4, 4), torch.zeros(2), (0.5,), (0.2,))


def make_folder(root, split="train", classes=("cat", "dog"), n=3, size=(6, 5), mode="RGB",
                ext=".png", seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for c in classes:
        os.makedirs(os.path.join(root, split, c), exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            path = os.path.join(root, split, c, f"{i:03d}{ext}")
            Image.fromarray(a, mode).save(path, quality=95)
            arrays[f"{c}/{i:03d}{ext}"] = np.asarray(Image.open(path).convert(mode))
    return arrays


def test_image_folder_png_and_jpeg_decode_like_pil(tmp_path):
    root = str(tmp_path / "d")
    tr = make_folder(root, "train", ext=".png")
    te = make_folder(root, "val", ext=".jpg", n=2, seed=1)  # val/ is accepted for test/
    d = data_mod.datasets("folder", root, cache_dir=str(tmp_path / "cache"))
    assert d.input_shape == (3, 5, 6) and d.num_classes == 2 and len(d.train) == 6
    assert d.train.classes == ["cat", "dog"] and d.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for i, key in enumerate(sorted(tr)):
        assert np.array_equal(d.train.images[i].permute(1, 2, 0).numpy(), tr[key])
    for i, key in enumerate(sorted(te)):  # JPEG: both read with Pillow
        diff = d.test.images[i].permute(1, 2, 0).int().numpy() - te[key].astype(int)
        assert np.abs(diff).max() == 0
    mean, std = images.channel_stats(d.train.images)
    assert torch.allclose(d.train.mean, torch.tensor(mean, dtype=torch.float32))


def test_grayscale_folder_has_one_channel_and_mixed_folder_three(tmp_path):
    root = str(tmp_path / "g")
    make_folder(root, "train", mode="L")
    make_folder(root, "test", mode="L", n=1)
    d = data_mod.datasets("folder", root, cache_dir=None)
    assert d.input_shape == (1, 5, 6)
    root2 = str(tmp_path / "m")
    gray = make_folder(root2, "train", classes=("a",), mode="L")
    make_folder(root2, "train", classes=("b",), mode="RGB")
    make_folder(root2, "test", classes=("a", "b"), n=1)
    d = data_mod.datasets("folder", root2, cache_dir=None)
    assert d.input_shape == (3, 5, 6)
    img = d.train.images[0]  # a gray image, repeated into three equal channels
    assert torch.equal(img[0], img[1]) and np.array_equal(img[2].numpy(), gray["a/000.png"])


def test_cache_is_reused_then_refused_when_stale_or_corrupt(tmp_path, monkeypatch):
    root, cache = str(tmp_path / "d"), str(tmp_path / "cache")
    make_folder(root, "train")
    make_folder(root, "test", n=1)
    first = data_mod.datasets("folder", root, cache_dir=cache)
    files = sorted(os.listdir(cache))
    assert len(files) == 2 and all(f.endswith(".pt") for f in files)
    calls = []
    monkeypatch.setattr(images, "decode", lambda *a: calls.append(a))
    again = data_mod.datasets("folder", root, cache_dir=cache)  # from the cache: no decoding
    assert not calls and torch.equal(again.train.images, first.train.images)
    monkeypatch.undo()
    train_cache = os.path.join(cache, [f for f in files if "-train-" in f][0])
    make_folder(root, "train", classes=("cat",), n=4, seed=9)  # one more image: the key changes
    with pytest.raises(ValueError, match=f"image cache '{train_cache}' is stale.*delete it"):
        data_mod.datasets("folder", root, cache_dir=cache)
    with open(train_cache, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=f"image cache '{train_cache}' is corrupt"):
        data_mod.datasets("folder", root, cache_dir=cache)
    os.unlink(train_cache)  # what the message says to do
    assert len(data_mod.datasets("folder", root, cache_dir=cache).train) == 7


@pytest.mark.parametrize("case, match", [
    ("no_train", "has no train/ subfolder"),
    ("no_test", "has no test/ or val/ subfolder"),
    ("not_image", "'notes.txt', which is not an image"),
    ("sizes", "every image of a data folder must have the same size"),
    ("classes", "expected the same class subfolders"),
    ("empty_class", "holds no images"),
    ("missing", "is not a folder"),
    ("broken", "cannot be decoded"),
])
def test_bad_folders_are_named(tmp_path, case, match):
    root = str(tmp_path / "d")
    if case != "missing":
        os.makedirs(root)
    if case not in ("no_train", "missing"):
        make_folder(root, "train")
    if case not in ("no_test", "no_train", "missing"):
        make_folder(root, "test", n=1, classes=("cat", "dog") if case != "classes" else ("cat",))
    if case == "not_image":
        open(os.path.join(root, "train", "cat", "notes.txt"), "w").close()
    if case == "sizes":
        make_folder(root, "train", classes=("dog",), n=1, size=(7, 7), seed=4)
        os.replace(os.path.join(root, "train", "dog", "000.png"),
                   os.path.join(root, "train", "dog", "zzz.png"))
        make_folder(root, "train", classes=("dog",), n=1)
    if case == "empty_class":
        os.makedirs(os.path.join(root, "train", "emu"))
    if case == "broken":
        with open(os.path.join(root, "train", "cat", "000.png"), "wb") as f:
            f.write(b"not a png")
    with pytest.raises(ValueError, match=match):
        data_mod.datasets("folder", root, cache_dir=None)


def test_subset_is_seeded_and_checked(tmp_path):
    root = str(tmp_path / "d")
    make_folder(root, "train", n=10)
    make_folder(root, "test", n=5)
    a = data_mod.datasets("folder", root, cache_dir=None, subset=8)
    b = data_mod.datasets("folder", root, cache_dir=None, subset=8)
    assert len(a.train) == 8 and len(a.test) == 4 and torch.equal(a.train.images, b.train.images)
    with pytest.raises(ValueError, match="data.subset = 21 is not accepted"):
        data_mod.datasets("folder", root, cache_dir=None, subset=21)
    with pytest.raises(ValueError, match="only .* take a subset"):
        data_mod.datasets("digits", subset=3)


def write_mnist(folder, n, seed):
    """torchvision's MNIST raw files (IDX format, LeCun et al.): magic, sizes, then bytes."""
    raw = os.path.join(folder, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, count in (("train", n), ("t10k", n // 2)):
        x = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, count, dtype=np.uint8)
        with open(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, count, 28, 28) + x.tobytes())
        with open(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 2049, count) + y.tobytes())
        out[prefix] = (x, y)
    return out


def test_torchvision_mnist_files(tmp_path):
    ref = write_mnist(str(tmp_path), 20, 0)
    d = data_mod.datasets("mnist", str(tmp_path), augment=True, crop_padding=2, flip=False)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert np.array_equal(d.train.images[:, 0].numpy(), ref["train"][0])
    assert np.array_equal(d.test.labels.numpy(), ref["t10k"][1])
    assert d.train.crop_padding == 2 and not d.train.flip and not d.test.augments
    with pytest.raises(ValueError, match="was not found under data.dir"):
        data_mod.datasets("cifar10", str(tmp_path))


def test_torchvision_cifar10_files(tmp_path, monkeypatch):
    """torchvision's CIFAR-10 python batches (pickled dicts of 3072-byte rows, Krizhevsky 2009);
    torchvision checks their MD5 sums, which made-up files cannot pass, so that check is skipped."""
    import pickle
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rows = {}
    for n in names:
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 4).tolist()
        rows[n] = (x, y)
        with open(folder / n, "wb") as f:
            pickle.dump({"data": x, "labels": y}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    d = data_mod.datasets("cifar10", str(tmp_path), augment=True)
    assert d.input_shape == (3, 32, 32) and len(d.train) == 20 and len(d.test) == 4
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each 32 rows of 32
    assert np.array_equal(d.train.images[0].numpy(), rows["data_batch_1"][0][0].reshape(3, 32, 32))
    assert d.test.labels.tolist() == rows["test_batch"][1] and d.train.classes[3] == "c3"
    assert d.train.crop_padding == 4 and d.train.flip

"""The CIFAR-10 recipe runs end to end on a small subset of the real images (skipped without
them), with the data statistics it computes close to the published CIFAR-10 figures; the MNIST
recipe trains LeNet-5 from an image folder of 28x28 grayscale digits; `extends` recipes."""
import json
import os

import pytest

from hwq.train import recipe as recipes

from .helpers import ROOT, cifar10_dir, hwq_cmd, run
from .test_images import make_folder

# Per-channel mean of CIFAR-10's training images (as published with torchvision's examples and
# many papers: 0.4914, 0.4822, 0.4465); the JPEG copy and a 2,000-image subset stay within 0.01.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


def test_cifar10_recipe_smoke_on_real_subset(tmp_path):
    data = cifar10_dir()
    out = str(tmp_path / "out")
    p = run(hwq_cmd("recipes/cifar10.toml", "--data-dir", data, "--out", out,
                    "--schemes", "float,w4a4,w2a2", "--set", "data.subset=2000",
                    "--set", "train.epochs=1", "--set", "schemes.w4a4.epochs=1",
                    "--set", "schemes.w2a2.epochs=1"), timeout=900)  # w2a2 starts from w4a4
    results = json.load(open(os.path.join(out, "results.json")))
    assert set(results) == {"float", "w4a4", "w2a2"}
    assert results["w2a2"]["w_bits"] == "8/2x18/8" and results["w2a2"]["macs"] == 40_551_040
    assert "data loading took" in p.stdout
    from hwq.train import data as data_mod
    d = data_mod.datasets("cifar10", data, subset=2000)
    assert len(d.test) == 400
    for got, ref in zip(d.train.mean.tolist(), CIFAR10_MEAN):
        assert got == pytest.approx(ref, abs=0.01)


def test_mnist_recipe_trains_lenet5_from_a_grayscale_folder(tmp_path):
    data = str(tmp_path / "digits")
    classes = tuple(str(i) for i in range(10))
    make_folder(data, "train", classes=classes, n=6, size=(28, 28), mode="L")
    make_folder(data, "test", classes=classes, n=2, size=(28, 28), mode="L", seed=1)
    out = str(tmp_path / "out")
    run(hwq_cmd("recipes/mnist.toml", "--data-dir", data, "--out", out, "--schemes", "float,w4a4",
                "--set", "train.epochs=1", "--set", "schemes.w4a4.epochs=1",
                "--set", "data.batch_size=20", "--set", f"data.cache_dir={tmp_path / 'c'}",
                "--set", "data.augment=true"))
    results = json.load(open(os.path.join(out, "results.json")))
    assert set(results) == {"float", "w4a4"} and results["float"]["macs"] > 0


def test_extends_lays_keys_on_top_and_refuses_cycles(tmp_path):
    r = recipes.load(os.path.join(ROOT, "recipes", "cifar10_long.toml"))
    base = recipes.load(os.path.join(ROOT, "recipes", "cifar10.toml"))
    assert r["train"]["epochs"] == 200 and r["schemes"]["w4a4"]["epochs"] == 90
    assert r["schemes"]["w4a4"]["weights"] == base["schemes"]["w4a4"]["weights"]
    assert list(r["schemes"]) == list(base["schemes"]) and r["data"] == base["data"]
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n[schemes.float]\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ValueError, match="makes a cycle"):
        recipes.load(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(ValueError, match="extends = 'missing.toml', but .* does not exist"):
        recipes.load(str(tmp_path / "c.toml"))
    (tmp_path / "d.toml").write_text('extends = 3\n')
    with pytest.raises(ValueError, match="extends = 3 is not accepted"):
        recipes.load(str(tmp_path / "d.toml"))

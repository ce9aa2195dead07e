"""The model zoo: every shipped entry loads and records what it claims; with CIFAR-10 present,
every entry re-measures its recorded accuracy (to 0.05 points) and the binary / 2-bit entries give
the same accuracy through hwq.deploy; an entry written from a small run round-trips; bad names
and files are refused by name; `hwq eval` prints what hwq.zoo.evaluate measures."""
import functools
import os
import subprocess
import sys

import pytest
import torch

import hwq
from hwq import zoo
from hwq.train import recipe as recipes

from .helpers import cifar10_dir
from .test_images import make_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = zoo.names()
META_KEYS = {"name", "recipe", "scheme", "model", "input_shape", "num_classes", "classes", "mean",
             "std", "epochs", "train_s", "w_bits", "a_bits", "test_acc", "machine", "commit"}


def test_zoo_has_entries_and_stays_small():
    assert SHIPPED, "the zoo ships no entry"
    size = sum(os.path.getsize(zoo.path_of(n)) for n in SHIPPED)
    assert size < 40 * 2**20


def test_readme_spelling_hwq_zoo_load_works_after_import_hwq():
    """The README writes hwq.zoo.load(...) after a bare `import hwq`: a fresh interpreter, since
    this file's own `from hwq import zoo` would hide a missing attribute."""
    code = "import hwq; print(hwq.zoo.load is hwq.zoo.load, 'zoo' in hwq.__all__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.split() == ["True", "True"], r.stderr


@pytest.mark.parametrize("name", SHIPPED)
def test_entry_loads_with_its_record(name):
    meta = zoo.info(name)
    assert META_KEYS <= set(meta), META_KEYS - set(meta)
    assert meta["name"] == name and 10 <= meta["test_acc"] <= 100
    model = zoo.load(name)
    assert not model.training
    out = model(torch.randn(2, *meta["input_shape"]))
    assert out.shape == (2, meta["num_classes"]) and torch.isfinite(out).all()
    quantized = [m for m in model.modules() if isinstance(m, hwq.nn.QuantLayer)]
    assert bool(quantized) == (meta["scheme"] != "float")


@functools.lru_cache(maxsize=None)
def _qat_accuracy(name: str, data_dir: str) -> float:
    """The QAT model's test accuracy, measured once per entry (both tests below need it, and a
    CNV pass over the 10,000 test images costs about a minute on one core)."""
    return zoo.evaluate(name, data_dir)["acc"]


@pytest.mark.parametrize("name", SHIPPED)
def test_entry_reaches_its_recorded_accuracy(name):
    data_dir = cifar10_dir() if name.startswith("cifar10/") else pytest.skip(name)
    assert _qat_accuracy(name, data_dir) == pytest.approx(zoo.info(name)["test_acc"], abs=0.05)


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith(("-w1a1", "-w2a2"))])
def test_deployed_entry_has_the_qat_accuracy(name):
    data_dir = cifar10_dir()
    qat = _qat_accuracy(name, data_dir)
    deployed = zoo.evaluate(name, data_dir, deploy=True)["acc"]
    assert deployed == pytest.approx(qat, abs=0.05)


def test_bad_names_and_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="zoo entry 'cifar10/nope' does not exist: expected one of"):
        zoo.load("cifar10/nope")
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\0" * 50)
    with pytest.raises(ValueError, match="cannot be read"):
        zoo.read(str(bad))
    torch.save({"format": "something else"}, str(bad))
    with pytest.raises(ValueError, match="is not a hwq.zoo file"):
        zoo.read(str(bad))


def small_run(tmp_path, subset=0):
    data = str(tmp_path / "img")
    make_folder(data, "train", classes=("a", "b", "c"), n=8, size=(8, 8))
    make_folder(data, "test", classes=("a", "b", "c"), n=3, size=(8, 8), seed=1)
    recipe = recipes.load(os.path.join(ROOT, "recipes", "cifar10.toml"), [
        ("data.dir", data), ("data.batch_size", 8), ("data.cache_dir", str(tmp_path / "cache")),
        ("data.subset", subset), ("train.epochs", 1), ("train.progress", False),
        ("schemes.w2a2.epochs", 1), ("schemes.w2a2.init", "float"),  # not from w4a4: one run less
        ("report.stats_batches", 1)])
    out = str(tmp_path / "run")
    hwq.train.run(recipe, out, schemes=["float", "w2a2"], log=lambda s: None)
    return data, out


def test_add_round_trips_a_run(tmp_path):
    data, out = small_run(tmp_path)
    zdir = str(tmp_path / "zoo")
    meta = zoo.add(out, "w2a2", "tiny/resnet20-w2a2", data, zoo_dir=zdir, note="test")
    assert zoo.names(zdir) == ["tiny/resnet20-w2a2"]
    again = zoo.info("tiny/resnet20-w2a2", zdir)
    assert again["test_acc"] == meta["test_acc"] and again["note"] == "test"
    assert again["input_shape"] == [3, 8, 8] and again["num_classes"] == 3
    assert again["classes"] == ["a", "b", "c"] and again["w_bits"] == "8/2x18/8"
    # the loaded model computes what the run's own checkpoint computes
    from hwq.train.run import build_model
    from hwq.train import checkpoint, data as data_mod
    ref = build_model(again["recipe"], "w2a2", data_mod.Data(None, None, (3, 8, 8), 3))
    ref.load_state_dict(checkpoint.load(os.path.join(out, "w2a2", "last.pt"))["model"])
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(zoo.load("tiny/resnet20-w2a2", zdir)(x), ref.eval()(x))
    p = subprocess.run([sys.executable, "-m", "hwq", "eval", zoo.path_of("tiny/resnet20-w2a2", zdir),
                        "--data-dir", data], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert f"test accuracy {meta['test_acc']:.2f}%" in p.stdout


def test_add_refuses_a_subset_run(tmp_path):
    data, out = small_run(tmp_path, subset=12)
    with pytest.raises(ValueError, match="data.subset = 12: a zoo entry must be trained on the "
                                         "whole training split"):
        zoo.add(out, "float", "tiny/x", data, zoo_dir=str(tmp_path / "zoo"))

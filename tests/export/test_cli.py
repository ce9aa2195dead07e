"""``hwq export``: a hwq train run folder, a checkpoint file and a zoo name (through a plugged-in
resolver); bad sources exit 2 with one line naming what was wrong."""
import json
import os
import subprocess
import sys

import pytest
import torch

import hwq
from hwq.cli import main
from hwq.export import source

from .helpers import calibrated, metadata, nodes, require_runtimes

require_runtimes()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """What hwq train leaves for the digits recipe's w4a4 and w2a2 schemes (models calibrated on
    noise instead of trained: the file layout and the rebuilding are under test here)."""
    from hwq.train import data as data_mod
    from hwq.train import recipe as recipes
    from hwq.train.run import build_model
    out = tmp_path_factory.mktemp("run")
    recipe = recipes.load(recipes.find("digits"), [])
    (out / "recipe.json").write_text(json.dumps(recipe))
    for scheme in ("w4a4", "w2a2"):
        torch.manual_seed(0)
        model = build_model(recipe, scheme, data_mod.Data(None, None, (1, 8, 8), 10))
        model.train()
        with torch.no_grad():
            model(torch.randn(16, 1, 8, 8))
        (out / scheme).mkdir()
        torch.save({"model": model.eval().state_dict()}, out / scheme / "last.pt")
    return out


def test_run_folder(run_folder, tmp_path, capsys):
    out = tmp_path / "w2a2.onnx"
    assert main(["export", str(run_folder), "--scheme", "w2a2", "-o", str(out),
                 "--batch", "4"]) == 0
    printed = capsys.readouterr().out
    assert "scheme 'w2a2'" in printed and "first 4 test images of digits" in printed
    assert "conv2.weight_quant" in printed and "Quant" in printed
    plan = json.loads(metadata(out)["hwq.plan"])["layers"]
    assert plan["conv1"] == {"weights": "fixed:8", "acts": "fixed:8"}
    assert plan["conv2"] == {"weights": "lsq:2", "acts": "lsq:2"}
    assert nodes(out)["Quant"] == 8


def test_run_folder_needs_a_scheme_when_several(run_folder, tmp_path, capsys):
    assert main(["export", str(run_folder), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 trained schemes" in err and "--scheme" in err
    assert main(["export", str(run_folder), "--scheme", "w8a8", "-o",
                 str(tmp_path / "m.onnx")]) == 2
    assert "--scheme 'w8a8' is not accepted" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_checkpoint_file(tmp_path, capsys):
    model = calibrated("lenet5", "ternary", "pact:4")
    ckpt = tmp_path / "lenet.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "lenet.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--format", "qdq", "--model", "lenet5",
                 "--weights", "ternary", "--acts", "pact:4", "--input-size", "1,1,28,28",
                 "--dynamic-batch"]) == 0
    assert "exact values" in capsys.readouterr().out
    assert json.loads(metadata(out)["hwq.exact_weights"]) == ["conv1", "conv2", "fc1", "fc2",
                                                               "fc3"]
    # Quantizers other than those it was trained with: the checkpoint does not fit.
    assert main(["export", str(ckpt), "-o", str(out), "--model", "lenet5", "--weights",
                 "ternary", "--input-size", "1,1,28,28"]) == 2
    assert "does not fit the model" in capsys.readouterr().err


def test_zoo_resolver_and_unknown_names(tmp_path, capsys):
    def zoo(name):
        if name != "digits/tiny-w4a4":
            raise ValueError("expected one of ['digits/tiny-w4a4']")
        return calibrated("digits_cnn", "fixed:4", "fixed:4"), torch.randn(1, 1, 8, 8)

    source.set_zoo_resolver(zoo)
    try:
        out = tmp_path / "z.onnx"
        assert main(["export", "digits/tiny-w4a4", "-o", str(out), "--no-verify"]) == 0
        assert "zoo entry 'digits/tiny-w4a4'" in capsys.readouterr().out
        assert main(["export", "digits/none", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "neither a checkpoint file nor a run folder" in err and "tiny-w4a4" in err
    finally:
        source.set_zoo_resolver(None)


def test_binary_activation_to_qdq_exits_2(tmp_path):
    model = calibrated("digits_cnn", "binary", "binary", act="hardtanh")
    ckpt = tmp_path / "bnn.pt"
    torch.save(model.state_dict(), ckpt)
    r = subprocess.run([sys.executable, "-m", "hwq", "export", str(ckpt), "-o",
                        str(tmp_path / "b.onnx"), "--format", "qdq", "--model", "digits_cnn",
                        "--weights", "binary", "--acts", "binary", "--act", "hardtanh",
                        "--input-size", "1,1,8,8"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("hwq export: error: layer 'conv1' (conv1.act_quant)")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "b.onnx").exists()

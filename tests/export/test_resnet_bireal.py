"""Export of ResNet-20 with Bi-Real Net's shortcut around every conv (hwq.models.resnet_cifar,
shortcut="every"), as tests/export/test_qonnx.py and test_qdq.py export He et al.'s ResNet-20:
QONNX (W1A1 with 8-bit first and last layers, run by qonnx's executor) and ONNX QDQ (run by
onnxruntime) against the QAT model; the file holds one Add per conv of the blocks (18), twice the
pair structure's 9."""
import torch

import hwq

from .helpers import assert_matches, calibrated, nodes, require_runtimes

require_runtimes()

from hwq.export.runtime import run_onnxruntime, run_qonnx  # noqa: E402

EDGE_8BIT = {"conv1": dict(weights="fixed:8", acts="fixed:8"),
             "fc": dict(weights="fixed:8", acts="fixed:8")}


def _calibrated(weights, acts, act, layers=None):
    return calibrated("resnet20", weights, acts, act, layers=layers, shortcut="every")


def test_qonnx_w1a1(tmp_path):
    model = _calibrated({"name": "binary", "scale": "channel"}, "binary", "hardtanh", EDGE_8BIT)
    g = torch.Generator().manual_seed(3)
    path = tmp_path / "bireal-w1a1.onnx"
    hwq.export(model, torch.randn(4, 3, 32, 32, generator=g), path, "qonnx", verify=False)
    x = torch.randn(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        assert_matches(run_qonnx(path, x.numpy()), model(x).numpy(), close_fraction=0.75)
    got = nodes(path)
    assert got["Add"] == 18  # a shortcut around each of the 18 block convs
    # 18 binary convs: weights and inputs bipolar; stem and fc: weights and inputs 8-bit
    assert got["BipolarQuant"] == 2 * 18 and got["Quant"] == 2 * 2


def test_qdq_w4a4(tmp_path):
    model = _calibrated("fixed:4", "pact:4", "relu")
    g = torch.Generator().manual_seed(5)
    path = tmp_path / "bireal-w4a4.onnx"
    hwq.export(model, torch.randn(2, 3, 32, 32, generator=g), path, "qdq", dynamic_batch=True)
    x = torch.randn(16, 3, 32, 32, generator=g)
    with torch.no_grad():
        assert_matches(run_onnxruntime(path, x.numpy()), model(x).numpy(), close_fraction=0.9)
    assert nodes(path)["Add"] == 18


def test_bare_checkpoint_needs_its_structure(tmp_path, capsys):
    """A Bi-Real state_dict has the pair ResNet-20's parameter names and shapes; its blocks' marks
    ('_extra_state') make `hwq export CKPT --model resnet20` refuse it, naming --shortcut, rather
    than export the pair network with its weights. With --shortcut every it exports the model."""
    from hwq.cli import main
    model = _calibrated("fixed:4", "pact:4", "relu")
    ckpt = tmp_path / "bireal.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    args = ["export", str(ckpt), "--format", "qdq", "--model", "resnet20", "--weights",
            "fixed:4", "--acts", "pact:4", "--input-size", "2,3,32,32"]
    assert main(args + ["-o", str(tmp_path / "pair.onnx")]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "--shortcut every" in err
    assert not (tmp_path / "pair.onnx").exists()
    assert main(args + ["-o", str(tmp_path / "every.onnx"), "--shortcut", "every"]) == 0
    assert nodes(tmp_path / "every.onnx")["Add"] == 18
    # and the other way: a pair checkpoint does not load as Bi-Real
    pair = hwq.models.build("resnet20")
    torch.save(pair.state_dict(), tmp_path / "pair.pt")
    assert main(["export", str(tmp_path / "pair.pt"), "-o", str(tmp_path / "x.onnx"), "--model",
                 "resnet20", "--shortcut", "every", "--input-size", "1,3,32,32"]) == 2
    assert "Missing key" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "pair.pt"), "-o", str(tmp_path / "x.onnx"), "--model",
                 "cnv", "--shortcut", "every", "--input-size", "1,3,32,32"]) == 2
    assert "--shortcut 'every' is not accepted for model 'cnv'" in capsys.readouterr().err

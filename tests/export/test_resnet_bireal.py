"""Export of ResNet-20 with Bi-Real Net's shortcut around every conv (hwq.models.resnet_cifar,
shortcut="every"), as tests/export/test_qonnx.py and test_qdq.py export He et al.'s ResNet-20:
QONNX (W1A1 with 8-bit first and last layers, run by qonnx's executor) and ONNX QDQ (run by
onnxruntime) against the QAT model; the file holds one Add per conv of the blocks (18), twice the
pair structure's 9."""
import warnings

import torch

import hwq

from .helpers import assert_matches, nodes, require_runtimes

require_runtimes()

from hwq.export.runtime import run_onnxruntime, run_qonnx  # noqa: E402

EDGE_8BIT = {"conv1": dict(weights="fixed:8", acts="fixed:8"),
             "fc": dict(weights="fixed:8", acts="fixed:8")}


def _calibrated(weights, acts, act, layers=None, seed=0):
    """As helpers.calibrated, with shortcut="every" (a few training-mode batches of N(0, 1))."""
    torch.manual_seed(seed)
    model = hwq.models.build("resnet20", act=act, shortcut="every")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hwq.quantize(model, weights=weights, acts=acts, layers=layers)
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32, generator=g))
    return model.eval()


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

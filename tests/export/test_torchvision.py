"""torchvision ResNet-18 and MobileNetV2 at W4A4 (LSQ), both formats: residual adds, depthwise
convolutions, ReLU6 (Clip), adaptive average pooling and flatten as standard ONNX ops, and the
runtimes against the QAT model on inputs other than the example. 32 x 32 inputs keep them fast."""
import pytest
import torch

import hwq

from .helpers import assert_matches, calibrated, nodes, require_runtimes

require_runtimes()

from hwq.export.runtime import run_onnxruntime, run_qonnx  # noqa: E402


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("fmt", ["qdq", "qonnx"])
def test_w4a4(tmp_path, name, fmt):
    model = calibrated(name, "lsq:4", "lsq:4", batches=2)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 32, 32, generator=g)
    path = tmp_path / f"{name}.onnx"
    report = hwq.export(model, x, path, fmt, verify=False, dynamic_batch=fmt == "qdq")
    layers = [m for m in model.modules() if isinstance(m, hwq.nn.QuantLayer)]
    assert len(report.quantizers) == 2 * len(layers)
    x2 = torch.randn(2, 3, 32, 32, generator=g)
    run = run_onnxruntime if fmt == "qdq" else run_qonnx
    with torch.no_grad():
        assert_matches(run(path, x2.numpy()), model(x2).numpy(), close_fraction=0.5)
    got = nodes(path)
    if fmt == "qonnx":
        assert got["Quant"] == 2 * len(layers)
    else:
        assert got["QuantizeLinear"] == len(layers)
    if name == "resnet18":
        assert got["Add"] == 8  # one residual add per basic block
    else:
        assert got["Clip"] == 35  # ReLU6

"""The qonnx tools on exported QONNX files: cleanup keeps what the file computes, and the
inference-cost analysis (qonnx.util.inference_cost, the MAC / BOP / memory counter FINN's users
run) counts the MACs, bit operations and weights hwq.summary counts."""
import pytest
import torch

import hwq

from .helpers import calibrated, require_runtimes

require_runtimes()

from hwq.export.runtime import run_qonnx  # noqa: E402


@pytest.mark.parametrize("name,weights,acts,act", [
    ("digits_cnn", "fixed:4", "fixed:4", "relu"),
    ("digits_cnn", "lsq:2", "pact:3", "relu"),
    ("cnv", "binary", "binary", "hardtanh"),
    ("cnv", "fixed:2", "fixed:2", "hardtanh"),
    ("resnet20", "ternary", "lsq:4", "relu"),
])
def test_cleanup_and_inference_cost_agree_with_summary(tmp_path, name, weights, acts, act):
    from qonnx.util.cleanup import cleanup
    from qonnx.util.inference_cost import inference_cost
    model = calibrated(name, weights, acts, act=act)
    shape = {"digits_cnn": (1, 1, 8, 8), "cnv": (1, 3, 32, 32), "resnet20": (1, 3, 32, 32)}[name]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    raw, clean = tmp_path / "raw.onnx", tmp_path / "clean.onnx"
    hwq.export(model, x, raw, "qonnx")
    cleanup(str(raw), out_file=str(clean))
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(run_qonnx(clean, x.numpy())), model(x),
                                   rtol=0, atol=1e-5)

    cost = inference_cost(str(clean), discount_sparsity=False)["total_cost"]
    s = hwq.summary(model, x, print_fn=None)
    biases = sum(m.bias.numel() for m in model.modules()
                 if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None)
    assert cost["total_macs"] == s.macs
    assert cost["total_bops"] == s.bops  # MACs * w_bits * a_bits per layer
    assert cost["total_mem_w_elems"] == s.params - biases  # biases stay float in both
    assert cost["total_mem_w_bits"] == s.weight_bits - 32 * biases

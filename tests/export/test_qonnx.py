"""QONNX export: node parameters against hand-worked scales, and qonnx's executor
(qonnx.core.onnx_exec, FINN's reference) against the QAT model in eval mode on digits images."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import hwq
from hwq.nn import QuantConv2d

from .helpers import assert_matches, calibrated, metadata, nodes, require_runtimes

require_runtimes()

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from hwq.export.runtime import run_qonnx  # noqa: E402


def _inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_fixed_point_scales_worked_by_hand(tmp_path):
    # Activation range 3.0 in a signed 4-bit code: the integer part needs 2 bits, 3 magnitude bits
    # in all, so the step is 2^(2 - 3) = 0.5. Weights with max|W| = 0.9: 0 integer bits, step
    # 2^(0 - 3) = 0.125 (Stripes' Q-format choice, hwq.quant.fixed).
    conv = QuantConv2d(1, 2, 3, bias=False, weights="fixed:4", acts="fixed:4")
    with torch.no_grad():
        conv.weight.copy_(torch.linspace(-0.9, 0.6, 18).reshape(2, 1, 3, 3))
    conv.act_quant.running_max.fill_(3.0)
    conv.act_quant.signed.fill_(1)
    model = nn.Sequential(conv).eval()
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 2
    path = tmp_path / "m.onnx"
    hwq.export(model, x, path, "qonnx")

    m = onnx.load(path)
    inits = _inits(m)
    quants = [n for n in m.graph.node if n.op_type == "Quant"]
    assert len(quants) == 2 and all(n.domain == "qonnx.custom_op.general" for n in quants)
    act = next(n for n in quants if n.input[0] == m.graph.input[0].name)
    weight = next(n for n in quants if n is not act)
    for node, scale in ((act, 0.5), (weight, 0.125)):
        assert float(inits[node.input[1]]) == scale
        assert float(inits[node.input[2]]) == 0.0  # zero point
        assert float(inits[node.input[3]]) == 4.0  # bit width
        assert _attrs(node) == {"signed": 1, "narrow": 0, "rounding_mode": b"ROUND"} or \
            _attrs(node) == {"signed": 1, "narrow": 0, "rounding_mode": "ROUND"}
    # The weight node quantizes the latent float weights (what FINN folds), not a copy.
    np.testing.assert_array_equal(inits[weight.input[0]], conv.weight.detach().numpy())
    # By hand: codes clamp(round(x / 0.5), -8, 7), weights round(W / 0.125) in [-8, 7].
    xq = (x / 0.5).round().clamp(-8, 7) * 0.5
    wq = (conv.weight.detach() / 0.125).round().clamp(-8, 7) * 0.125
    want = torch.nn.functional.conv2d(xq.double(), wq.double()).numpy()
    np.testing.assert_allclose(run_qonnx(path, x.numpy()), want, rtol=1e-6, atol=1e-6)


SCHEMES = {
    # name: (weights, acts, act, layers, expected node counts, exact-weight layers)
    "w4a4_fixed": ("fixed:4", "fixed:4", "relu", None, {"Quant": 8}, []),
    "w3a3_lsq_per_channel": ({"name": "lsq", "bits": 3, "per_channel": True}, "lsq:3", "relu",
                             None, {"Quant": 8}, []),
    "w1a1_xnor": ({"name": "binary", "scale": "channel"}, "binary", "hardtanh", None,
                  {"BipolarQuant": 8}, []),
    "ternary_pact4": ("ternary", "pact:4", "relu", None, {"Quant": 8},
                      ["conv1", "conv2", "conv3", "fc"]),
    "pow2_w4a8": ("pow2:4", "fixed:8", "relu", None, {"Quant": 4},
                  ["conv1", "conv2", "conv3", "fc"]),
    "mixed_w2a2_ends8": ("lsq:2", "lsq:2", "relu",
                         {"conv1": {"weights": "fixed:8", "acts": "fixed:8"},
                          "fc": {"weights": "fixed:8", "acts": "fixed:8"}}, {"Quant": 8}, []),
}


@pytest.fixture(scope="module", params=sorted(SCHEMES))
def exported(request, tmp_path_factory, digits_test):
    weights, acts, act, layers, counts, exact = SCHEMES[request.param]
    model = calibrated("digits_cnn", weights, acts, act=act, layers=layers)
    path = tmp_path_factory.mktemp("qonnx") / f"{request.param}.onnx"
    xs, _ = digits_test
    report = hwq.export(model, xs[:64], path, "qonnx")
    return model, path, report, counts, exact


def test_qonnx_executor_matches_the_model_on_other_images(exported, digits_test):
    model, path, report, _, _ = exported
    xs, _ = digits_test
    x = xs[64:128]  # the file keeps the example's batch of 64; these images were not used
    with torch.no_grad():
        want = model(x).numpy()
    assert_matches(run_qonnx(path, x.numpy()), want)
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-5


def test_nodes_metadata_and_checker(exported):
    model, path, report, counts, exact = exported
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    got = nodes(path)
    for op_type, n in counts.items():
        assert got.get(op_type, 0) == n, (op_type, got)
    assert {"Conv", "BatchNormalization", "MaxPool", "Gemm"} <= set(got)
    meta = metadata(path)
    assert meta["hwq.format"] == "qonnx"
    assert json.loads(meta["hwq.exact_weights"]) == exact == report.exact_weights
    assert hwq.Plan.from_dict(json.loads(meta["hwq.plan"])) == hwq.Plan.from_model(model)
    prof = hwq.profile(model, torch.zeros(1, 1, 8, 8))
    bits = [(l["name"], l["w_bits"], l["a_bits"]) for l in json.loads(meta["hwq.profile_bits"])]
    assert bits == [(l.name, l.w_bits, l.a_bits) for l in prof.layers]
    assert {q["name"] for q in json.loads(meta["hwq.quantizers"])} == \
        {f"{n}.{r}" for n in ("conv1", "conv2", "conv3", "fc")
         for r in ("weight_quant", "act_quant")}


def test_exact_weights_are_the_quantized_values(exported):
    model, path, report, _, exact = exported
    if not exact:
        pytest.skip("no exact-value weights in this scheme")
    m = onnx.load(path)
    inits = _inits(m)
    by_output = {o: n for n in m.graph.node for o in n.output}
    convs = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    layers = [model.conv1, model.conv2, model.conv3, model.fc]
    for node, layer in zip(convs, layers):
        name = node.input[1]
        if name in by_output:  # the Quant annotation (ternary) in front of the initializer
            quant = by_output[name]
            assert quant.op_type == "Quant" and _attrs(quant)["narrow"] == 1
            name = quant.input[0]
        values = inits[name]
        with torch.no_grad():
            np.testing.assert_array_equal(values, layer.quantized_weight().numpy())
        nonzero = np.abs(values[values != 0]).astype(np.float64)
        if layer.weight_quant.config.kind == "pow2":  # every value 0 or +/- a power of two
            assert np.all(np.log2(nonzero) == np.round(np.log2(nonzero)))
        else:  # ternary: one magnitude per tensor
            assert len(np.unique(nonzero)) == 1


def test_resnet20_cnv_lenet(tmp_path):
    """Residual adds, zero-padded shortcuts, global average pooling, BatchNorm1d, Hardtanh."""
    cases = [("resnet20", "lsq:4", "lsq:4", "relu"), ("cnv", "binary", "binary", "hardtanh"),
             ("cnv", "fixed:2", "fixed:2", "hardtanh"), ("lenet5", "ternary", "fixed:4", "relu")]
    for name, w, a, act in cases:
        model = calibrated(name, w, a, act=act)
        shape = {"resnet20": (3, 32, 32), "cnv": (3, 32, 32), "lenet5": (1, 28, 28)}[name]
        g = torch.Generator().manual_seed(3)
        x = torch.randn((4,) + shape, generator=g)
        path = tmp_path / f"{name}-{w}.onnx"
        hwq.export(model, x, path, "qonnx", verify=False)
        x2 = torch.randn((4,) + shape, generator=g)
        with torch.no_grad():
            assert_matches(run_qonnx(path, x2.numpy()), model(x2).numpy(), close_fraction=0.75)
        got = nodes(path)
        if name == "resnet20":
            assert got["Add"] == 9 and got["Quant"] == 40  # 19 convs + fc, weights and inputs
        if name == "cnv" and w == "binary":
            assert got["BipolarQuant"] == 2 * 9 and "Quant" not in got

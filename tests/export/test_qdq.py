"""ONNX QDQ export: the QCDQ pattern worked by hand, and onnxruntime against the QAT model in eval
mode on digits images, for the uniform, binary-weight, ternary and pow2 schemes."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import hwq
from hwq.nn import QuantAct, QuantConv2d

from .helpers import assert_matches, calibrated, metadata, nodes, require_runtimes

require_runtimes()

import onnx  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402

from hwq.export.runtime import run_onnxruntime  # noqa: E402


def _producer(m, name):
    return next(n for n in m.graph.node if name in n.output)


def _const(m, name):
    for i in m.graph.initializer:
        if i.name == name:
            return numpy_helper.to_array(i), i.data_type
    node = _producer(m, name)
    assert node.op_type == "Constant"
    t = node.attribute[0].t
    return numpy_helper.to_array(t), t.data_type


@pytest.mark.parametrize("bits,int4,qtype,clip", [
    (3, True, TensorProto.UINT8, (0, 7)),     # below 8 bits: uint8 and a Clip on the codes
    (4, True, TensorProto.UINT4, None),       # exactly 4: uint4, no Clip
    (4, False, TensorProto.UINT8, (0, 15)),   # int4=False: uint8 and a Clip
    (8, True, TensorProto.UINT8, None),
    (10, True, TensorProto.UINT16, (0, 1023)),  # above 8: uint16, Clip on int32 (onnxruntime)
])
def test_qcdq_pattern_by_hand(tmp_path, bits, int4, qtype, clip):
    # PACT with alpha = 3: step alpha / (2^b - 1); codes clamp(round(x / step), 0, 2^b - 1).
    act = QuantAct({"name": "pact", "bits": bits, "alpha_init": 3.0})
    model = nn.Sequential(act, nn.Flatten()).eval()
    x = torch.linspace(-1, 4, 2 * 50).reshape(2, 50)
    path = tmp_path / "a.onnx"
    hwq.export(model, x, path, "qdq", int4=int4)
    m = onnx.load(path)
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    scale, _ = _const(m, q.input[1])
    assert float(scale) == np.float32(3.0) / np.float32(2 ** bits - 1)
    assert {a.name: a.i for a in q.attribute}["output_dtype"] == qtype
    clips = [n for n in m.graph.node if n.op_type == "Clip"]
    if clip is None:
        assert not clips
    else:
        (c,) = clips
        lo, lo_type = _const(m, c.input[1])
        hi, hi_type = _const(m, c.input[2])
        assert (int(lo), int(hi)) == clip
        assert lo_type == hi_type == (TensorProto.INT32 if bits > 8 else qtype)
    step = torch.tensor(3.0) / (2 ** bits - 1)  # float32, as the file holds it
    want = (torch.clamp(torch.round(x / step), 0, 2 ** bits - 1) * step).numpy()
    np.testing.assert_array_equal(run_onnxruntime(path, x.numpy()), want)


def test_weight_codes_and_per_channel_scales(tmp_path):
    conv = QuantConv2d(2, 3, 3, bias=True, weights={"name": "lsq", "bits": 3, "per_channel": True},
                       acts="fixed:8")
    model = nn.Sequential(conv)
    model(torch.randn(4, 2, 6, 6))  # initialises the learned steps
    model.eval()
    path = tmp_path / "w.onnx"
    hwq.export(model, torch.randn(2, 2, 6, 6), path, "qdq", int4=False)
    m = onnx.load(path)
    conv_node = next(n for n in m.graph.node if n.op_type == "Conv")
    dq = _producer(m, conv_node.input[1])
    assert dq.op_type == "DequantizeLinear" and {a.name: a.i for a in dq.attribute}["axis"] == 0
    codes, ctype = _const(m, dq.input[0])
    scale, _ = _const(m, dq.input[1])
    assert ctype == TensorProto.INT8 and codes.min() >= -4 and codes.max() <= 3
    with torch.no_grad():
        want_codes, want_scale = conv.weight_quant.quantize_int(conv.weight)
    np.testing.assert_array_equal(codes, want_codes.numpy())
    np.testing.assert_array_equal(scale, want_scale.reshape(-1).numpy())
    assert "conv.weight" not in {i.name for i in m.graph.initializer}  # no latent float weight


SCHEMES = {
    # name: (weights, acts, act, expected node types, exact-weight layers)
    "w4a4_fixed": ("fixed:4", "fixed:4", "relu", {"QuantizeLinear": 4, "DequantizeLinear": 8}, []),
    "w3a3_lsq": ("lsq:3", "lsq:3", "relu", {"Clip": 4}, []),
    "w8a8_lsq": ("lsq:8", "lsq:8", "relu", {"QuantizeLinear": 4}, []),
    "w1a2_binary_weights": ({"name": "binary", "scale": "channel"}, "fixed:2", "hardtanh",
                            {"Clip": 4 + 3}, []),  # 3 Hardtanh are Clips too
    "ternary_pact4": ("ternary", "pact:4", "relu", {"DequantizeLinear": 8},
                      ["conv1", "conv2", "conv3", "fc"]),
    "pow2_w4a8": ("pow2:4", "fixed:8", "relu", {"DequantizeLinear": 8},
                  ["conv1", "conv2", "conv3", "fc"]),
}


@pytest.fixture(scope="module", params=sorted(SCHEMES))
def exported(request, tmp_path_factory, digits_test):
    weights, acts, act, counts, exact = SCHEMES[request.param]
    model = calibrated("digits_cnn", weights, acts, act=act)
    path = tmp_path_factory.mktemp("qdq") / f"{request.param}.onnx"
    xs, _ = digits_test
    report = hwq.export(model, xs[:8], path, "qdq", dynamic_batch=True)
    return model, path, report, counts, exact


def test_onnxruntime_matches_the_model_on_the_test_images(exported, digits_test):
    model, path, report, _, _ = exported
    xs, _ = digits_test
    with torch.no_grad():
        want = model(xs).numpy()
    assert_matches(run_onnxruntime(path, xs.numpy()), want)  # all 450, any batch size


def test_nodes_and_metadata(exported):
    model, path, report, counts, exact = exported
    onnx.checker.check_model(onnx.load(path), full_check=True)
    got = nodes(path)
    for op_type, n in counts.items():
        assert got.get(op_type, 0) == n, (op_type, got)
    assert not {"Quant", "BipolarQuant"} & set(got)
    meta = metadata(path)
    assert meta["hwq.format"] == "qdq"
    assert json.loads(meta["hwq.exact_weights"]) == exact
    assert meta["hwq.verified"].startswith("verified with onnxruntime")
    # Weight codes lie on the quantizer's grid: DequantizeLinear's inputs are integer initializers.
    m = onnx.load(path)
    inits = {i.name: i.data_type for i in m.graph.initializer}
    for dq in (n for n in m.graph.node if n.op_type == "DequantizeLinear"):
        if dq.input[0] in inits:
            assert inits[dq.input[0]] in (TensorProto.INT4, TensorProto.INT8, TensorProto.INT16)


def test_resnet20_lenet(tmp_path):
    for name, w, a, shape in [("resnet20", "fixed:4", "pact:4", (3, 32, 32)),
                              ("lenet5", "lsq:4", "lsq:4", (1, 28, 28))]:
        model = calibrated(name, w, a)
        g = torch.Generator().manual_seed(5)
        path = tmp_path / f"{name}.onnx"
        hwq.export(model, torch.randn((2,) + shape, generator=g), path, "qdq", dynamic_batch=True)
        x = torch.randn((16,) + shape, generator=g)
        with torch.no_grad():
            assert_matches(run_onnxruntime(path, x.numpy()), model(x).numpy(),
                           close_fraction=0.9)

"""hwq.deploy's fp32-sum layers (exact integer sums from oneDNN's float32 conv on the codes) against
an independent computation: float64 conv of the QAT quantizers' integer codes, then the epilogue's
float32 arithmetic written out; and torch.ops.hwq.channel_affine_, the epilogue they run."""
import random

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels
from hwq.deploy import Fp32SumConv2d, Fp32SumLinear
from hwq.kernels import int8

from .helpers import calibrate

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION or not torch.backends.mkldnn.is_available(),
                                reason="hwq._C is not built or torch has no oneDNN")


def _force_fp32(monkeypatch):
    """Deploy multi-bit layers on the fp32-sum path on every CPU: no int8, no bit-serial."""
    monkeypatch.setattr(int8, "HAVE_ONEDNN_INT8", False)


def _want(conv, bn, x, relu, stride, padding, dilation, groups):
    xc, xs = conv.act_quant.quantize_int(x)
    wc, ws = conv.weight_quant.quantize_int(conv.weight.detach())
    s = F.conv2d(xc.double(), wc.double(), None, stride, padding, dilation, groups)
    assert torch.equal(s, s.round()) and float(s.abs().max()) < 2 ** 24
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    o = s.shape[1]
    scale = (torch.as_tensor(ws).reshape(-1).expand(o) * xs * k).float()
    bias = (((conv.bias if conv.bias is not None else 0) - bn.running_mean) * k + bn.bias).float()
    want = s.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    return want.relu() if relu else want


@pytest.mark.parametrize("seed", range(6))
def test_conv_equals_float64_sum_then_epilogue(seed, monkeypatch):
    _force_fp32(monkeypatch)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    groups = rng.choice([1, 2, 3])
    cin, cout = groups * rng.randint(1, 8), groups * rng.randint(1, 12)
    k = rng.choice([1, 3, 5, 7])
    stride, padding, dilation = rng.choice([1, 2]), rng.randint(0, 3), rng.choice([1, 2])
    wspec = rng.choice(["fixed:8", "fixed:4", "lsq:3", "ternary"])
    aspec = rng.choice(["fixed:8", "fixed:5", "pact:4", "lsq:8"])
    signed_x = aspec.startswith("fixed") and rng.random() < 0.5  # fixed decides from the data
    relu = rng.random() < 0.5
    conv = hwq.nn.QuantConv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, bias=rng.random() < 0.5, weights=wspec, acts=aspec)
    bn = nn.BatchNorm2d(cout)
    with torch.no_grad():
        bn.weight.normal_(generator=gen)  # negative gammas too
        bn.bias.normal_(generator=gen)
    model = nn.Sequential(conv, bn, nn.ReLU()) if relu else nn.Sequential(conv, bn)
    n, hw = rng.choice([1, 3, 16]), rng.randint(dilation * (k - 1) + 1 - 2 * padding + 1, 20)
    x = torch.randn(n, cin, max(hw, 1), max(hw, 1), generator=gen) * 3
    if not signed_x:
        x = x.relu()
    calibrate(model, x)
    dep = hwq.deploy(model, max_plane_products=0)
    d = dep.deploy_report.layers[0]
    assert isinstance(dep[0], Fp32SumConv2d) and d.impl.startswith("fp32-sum"), d
    assert d.bn_folded == "1" and (d.relu_fused == "2") == relu
    with torch.no_grad():
        got = dep(x)
        qat = model(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    want = _want(conv, bn, x, relu, stride, padding, dilation, groups)
    assert torch.equal(got, want)
    torch.testing.assert_close(got, qat, rtol=1e-5, atol=1e-5 * float(qat.abs().max()) + 1e-6)


def test_linear_equals_float64_sum_then_epilogue(monkeypatch):
    _force_fp32(monkeypatch)
    gen = torch.Generator().manual_seed(3)
    lin = hwq.nn.QuantLinear(512, 10, weights="fixed:8", acts="fixed:8")  # 512*128*128 < 2^24
    x = torch.randn(16, 512, generator=gen)
    calibrate(nn.Sequential(lin), x)
    dep = hwq.deploy(nn.Sequential(lin), max_plane_products=0)
    assert isinstance(dep[0], Fp32SumLinear)
    xc, xs = lin.act_quant.quantize_int(x)
    wc, ws = lin.weight_quant.quantize_int(lin.weight.detach())
    s = xc.double() @ wc.double().t()
    want = (s.float() * (torch.as_tensor(ws).reshape(-1).expand(10) * xs).float()
            + lin.bias.detach().float())
    with torch.no_grad():
        got = dep(x)
        qat = lin(x)
    assert torch.equal(got, want)
    torch.testing.assert_close(got, qat, rtol=1e-5, atol=1e-5 * float(qat.abs().max()))


def test_sums_past_2_pow_24_are_not_offered(monkeypatch):
    _force_fp32(monkeypatch)
    # unsigned 8-bit x 8-bit weights: 255 * 128 * K; K = 512 is 16,711,680 < 2^24, K = 520 is not
    for cin, ok in ((512, True), (520, False)):
        lin = hwq.nn.QuantLinear(cin, 4, weights="fixed:8", acts="fixed:8")
        calibrate(nn.Sequential(lin), torch.rand(4, cin))
        d = hwq.deploy(nn.Sequential(lin), max_plane_products=0).deploy_report.layers[0]
        assert (d.impl == "fp32-sum W8A8") == ok, d
        if not ok:
            assert d.impl == "kept" and "2^24" in d.reason


def test_nan_follows_the_qat_layer(monkeypatch):
    _force_fp32(monkeypatch)
    conv = hwq.nn.QuantConv2d(3, 8, 3, padding=1, weights="fixed:8", acts="fixed:8")
    x = torch.randn(2, 3, 8, 8)
    calibrate(nn.Sequential(conv), x)
    dep = hwq.deploy(nn.Sequential(conv), max_plane_products=0)
    assert isinstance(dep[0], Fp32SumConv2d)
    x[0, 1, 4, 4] = float("nan")
    with torch.no_grad():
        got, want = dep(x), conv(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want))


def test_channel_affine_against_torch():
    gen = torch.Generator().manual_seed(0)
    for shape in ((5, 7, 3, 4), (6, 70)):
        y = torch.randn(*shape, generator=gen)
        if y.dim() == 4:
            y = y.contiguous(memory_format=torch.channels_last)
        y[1, 2] = float("nan")  # NaN passes through the ReLU, as torch.relu's
        c = shape[1]
        s, b = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
        view = (1, -1, 1, 1) if y.dim() == 4 else (1, -1)
        for relu in (False, True):
            want = y * s.view(view) + b.view(view)  # torch's mul then add: two roundings
            want = torch.relu(want) if relu else want
            got = torch.ops.hwq.channel_affine_(y.clone(memory_format=torch.preserve_format), s, b,
                                                relu)
            assert torch.equal(torch.isnan(got), torch.isnan(want)) and bool(torch.isnan(got).any())
            assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0))


def test_channel_affine_refuses_bad_input():
    s, b = torch.ones(4), torch.zeros(4)
    with pytest.raises(RuntimeError, match="channels-last"):
        torch.ops.hwq.channel_affine_(torch.zeros(2, 4, 3, 3), s, b, False)  # NCHW memory
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.hwq.channel_affine_(torch.zeros(2, 4, dtype=torch.float64), s, b, False)
    with pytest.raises(RuntimeError, match="one per output channel"):
        torch.ops.hwq.channel_affine_(torch.zeros(2, 4), torch.ones(3), b, False)


def test_kept_conv_is_timed_with_what_a_candidate_absorbs(monkeypatch):
    # deploy with example_input times the QAT conv together with the batch norm (and ReLU) that a
    # deployed candidate would fold, so the comparison is of what each choice really runs
    import importlib
    passes = importlib.import_module("hwq.deploy.passes")
    _force_fp32(monkeypatch)
    net = hwq.quantize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.Hardtanh()),
                       weights="fixed:8", acts="fixed:8")
    x = torch.randn(2, 3, 10, 10)
    calibrate(net, x)
    seen = {}
    real = passes.fastest_ms

    def spy(fns, inp):
        kept = fns["kept"]
        seen[len(seen)] = [type(m).__name__ for m in kept] if isinstance(kept, nn.Sequential) \
            else [type(kept).__name__]
        return real(fns, inp)

    monkeypatch.setattr(passes, "fastest_ms", spy)
    hwq.deploy(net, example_input=x, max_plane_products=0)
    assert seen == {0: ["QuantConv2d", "BatchNorm2d", "ReLU"], 1: ["QuantConv2d", "BatchNorm2d"]}

"""hwq.deploy: deployed layers against an independent computation (float64 conv of the integer
codes, then the same float32 epilogue), and whole models against their QAT originals in eval mode."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels
from hwq.deploy import PackedConv2d, PackedLinear

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")


def _calibrate(model, x, steps=3):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def _randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.randn(m.num_features, generator=gen)  # negative gammas too
            m.bias.data = torch.randn(m.num_features, generator=gen)


@pytest.mark.parametrize("wspec,aspec,impl", [("binary", "binary", "binary"),
                                              ("fixed:2", "fixed:2", "bitserial W2A2"),
                                              ("ternary", "pact:2", "bitserial W2A2"),
                                              ("binary", "lsq:2", "bitserial W2A2"),
                                              # weight codes of this draw span 3 bits only:
                                              # deploy uses the fewest planes that hold them
                                              ("lsq:4", "pact:4", "bitserial W3A4")])
def test_layer_equals_float64_sum_then_epilogue(wspec, aspec, impl):
    gen = torch.Generator().manual_seed(0)
    conv = hwq.nn.QuantConv2d(24, 20, 3, stride=2, padding=1, groups=2, bias=True,
                              weights=wspec, acts=aspec)
    bn = nn.BatchNorm2d(20)
    model = nn.Sequential(conv, bn)
    _randomize_bn(model, gen)
    x = torch.randn(3, 24, 11, 9, generator=gen).relu() if aspec != "binary" else \
        torch.randn(3, 24, 11, 9, generator=gen)
    _calibrate(model, x)
    dep = hwq.deploy(model, max_plane_products=16)
    assert isinstance(dep[0], PackedConv2d) and isinstance(dep[1], nn.Identity)
    assert dep.deploy_report.layers[0].impl == impl and dep.deploy_report.layers[0].bn_folded == "1"
    # Independent: codes from the QAT quantizers, exact sums from float64 conv, the epilogue's
    # float32 arithmetic written out.
    xc, xs = conv.act_quant.quantize_int(x)
    wc, ws = conv.weight_quant.quantize_int(conv.weight.detach())
    s = F.conv2d(xc.double(), wc.double(), stride=2, padding=1, groups=2)
    assert torch.equal(s, s.round())
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    scale = (torch.as_tensor(ws).reshape(-1).expand(20) * xs * k).float()
    bias = ((conv.bias - bn.running_mean) * k + bn.bias).float()
    want = s.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    with torch.no_grad():
        got = dep(x)
        qat = model(x)
    assert torch.equal(got, want)
    # ... and the QAT model itself, to float rounding.
    torch.testing.assert_close(got, qat, rtol=1e-5, atol=1e-5 * float(qat.abs().max()))


def _small_net():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.Hardtanh(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.Hardtanh(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10))


def test_small_network_matches_qat_model():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = hwq.quantize(_small_net(), weights="binary", acts="binary", layers={
        "0": dict(weights="fixed:8", acts=None),              # float input: kept
        "9": dict(weights="fixed:2", acts="pact:2"),          # after ReLU: bit-serial W2A2
        "14": dict(weights="binary", acts="fixed:2")})        # linear, W2A2 (binary w = 2 bits)
    _randomize_bn(net, gen)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    _calibrate(net, x)
    dep = hwq.deploy(net)
    impls = {d.name: d.impl for d in dep.deploy_report.layers}
    assert impls == {"0": "kept", "3": "binary", "6": "binary", "9": "bitserial W2A2",
                     "14": "bitserial W2A2"}
    assert "float" in dep.deploy_report.kept[0].reason or "no integer" in dep.deploy_report.kept[0].reason
    assert isinstance(dep[14], PackedLinear)
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert not net[3].__class__.__name__.startswith("Packed")  # the QAT model is untouched


# torchvision's ResNet applies ReLU before each block's first conv, so those binary activations are
# all +1; the equality checked here does not depend on it (a BNN would use Bi-Real blocks).
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_binary_resnet18_matches_qat_model():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    net = hwq.quantize(torchvision.models.resnet18(num_classes=10), weights="binary", acts="binary",
                       layers={"conv1": dict(weights="fixed:8", acts=None),
                               "fc": dict(weights="fixed:8", acts="fixed:8")})
    _randomize_bn(net, gen)
    x = torch.randn(2, 3, 64, 64, generator=gen)
    _calibrate(net, x, steps=2)
    dep = hwq.deploy(net)
    rep = dep.deploy_report
    assert rep.traced
    assert sum(d.impl == "binary" for d in rep.layers) == 19  # 16 3x3 + 3 downsample 1x1
    assert sum(bool(d.bn_folded) for d in rep.layers) == 19
    assert {d.name for d in rep.kept} == {"conv1", "fc"}
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"model is a str"):
        hwq.deploy("resnet")
    with pytest.raises(ValueError, match=r"max_plane_products=0 is not accepted"):
        hwq.deploy(nn.Sequential(), max_plane_products=0)

"""hwq.deploy: deployed layers against an independent computation (float64 conv of the integer
codes, then the same float32 epilogue), and whole models against their QAT originals in eval mode."""
import os

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels
from hwq.deploy import (Fp32SumConv2d, Fp32SumLinear, Int8Conv2d, Int8Linear, PackedConv2d,
                        PackedLinear)
from hwq.kernels import int8

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
    dep = hwq.deploy(net, max_plane_products=4)
    impls = {d.name: d.impl for d in dep.deploy_report.layers}
    assert impls == {"0": "kept", "3": "binary", "6": "binary", "9": "bitserial W2A2",
                     "14": "bitserial W2A2"}
    assert "float" in dep.deploy_report.kept[0].reason or "no integer" in dep.deploy_report.kept[0].reason
    assert isinstance(dep[14], PackedLinear)
    # 3 -> bn 4 (folded) -> Hardtanh 5 -> binary 6: layer 3 hands packed sign bits to layer 6
    chained = {d.name: d.packed_output_to for d in dep.deploy_report.layers if d.packed_output_to}
    assert chained == {"3": "6"} and isinstance(dep[5], nn.Identity) and dep[3].packed_output
    assert "signs packed for 6" in str(dep.deploy_report)
    with torch.no_grad():
        got, want = dep(x), net(x)
        dep[3].packed_output = False  # the unchained twin: float out, packed again by layer 6
        unchained = dep(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert torch.equal(got, unchained)
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
    # fc (8-bit unsigned activations) runs int8 where oneDNN's 8-bit sums are exact (VNNI / AMX)
    int8_fc = int8.HAVE_ONEDNN_INT8 and int8.u8_exact_max() == 255
    assert {d.name for d in rep.kept} == {"conv1"}  # float input
    assert rep.layers[-1].impl == ("int8 W8A8" if int8_fc else "fp32-sum W8A8")
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


@pytest.mark.parametrize("between,chains", [
    (lambda: [nn.Hardtanh()], True), (lambda: [nn.Dropout(0.3), nn.Identity()], True),
    (lambda: [nn.Hardtanh(0.0, 1.0)], False),  # clamps negatives to 0: sign bits change
    (lambda: [nn.ReLU()], False), (lambda: [nn.Tanh()], False)])
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_chaining_only_through_sign_preserving_modules(between, chains):
    torch.manual_seed(6)
    net = hwq.quantize(nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), *between(),
                                     nn.Conv2d(16, 8, 3)), weights="binary", acts="binary")
    _randomize_bn(net, torch.Generator().manual_seed(6))
    x = torch.randn(2, 8, 9, 9)
    _calibrate(net, x)
    dep = hwq.deploy(net)
    assert dep[0].packed_output is chains
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_shared_module_is_not_chained_away():
    class Net(nn.Module):  # one Hardtanh used twice: it must survive
        def __init__(self):
            super().__init__()
            self.c1 = hwq.nn.QuantConv2d(4, 4, 3, padding=1, weights="binary", acts="binary")
            self.c2 = hwq.nn.QuantConv2d(4, 4, 3, padding=1, weights="binary", acts="binary")
            self.act = nn.Hardtanh()

        def forward(self, x):
            return self.act(self.c2(self.act(self.c1(x))))

    torch.manual_seed(7)
    net, x = Net(), torch.randn(2, 4, 6, 6)
    _calibrate(net, x)
    dep = hwq.deploy(net)
    assert not dep.c1.packed_output and isinstance(dep.act, nn.Hardtanh)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), net(x), rtol=1e-4, atol=1e-4)


def test_default_bitserial_reach_follows_the_cpu(monkeypatch):
    import importlib
    D = importlib.import_module("hwq.deploy")  # the module (hwq.deploy is also the function)
    monkeypatch.setattr(D.int8, "HAVE_ONEDNN_INT8", False)
    assert D.default_max_plane_products() == 4  # no int8 path: bit-serial up to W2A2
    monkeypatch.setattr(D.int8, "HAVE_ONEDNN_INT8", True)
    monkeypatch.setattr(D.kernels, "current_isa", lambda: "avx512bw")
    assert D.default_max_plane_products() == 0  # VNNI int8 beat every bit-serial product here
    monkeypatch.setattr(D.kernels, "current_isa", lambda: "avx512_vpopcntdq")
    monkeypatch.setattr(D.int8, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert D.default_max_plane_products() == 4  # Zen 4 class
    monkeypatch.setattr(D.int8, "cpu_flags", lambda: frozenset({"amx_int8"}))
    assert D.default_max_plane_products() == 0  # AMX int8


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"model is a str"):
        hwq.deploy("resnet")
    with pytest.raises(ValueError, match=r"max_plane_products=-1 is not accepted"):
        hwq.deploy(nn.Sequential(), max_plane_products=-1)
    with pytest.raises(TypeError, match=r"example_input is a list"):
        hwq.deploy(nn.Sequential(), example_input=[1, 2])


needs_int8 = pytest.mark.skipif(not int8.HAVE_ONEDNN_INT8, reason="torch lacks oneDNN int8 ops")


@needs_int8
@pytest.mark.parametrize("wspec,aspec,relu,impl,cls", [
    ("fixed:8", "fixed:7", False, "int8 W8A7", Int8Conv2d),   # signed activations
    ("lsq:4", "pact:4", True, "int8 W3A4", Int8Conv2d),       # unsigned; these codes span 3 bits
    ("fixed:3", "binary", False, "int8 W3A1", Int8Conv2d),    # binary activations, 3-bit weights
    ("ternary", "fixed:5", True, "int8 W2A5", Int8Conv2d)])
def test_int8_layer_equals_float64_sum_then_scale(wspec, aspec, relu, impl, cls):
    gen = torch.Generator().manual_seed(3)
    conv = hwq.nn.QuantConv2d(12, 10, 3, stride=1, padding=2, dilation=2, groups=2, bias=True,
                              weights=wspec, acts=aspec)
    bn = nn.BatchNorm2d(10)
    model = nn.Sequential(conv, bn)
    _randomize_bn(model, gen)
    x = torch.randn(3, 12, 10, 7, generator=gen)
    x = x.relu() if relu else x
    _calibrate(model, x)
    dep = hwq.deploy(model, max_plane_products=0)
    assert isinstance(dep[0], cls) and isinstance(dep[1], nn.Identity)
    assert dep.deploy_report.layers[0].impl == impl
    xc, xs = conv.act_quant.quantize_int(x) if aspec != "binary" else (torch.where(x < 0, -1., 1.), 1.)
    wc, ws = conv.weight_quant.quantize_int(conv.weight.detach())
    s = F.conv2d(xc.double(), wc.double(), padding=2, dilation=2, groups=2)
    k = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    scale = torch.as_tensor(ws).double().reshape(-1) * float(xs) * k
    bias = (conv.bias.detach().double() - bn.running_mean) * k + bn.bias.detach().double()
    want = s * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    with torch.no_grad():
        got = dep(x)
        qat = model(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    torch.testing.assert_close(got, qat, rtol=1e-5, atol=1e-5 * float(qat.abs().max()))


@needs_int8
def test_int8_linear_and_copies():
    import copy
    import io
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = nn.Sequential(hwq.nn.QuantLinear(20, 16, weights="fixed:6", acts="fixed:6"), nn.ReLU(),
                        hwq.nn.QuantLinear(16, 5, weights="fixed:4", acts="pact:3"))
    x = torch.randn(7, 20, generator=gen)
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=0)
    assert isinstance(dep[0], Int8Linear) and isinstance(dep[2], Int8Linear)
    with torch.no_grad():
        want = net(x)
        got = dep(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
        # the oneDNN weight is an opaque tensor: copies and state dicts go through the int8 codes
        twin = copy.deepcopy(dep)
        assert torch.equal(twin(x), got)
        buf = io.BytesIO()
        torch.save(dep.state_dict(), buf)
        other = hwq.deploy(net, max_plane_products=0)
        other(x)  # packs its oneDNN weights, which loading must replace
        other.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
        assert torch.equal(other(x), got)


@needs_int8
def test_relu_fused_into_int8_epilogue():
    torch.manual_seed(8)
    net = hwq.quantize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(8 * 25, 4), nn.ReLU(inplace=True)),
                       weights="fixed:8", acts="fixed:7")
    _randomize_bn(net, torch.Generator().manual_seed(8))
    x = torch.randn(2, 3, 7, 7)
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=0)
    rep = {d.name: d for d in dep.deploy_report.layers}
    assert (rep["0"].relu_fused, rep["3"].relu_fused, rep["6"].relu_fused) == ("2", "4", "7")
    assert all(isinstance(dep[i], nn.Identity) for i in (1, 2, 4, 7))
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_relu_fused_into_packed_epilogue():
    torch.manual_seed(9)
    net = hwq.quantize(nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                     nn.Conv2d(16, 8, 3), nn.ReLU()),
                       weights="binary", acts="binary", layers={"3": dict(weights="fixed:2",
                                                                          acts="pact:2")})
    _randomize_bn(net, torch.Generator().manual_seed(9))
    x = torch.randn(2, 8, 7, 7)
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=4)
    rep = {d.name: d for d in dep.deploy_report.layers}
    assert (rep["0"].impl, rep["3"].impl) == ("binary", "bitserial W2A2")
    assert (rep["0"].relu_fused, rep["3"].relu_fused) == ("2", "4") and dep[0].fuse_relu
    assert "relu fused" in repr(dep[0])
    with torch.no_grad():
        got, want = dep(x), net(x)
        dep[0].fuse_relu = dep[3].fuse_relu = False  # unfused twin: exactly torch.relu afterwards
        dep[2], dep[4] = nn.ReLU(), nn.ReLU()
        assert torch.equal(got, dep(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@needs_int8
def test_int8_needs_vnni_for_8_bit_activations(monkeypatch):
    monkeypatch.setattr(int8, "u8_exact_max", lambda: 127)
    conv = hwq.nn.QuantConv2d(4, 4, 3, weights="fixed:8", acts="fixed:8")
    x = torch.randn(2, 4, 6, 6)
    _calibrate(nn.Sequential(conv), x)
    # without VNNI the 8-bit layer gets exact sums from the float32 conv instead, not int8
    rep = hwq.deploy(nn.Sequential(conv), example_input=x).deploy_report
    assert set(rep.layers[0].timings_ms) == {"fp32-sum W8A8", "kept"}
    # ... unless its sums can pass 2^24 (K = 128 * 9 = 1152 signed 8-bit products: 18.9 M)
    wide = hwq.nn.QuantConv2d(128, 4, 3, weights="fixed:8", acts="fixed:8")
    _calibrate(nn.Sequential(wide), torch.randn(2, 128, 6, 6))
    rep = hwq.deploy(nn.Sequential(wide)).deploy_report
    assert rep.layers[0].impl == "kept"
    assert "signed activations" in rep.layers[0].reason and "VNNI" in rep.layers[0].reason
    assert "2^24" in rep.layers[0].reason


def _onednn_uses_vnni() -> bool:
    """Read here from /proc/cpuinfo and oneDNN's documented cap ONEDNN_MAX_CPU_ISA, independently
    of hwq.kernels.int8: whether oneDNN's 8-bit sums are exact in one call (VNNI or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split()) for line in f if line.startswith("flags")), set())
    except OSError:
        flags = set()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "DEFAULT"
    allowed = cap.upper() in ("DEFAULT", "ALL") or "VNNI" in cap.upper() or "AMX" in cap.upper() \
        or cap.upper().startswith("AVX10") or cap.upper() in ("AVX512_CORE_BF16", "AVX512_CORE_FP16")
    return allowed and bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


@needs_int8
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_deploy_installs_the_fastest_of_its_own_timings():
    # What this checks is deploy's bookkeeping, not speed (tests never assert timings; the speed
    # of each kernel against the others is scripts/bench_kernels.py's job): each layer's measured
    # candidates are the ones its codes and this CPU allow, the layer installed is the one of least
    # recorded time (named by the report, of the matching module class) and the model still
    # computes what the QAT model does.
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    net = hwq.quantize(_small_net(), weights="binary", acts="binary", layers={
        "0": dict(weights="fixed:8", acts="fixed:8"),
        "9": dict(weights="fixed:2", acts="pact:2"),
        "14": dict(weights="binary", acts="fixed:2")})
    _randomize_bn(net, gen)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    _calibrate(net, x)
    dep = hwq.deploy(net, example_input=x, max_plane_products=4)
    rep = dep.deploy_report
    # layer 0 has signed 8-bit activations: int8 only where one oneDNN call is exact (VNNI/AMX)
    want_cands = {"0": ({"int8 W8A8"} if _onednn_uses_vnni() else set()) | {"fp32-sum W8A8", "kept"},
                  "3": {"binary", "int8 W2A1", "kept"},
                  "9": {"bitserial W2A2", "int8 W2A2", "fp32-sum W2A2", "kept"}}
    classes = {"kept": (hwq.nn.QuantConv2d, hwq.nn.QuantLinear), "int8": (Int8Conv2d, Int8Linear),
               "binary": (PackedConv2d, PackedLinear), "bitserial": (PackedConv2d, PackedLinear),
               "fp32-sum": (Fp32SumConv2d, Fp32SumLinear)}
    for d in rep.layers:
        if d.name in want_cands:
            assert set(d.timings_ms) == want_cands[d.name], d
        assert d.timings_ms, d  # every layer of this net has a candidate on every CPU
        assert all(t > 0 for t in d.timings_ms.values())
        assert d.impl == min(d.timings_ms, key=d.timings_ms.get)
        assert d.reason == "fastest measured"
        layer = dep.get_submodule(d.name)
        assert isinstance(layer, classes[d.impl.split()[0]]), (d, type(layer))
        assert d.impl == "kept" or layer.impl == d.impl
    assert "ms" in str(rep)
    with torch.no_grad():
        got, want = dep(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@needs_int8
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_deployed_model_runs_under_torch_compile():
    torch.manual_seed(10)
    net = hwq.quantize(_small_net(), weights="binary", acts="binary", layers={
        "0": dict(weights="fixed:8", acts="fixed:8"),            # int8 (a graph break)
        "9": dict(weights="fixed:2", acts="pact:2"),
        "14": dict(weights="binary", acts="fixed:2")})
    x = torch.randn(2, 3, 16, 16)
    _calibrate(net, x)
    dep = hwq.deploy(net)
    with torch.no_grad():
        want = dep(x)
        got = torch.compile(dep)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))

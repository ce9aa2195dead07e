"""The residual add and the ReLUs of a residual block in the packed conv's epilogue: the op
torch.ops.hwq.conv2d_packed_add against conv2d_packed followed by torch's add and ReLU, and deploy's
rewrite of a block's forward (graph.fuse_residual_blocks) against the same model deployed without
the rewrite (bit for bit) and against the QAT model (to float rounding)."""
import copy
import importlib
import random

import pytest
import torch
import torchvision
from torch import nn

import hwq
from hwq import kernels
from hwq.kernels import OutMode

from .helpers import calibrate

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
passes = importlib.import_module("hwq.deploy.passes")


def _randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.randn(m.num_features, generator=gen)  # negative gammas too
            m.bias.data = torch.randn(m.num_features, generator=gen)
            m.running_mean.uniform_(-1, 1, generator=gen)
            m.running_var.uniform_(0.5, 2, generator=gen)


@pytest.mark.parametrize("seed", range(8))
def test_op_equals_conv_then_torch_add_and_relu(seed):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    binary = rng.random() < 0.5
    groups = rng.choice([1, 2])
    # widths of 16 and 32 per group give rows on vector boundaries (non-temporal stores)
    cin, cout = groups * rng.randint(1, 70), groups * rng.choice([rng.randint(1, 40), 16, 32])
    k, stride, padding = rng.choice([1, 3]), rng.choice([1, 2]), rng.randint(0, 1)
    n, h, w = rng.randint(1, 4), rng.randint(3, 12), rng.randint(3, 12)
    a_bits, w_bits = (1, 1) if binary else (rng.randint(1, 3), rng.randint(1, 3))
    if binary:
        x = torch.randn(n, cin, h, w, generator=gen).sign()
        wt = torch.randn(cout, cin // groups, k, k, generator=gen).sign()
    else:
        x = torch.randint(0, 2 ** a_bits, (n, cin, h, w), generator=gen).float()
        wt = torch.randint(-2 ** (w_bits - 1), 2 ** (w_bits - 1), (cout, cin // groups, k, k),
                           generator=gen).float()
    px = kernels.pack_activations(x, None if binary else a_bits, groups)
    pw = kernels.pack_weights(wt, None if binary else w_bits, groups)
    scale, bias = torch.randn(cout, generator=gen), torch.randn(cout, generator=gen)
    args = (px.data, pw.data, cin, cout, [k, k], a_bits, w_bits, binary, [stride, stride],
            [padding, padding], [1, 1], groups, scale, bias)
    y = torch.ops.hwq.conv2d_packed(*args, OutMode.FLOAT)
    residual = torch.randn(y.shape, generator=gen)
    if rng.random() < 0.5:
        residual = residual.contiguous(memory_format=torch.channels_last)  # else NCHW: a copy
    for relu in (False, True):
        want = y + residual
        want = torch.relu(want) if relu else want
        got = torch.ops.hwq.conv2d_packed_add(*args, residual, relu)
        assert torch.equal(got, want)
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_op_refuses_a_residual_of_another_shape_or_dtype():
    x = kernels.pack_activations(torch.ones(1, 8, 4, 4))
    w = kernels.pack_weights(torch.ones(4, 8, 3, 3))
    args = (x.data, w.data, 8, 4, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1, None, None)
    with pytest.raises(RuntimeError, match=r"residual has shape .*expected the output's \(1, 4, 4, 4\)"):
        torch.ops.hwq.conv2d_packed_add(*args, torch.zeros(1, 4, 3, 4), True)
    with pytest.raises(RuntimeError, match="residual has dtype .*expected float32"):
        torch.ops.hwq.conv2d_packed_add(*args, torch.zeros(1, 4, 4, 4, dtype=torch.float64), True)


def _resnet(seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = hwq.quantize(torchvision.models.resnet18(num_classes=10), weights="binary", acts="binary",
                       layers={"conv1": dict(weights="fixed:8", acts="fixed:8"),
                               "fc": dict(weights="fixed:8", acts="fixed:8")})
    _randomize_bn(net, gen)
    x = torch.randn(2, 3, 64, 64, generator=gen)
    return calibrate(net, x), x


@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_resnet_blocks_fused_bit_for_bit(monkeypatch):
    net, x = _resnet(4)
    dep = hwq.deploy(net)
    rep = {d.name: d for d in dep.deploy_report.layers}
    for layer in range(1, 5):
        for b in range(2):
            blk = f"layer{layer}.{b}"
            assert rep[f"{blk}.conv1"].relu_fused == f"{blk}.relu"
            assert rep[f"{blk}.conv2"].residual_fused == f"{blk}: add + relu"
            assert type(dep.get_submodule(blk)).__name__ == "BasicBlock"
            assert isinstance(dep.get_submodule(blk), torch.fx.GraphModule)
    assert dep.layer1[0].stride == 1 and dep.layer1[0].downsample is None  # plain attributes kept
    monkeypatch.setattr(passes, "_fuse_residual_blocks", lambda model, by_name: None)
    unfused = hwq.deploy(net)
    assert not any(d.residual_fused for d in unfused.deploy_report.layers)
    with torch.no_grad():
        got, before, qat = dep(x), unfused(x), net(x)
    assert torch.equal(got, before)
    torch.testing.assert_close(got, qat, rtol=1e-3, atol=1e-3 * float(qat.abs().max()))
    # the rewritten blocks keep every parameter and buffer under its name
    assert dep.state_dict().keys() == unfused.state_dict().keys()
    twin = copy.deepcopy(dep)
    twin.load_state_dict(dep.state_dict())
    with torch.no_grad():
        assert torch.equal(twin(x), got)


@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_resnet_nan_input_follows_the_qat_model():
    net, x = _resnet(5)
    dep = hwq.deploy(net)
    x[1, 0, 10, 10] = float("nan")
    with torch.no_grad():
        got, want = dep(x), net(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert bool(torch.isnan(got[1]).all()) and not bool(torch.isnan(got[0]).any())


class _BiRealBlock(nn.Module):
    """out = bn(conv(x)) + x, no ReLU (Bi-Real Net's shortcut, Liu et al., ECCV 2018)."""

    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x)) + x


class _UsedTwice(nn.Module):
    """relu(bn(conv(x)) + x) whose conv output is also returned: nothing may be fused."""

    def __init__(self, c):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        y = self.bn(self.conv(x))
        return self.relu(y + x), y


def test_add_without_relu_and_a_conv_used_twice():
    gen = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    net = hwq.quantize(nn.Sequential(_BiRealBlock(16), _BiRealBlock(16)), weights="binary",
                       acts="binary")
    _randomize_bn(net, gen)
    x = torch.randn(2, 16, 9, 9, generator=gen)
    calibrate(net, x)
    dep = hwq.deploy(net)
    assert [d.residual_fused for d in dep.deploy_report.layers] == ["0: add", "1: add"]
    with torch.no_grad():
        got, qat = dep(x), net(x)
    torch.testing.assert_close(got, qat, rtol=1e-5, atol=1e-5 * float(qat.abs().max()))
    want = None
    for blk in net:  # independent of deploy: each block from float64 sums of its codes
        xin = x if want is None else want
        xc, _ = blk.conv.act_quant.quantize_int(xin)
        wc, ws = blk.conv.weight_quant.quantize_int(blk.conv.weight.detach())
        s = nn.functional.conv2d(xc.double(), wc.double(), padding=1)
        k = blk.bn.weight / torch.sqrt(blk.bn.running_var + blk.bn.eps)
        scale = (torch.as_tensor(ws).reshape(-1).expand(16) * k).float().view(1, -1, 1, 1)
        bias = (blk.bn.bias - blk.bn.running_mean * k).float().view(1, -1, 1, 1)
        want = (s.float() * scale + bias) + xin
    assert torch.equal(got, want.detach())

    two = hwq.quantize(nn.Sequential(_UsedTwice(8)), weights="binary", acts="binary")
    x = torch.randn(2, 8, 6, 6, generator=gen)
    calibrate(two, x)
    dep = hwq.deploy(two)
    assert not dep.deploy_report.layers[0].residual_fused
    assert not isinstance(dep[0], torch.fx.GraphModule)
    with torch.no_grad():
        for got, want in zip(dep(x), two(x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))

"""hwq.deploy under hostile models and inputs (issue 11): shared convs and aliases, NaN and Inf
inputs, training mode, batch norms without running statistics. The QAT model in eval mode is the
reference each time."""
import pytest
import torch
from torch import nn

import hwq
from hwq import kernels
from hwq.deploy import PackedConv2d
from hwq.kernels import int8

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
needs_int8 = pytest.mark.skipif(not int8.HAVE_ONEDNN_INT8, reason="torch lacks oneDNN int8 ops")


def _calibrate(model, x, steps=3):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def _random_bn(bn, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)


class ConvTwice(nn.Module):
    """c(bn(c(x))): the BN follows only the first call of the conv."""

    def __init__(self, w="fixed:2", a="pact:2"):
        super().__init__()
        self.c = hwq.nn.QuantConv2d(8, 8, 3, padding=1, weights=w, acts=a)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.c(self.bn(self.c(x)))


@pytest.mark.parametrize("max_pp", [0, 16])  # int8 (where it exists) or bit-serial
def test_bn_not_folded_into_a_conv_called_twice(max_pp):
    torch.manual_seed(0)
    net = ConvTwice()
    _random_bn(net.bn, 0)
    x = torch.randn(2, 8, 7, 7).relu()
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=max_pp)
    assert isinstance(dep.bn, nn.BatchNorm2d)
    assert not dep.deploy_report.layers[0].bn_folded
    with torch.no_grad():
        want, got = net(x), dep(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_relu_not_fused_into_a_conv_called_twice():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = hwq.nn.QuantConv2d(8, 8, 3, padding=1, weights="fixed:2", acts="pact:2")
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.c(self.relu(self.c(x))) - 1  # the second call's output may be negative

    torch.manual_seed(1)
    net, x = Net(), torch.randn(2, 8, 7, 7).relu()
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=16)
    assert not dep.deploy_report.layers[0].relu_fused
    with torch.no_grad():
        want, got = net(x), dep(x)
    assert (want < 0).any()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_module_registered_under_two_names_is_deployed_under_both():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = hwq.nn.QuantConv2d(8, 8, 3, padding=1, weights="fixed:2", acts="pact:2")
            self.b = self.a  # alias: forward calls it by its second name
            self.bn1 = nn.BatchNorm2d(8)
            self.bn2 = self.bn1

        def forward(self, x):
            return self.bn2(self.b(x))

    torch.manual_seed(2)
    net = Net()
    _random_bn(net.bn1, 2)
    x = torch.randn(2, 8, 7, 7).relu()
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=16)
    assert isinstance(dep.a, PackedConv2d) and dep.b is dep.a
    assert dep.bn1 is dep.bn2  # folded (both names now Identity) or kept under both
    with torch.no_grad():
        want, got = net(x), dep(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def _mixed_net():
    return hwq.quantize(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardtanh(),   # 0: binary
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardtanh(),  # 3: binary, chained
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),      # 6: binary
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),      # 9: W2A2 / int8
        nn.Flatten(), nn.Linear(16 * 36, 10)),                               # 13: int8 / W8A8
        weights="binary", acts="binary",
        layers={"9": dict(weights="fixed:2", acts="pact:2"),
                "13": dict(weights="fixed:4", acts="fixed:4")})


@pytest.mark.parametrize("max_pp", [0, 64])
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_nan_and_inf_inputs_follow_the_qat_model(max_pp):
    """README "NaN and Inf": in eval mode NaN stays NaN and +/-Inf saturates. The deployed model
    gives NaN exactly where the QAT model does, and the same values elsewhere."""
    torch.manual_seed(3)
    net = _mixed_net()
    x = torch.randn(4, 3, 6, 6)
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=max_pp)
    assert dep[3].packed_output
    bad = x.clone()
    bad[1, 0, 2, 3] = float("nan")   # sample 1: all logits NaN (the linear layer mixes everything)
    bad[2, 1, 0, 0] = float("inf")   # samples 2, 3: saturate, finite logits
    bad[3, 2, 5, 5] = -float("inf")
    with torch.no_grad():
        want, got = net(bad), dep(bad)
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.isnan(want[1]).all()
    ok = ~torch.isnan(want)
    torch.testing.assert_close(got[ok], want[ok], rtol=1e-4,
                               atol=1e-4 * float(want[ok].abs().max()))


@pytest.mark.parametrize("max_pp", [0, 16])
def test_nan_positions_of_a_conv_output_follow_the_qat_model(max_pp):
    torch.manual_seed(4)
    net = nn.Sequential(hwq.nn.QuantConv2d(4, 6, 3, stride=2, padding=1, dilation=1,
                                           weights="fixed:2", acts="fixed:2"), nn.ReLU())
    x = torch.randn(2, 4, 9, 9).relu()
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=max_pp)
    x[0, 1, 4, 4] = float("nan")
    x[1, 3, 0, 8] = float("nan")
    with torch.no_grad():
        want, got = net(x), dep(x)
    assert torch.isnan(want).any() and not torch.isnan(want).all()
    assert torch.equal(torch.isnan(got), torch.isnan(want))


def test_deployed_model_refuses_training_mode_and_stays_as_it_was():
    torch.manual_seed(5)
    net = _mixed_net()
    x = torch.randn(4, 3, 6, 6)
    _calibrate(net, x)
    dep = hwq.deploy(net)
    before = {k: v.clone() for k, v in dep.state_dict().items()}
    dep.train()
    with pytest.raises(ValueError, match=r"eval"):
        dep(x * 10)
    # a deployed layer called on its own in training mode computes as in eval mode
    layer = dep[9]
    layer.train()
    with torch.no_grad():
        layer(torch.randn(4, 16, 6, 6).relu() * 50)
    after = dep.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    dep.eval()
    with torch.no_grad():
        torch.testing.assert_close(dep(x), net(x), rtol=1e-4, atol=1e-3)


def test_batch_norm_without_running_stats_is_kept():
    torch.manual_seed(6)
    net = nn.Sequential(hwq.nn.QuantConv2d(4, 6, 3, weights="fixed:2", acts="pact:2"),
                        nn.BatchNorm2d(6, track_running_stats=False))
    x = torch.randn(3, 4, 7, 7).relu()
    _calibrate(net, x)
    dep = hwq.deploy(net, max_plane_products=16)
    assert isinstance(dep[1], nn.BatchNorm2d) and not dep.deploy_report.layers[0].bn_folded
    with torch.no_grad():
        torch.testing.assert_close(dep(x), net(x), rtol=1e-4, atol=1e-4)


def test_meta_device_model_is_refused_by_name():
    with torch.device("meta"):
        net = nn.Sequential(hwq.nn.QuantConv2d(4, 6, 3, weights="fixed:2", acts="pact:2"))
    with pytest.raises(ValueError, match="meta"):
        hwq.deploy(net)


@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_nan_checks_of_a_deployed_model_inside_another():
    """The inner model ends before the outer one: the outer's remaining layers still check."""
    from hwq.deploy import _NAN_CHECKS
    torch.manual_seed(8)
    x = torch.randn(2, 8, 7, 7).relu()
    inner = nn.Sequential(hwq.nn.QuantConv2d(8, 8, 3, padding=1, weights="fixed:2",
                                             acts="pact:2"))
    _calibrate(inner, x)
    inner_dep = hwq.deploy(inner, max_plane_products=16)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner_dep
            self.c = hwq.nn.QuantConv2d(8, 8, 3, padding=1, weights="fixed:2", acts="pact:2")

        def forward(self, x):
            return self.c(self.inner(x.nan_to_num(0.0)) + x)  # NaN skips the inner model

    outer = Outer()
    outer.inner = inner  # calibrated with the QAT inner model (a deployed one refuses train())
    _calibrate(outer, x)
    outer.inner = inner_dep
    dep = hwq.deploy(outer, max_plane_products=16)
    assert isinstance(dep.c, PackedConv2d) and isinstance(dep.inner[0], PackedConv2d)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with torch.no_grad():
        want, got = outer(bad), dep(bad)
    assert torch.isnan(want).any()
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and _NAN_CHECKS.stack == []
    dep.train()
    with pytest.raises(ValueError, match="eval"):
        dep(x)
    assert _NAN_CHECKS.stack == []

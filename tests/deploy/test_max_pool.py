"""hwq.deploy's max pool (csrc/max_pool.cpp, hwq/deploy/pool.py) against torch's F.max_pool2d, bit
for bit (NaN, infinities and the sign of zero included), on seeded random geometries; its errors;
the module's fallbacks; and deploy's swap on a ResNet-18 stem."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels
from hwq.deploy.pool import MaxPool2d

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")


def _hostile(shape, gen):
    """Random floats with ties, both zeros, infinities and NaNs sprinkled in."""
    x = torch.randint(-3, 4, shape, generator=gen).float()  # many ties
    pick = torch.rand(shape, generator=gen)
    x[pick < 0.05] = float("nan")
    x[(pick >= 0.05) & (pick < 0.10)] = -0.0
    x[(pick >= 0.10) & (pick < 0.13)] = float("inf")
    x[(pick >= 0.13) & (pick < 0.16)] = float("-inf")
    x[pick >= 0.6] = torch.randn(int((pick >= 0.6).sum()), generator=gen)
    return x


def _bits(t):
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("seed", range(40))
def test_equals_torch_bit_for_bit(seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
    kh, kw = r(1, 4), r(1, 4)
    sy, sx = r(1, 3), r(1, 3)
    py, px = r(0, kh // 2), r(0, kw // 2)
    c = [1, 3, 16, 64, 70, 130][r(0, 5)]
    h, w = r(max(1, kh - 2 * py), 13), r(max(1, kw - 2 * px), 13)
    x = _hostile((r(1, 3), c, h, w), gen).contiguous(memory_format=torch.channels_last)
    want = F.max_pool2d(x, (kh, kw), (sy, sx), (py, px))
    got = torch.ops.hwq.max_pool2d_cl(x, [kh, kw], [sy, sx], [py, px])
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(_bits(got), _bits(want)), (kh, kw, sy, sx, py, px, c, h, w)


def test_resnet_stem_shape():
    x = torch.randn(2, 64, 112, 112).contiguous(memory_format=torch.channels_last)
    got = torch.ops.hwq.max_pool2d_cl(x, [3, 3], [2, 2], [1, 1])
    assert torch.equal(_bits(got), _bits(F.max_pool2d(x, 3, 2, 1)))


@pytest.mark.parametrize("x, args, match", [
    (torch.zeros(1, 2, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last),
     ([2, 2], [2, 2], [0, 0]), "dtype.*float32"),
    (torch.zeros(1, 2, 4, 4), ([2, 2], [2, 2], [0, 0]), "channels-last"),
    (torch.zeros(2, 4, 4), ([2, 2], [2, 2], [0, 0]), "3 dimensions"),
    (torch.zeros(1, 4, 4, 4).contiguous(memory_format=torch.channels_last), ([0, 2], [2, 2], [0, 0]),
     "kernel_size=.*>= 1"),
    (torch.zeros(1, 4, 4, 4).contiguous(memory_format=torch.channels_last), ([2, 2], [2, 0], [0, 0]),
     "stride=.*>= 1"),
    (torch.zeros(1, 4, 4, 4).contiguous(memory_format=torch.channels_last), ([2, 2], [1, 1], [2, 0]),
     "padding=.*kernel_size / 2"),
    (torch.zeros(1, 4, 2, 2).contiguous(memory_format=torch.channels_last), ([3, 3], [1, 1], [0, 0]),
     "smaller than kernel_size"),
    (torch.zeros(1, 4, 4, 4).contiguous(memory_format=torch.channels_last), ([2, 2, 2], [1, 1], [0, 0]),
     "kernel_size has 3 values"),
])
def test_bad_input_is_refused_with_the_parameter_named(x, args, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.hwq.max_pool2d_cl(x, *args)


def test_module_falls_back_where_the_op_does_not_apply():
    pool = MaxPool2d(3, 2, 1)
    gen = torch.Generator().manual_seed(0)
    for x in (torch.randn(2, 8, 9, 9, generator=gen),  # NCHW
              torch.randn(2, 8, 9, 9, generator=gen).double().contiguous(
                  memory_format=torch.channels_last)):
        assert torch.equal(pool(x), F.max_pool2d(x, 3, 2, 1))
    x = torch.randn(2, 8, 9, 9, generator=gen).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    pool(x).sum().backward()  # torch's op, with its gradient
    assert x.grad is not None
    assert not MaxPool2d.applies(nn.MaxPool2d(3, 2, 1, ceil_mode=True))
    assert not MaxPool2d.applies(nn.MaxPool2d(3, 2, 1, dilation=2))
    assert not MaxPool2d.applies(nn.MaxPool2d(3, 2, 1, return_indices=True))
    assert MaxPool2d.applies(nn.MaxPool2d(3, 2, 1))


@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_deploy_swaps_the_stem_pool_and_keeps_the_outputs():
    torch.manual_seed(0)
    qat = hwq.quantize(torchvision.models.resnet18(num_classes=10), weights="binary",
                       acts="binary", layers={"conv1": dict(weights="fixed:8", acts="fixed:8"),
                                              "fc": dict(weights="fixed:8", acts="fixed:8")})
    x = torch.randn(2, 3, 64, 64)
    qat.train()
    with torch.no_grad():
        qat(x)
    qat.eval()
    deployed = hwq.deploy(qat)
    assert type(deployed.maxpool) is MaxPool2d
    seen = []  # the deployed conv1 hands on channels-last float32: hwq's op, not the fallback
    deployed.maxpool.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        got = deployed(x)
        assert seen == [True]
        deployed.maxpool = nn.MaxPool2d(3, 2, 1)
        want = deployed(x)
    assert torch.equal(got, want)

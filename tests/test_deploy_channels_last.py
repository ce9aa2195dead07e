"""hwq.deploy runs the convs it keeps on channels-last input (hwq/deploy/passes.py,
_kept_convs_channels_last): a kept first conv fed an NCHW image would leave NCHW tensors behind
it, where torch's max_pool2d is many times slower than on channels-last ones (docs/kernels.md).
Checked here: the memory format each layer receives, and the values against the QAT model and
against float64 arithmetic of the kept conv itself."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")


def _stem_net():
    # A ResNet-style stem (conv, BN, ReLU, max-pool) before a binary conv.
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


# after the ReLU and max-pool the binary conv's activations are all +1; the checks here do not
# depend on it
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_kept_conv_runs_channels_last_with_the_qat_values():
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    net = hwq.quantize(_stem_net(), weights="binary", acts="binary",
                       layers={"0": dict(weights="fixed:8", acts=None)})  # float input: kept
    x = torch.randn(2, 3, 32, 32, generator=gen)  # NCHW, as a user passes an image batch
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    dep = hwq.deploy(net)
    assert {d.name: d.impl for d in dep.deploy_report.layers} == {"0": "kept", "4": "binary"}

    seen = {}
    hooks = [dep[i].register_forward_hook(
        lambda m, args, out, i=i: seen.__setitem__(i, (args[0], out))) for i in (0, 3)]
    with torch.no_grad():
        got, want = dep(x), net(x)
    for h in hooks:
        h.remove()
    # the kept conv received channels-last input and so did the max-pool after BN and ReLU
    assert seen[0][0].is_contiguous(memory_format=torch.channels_last)
    assert seen[3][0].is_contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous(memory_format=torch.channels_last)  # the caller's tensor untouched
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # the kept conv alone against float64 arithmetic on its (fixed:8) weights
    w = dep[0].weight_quant(dep[0].weight.detach())
    ref = F.conv2d(x.double(), w.double(), stride=2, padding=2)
    torch.testing.assert_close(seen[0][1].double(), ref, rtol=1e-5, atol=1e-5)


def test_kept_conv_hook_passes_other_inputs_through():
    # A kept conv called with its input as a keyword has no positional args: the hook must leave
    # the call alone instead of failing on args[0].
    torch.manual_seed(6)
    net = hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3)), weights="fixed:8", acts=None)
    dep = hwq.deploy(net.eval())
    assert dep.deploy_report.layers[0].impl == "kept"
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(dep[0](x=x), net[0](x=x))

"""QuantConv2d / QuantLinear / QuantAct against a pure-torch reference: F.conv2d / F.linear on the
separately quantized weight and input."""
import io

import pytest
import torch
from torch.nn import functional as F

import hwq
from hwq import quant


@pytest.mark.parametrize("groups,cin,cout", [(1, 6, 8), (2, 6, 8), (6, 6, 6)])  # depthwise too
@pytest.mark.parametrize("wspec,aspec", [("binary", "binary"), ("fixed:4", "fixed:4"),
                                         ("lsq:3", "lsq:3"), ("ternary", "pact:4"),
                                         ("pow2:4", None)])
def test_conv_equals_reference(groups, cin, cout, wspec, aspec):
    torch.manual_seed(0)
    m = hwq.nn.QuantConv2d(cin, cout, 3, padding=1, stride=2, groups=groups, bias=True,
                           weights=wspec, acts=aspec)
    x = torch.randn(2, cin, 9, 7)
    y = m(x)
    wq = quant.get(wspec, channels=cout)
    aq = quant.get(aspec, role="act")
    ref = F.conv2d(aq(x), wq(m.weight), m.bias, stride=2, padding=1, groups=groups)
    assert torch.equal(y, ref)
    y.sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


def test_linear_equals_reference():
    torch.manual_seed(0)
    m = hwq.nn.QuantLinear(16, 5, weights="fixed:8", acts="fixed:8")
    x = torch.randn(4, 16)
    ref = F.linear(quant.get("fixed:8", role="act")(x), quant.get("fixed:8")(m.weight), m.bias)
    assert torch.equal(m(x), ref)


def test_precision_attributes():
    m = hwq.nn.QuantConv2d(64, 64, 3, padding=1, weights="binary", acts="binary")
    assert (m.w_bits, m.a_bits, m.w_quant, m.a_quant) == (1, 1, "binary", "binary")
    f = hwq.nn.QuantLinear(4, 4)
    assert (f.w_bits, f.a_bits, f.w_quant, f.a_quant) == (32, 32, "float", "float")
    a = hwq.nn.QuantAct("pact:3")
    assert (a.a_bits, a.a_quant) == (3, "pact:3")
    assert isinstance(m, torch.nn.Conv2d) and isinstance(f, torch.nn.Linear)


def test_from_float_keeps_the_parameters():
    conv = torch.nn.Conv2d(3, 8, 3, bias=False, padding_mode="reflect", padding=1)
    q = hwq.nn.QuantConv2d.from_float(conv, "fixed:8", None)
    assert q.weight is conv.weight and q.bias is None and q.padding_mode == "reflect"
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(q(x), conv._conv_forward(x, quant.get("fixed:8")(conv.weight), None))


@pytest.mark.parametrize("wspec,aspec", [("lsq:4", "lsq:4"), ("fixed:4", "fixed:4"),
                                         ({"name": "lsq", "bits": 2, "per_channel": True}, "pact:2")])
def test_state_dict_round_trip_with_learned_state(wspec, aspec):
    torch.manual_seed(0)
    m = hwq.nn.QuantConv2d(4, 6, 3, weights=wspec, acts=aspec)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(3):  # learn something: steps, clip level, running ranges all move
        opt.zero_grad()
        m(torch.randn(2, 4, 6, 6)).square().mean().backward()
        opt.step()
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = hwq.nn.QuantConv2d(4, 6, 3, weights=wspec, acts=aspec)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    m.eval(), fresh.eval()
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(m(x), fresh(x))


def test_quant_act_module():
    a = hwq.nn.QuantAct(acts="fixed:8")
    x = torch.randn(3, 5)
    assert torch.equal(a(x), quant.get("fixed:8", role="act")(x))
    with pytest.raises(ValueError, match="cannot be applied to activations"):
        hwq.nn.QuantAct("ternary")

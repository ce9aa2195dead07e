"""Straight-through gradients against hand-computed values (the rules in each quantizer's docstring)."""
import math

import pytest
import torch

from hwq import quant


def grad_of(q, x, upstream=None):
    x = x.clone().requires_grad_()
    y = q(x)
    y.backward(torch.ones_like(y) if upstream is None else upstream)
    return y.detach(), x.grad


X = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.2])


def test_binary_act_clipped_ste():
    y, g = grad_of(quant.get("binary", role="act"), X)
    assert torch.equal(y, torch.tensor([-1.0, -1, -1, 1, 1, 1]))  # sign(0) = +1
    assert torch.equal(g, torch.tensor([0.0, 1, 1, 1, 1, 0]))


def test_binary_act_approx_sign():
    _, g = grad_of(quant.get("binary", role="act", grad="approx"), X)
    # Bi-Real ApproxSign: 2 - 2|x| inside [-1, 1]
    assert torch.allclose(g, torch.tensor([0.0, 0.0, 1.4, 2.0, 0.6, 0.0]))


def test_binary_weight_xnor_scale_gradient():
    w = torch.tensor([[0.5, -0.25], [-2.0, 1.0]])
    up = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y, g = grad_of(quant.get("binary", scale="channel"), w, up)
    # alpha = mean|w| per row = [0.375, 1.5]
    assert torch.equal(y, torch.tensor([[0.375, -0.375], [-1.5, 1.5]]))
    # dL/dw_ik = up_ik * alpha_i * [|w_ik| <= 1] + (sum_j up_ij s_ij) * sign(w_ik) / n  (XNOR-Net)
    # row 0: sum = 1 - 2 = -1 -> [0.375 - 0.5, 0.75 + 0.5]; row 1: sum = -3 + 4 = 1 -> [0 - 0.5, 6 + 0.5]
    assert torch.allclose(g, torch.tensor([[-0.125, 1.25], [-0.5, 6.5]]))


@pytest.mark.parametrize("spec", ["ternary", "pow2:3"])
def test_identity_ste(spec):
    w = torch.tensor([0.9, -0.05, -0.6, 0.2, 3.0])
    up = torch.arange(1.0, 6.0)
    _, g = grad_of(quant.get(spec), w, up)
    assert torch.equal(g, up)


def test_fixed_clipped_ste():
    q = quant.get("fixed:4", role="act")
    q.eval()
    q.running_max.fill_(1.0)  # 1 integer bit; unsigned 4 bits: step 1/8, codes 0..15, top 1.875
    q.signed.fill_(0)
    y, g = grad_of(q, torch.tensor([-0.1, 0.3, 1.0, 1.875, 2.5]))
    assert torch.equal(y, torch.tensor([0.0, 0.25, 1.0, 1.875, 1.875]))
    assert torch.equal(g, torch.tensor([0.0, 1, 1, 1, 0]))


def test_lsq_gradients_hand_worked():
    q = quant.get("lsq:2", role="act", signed=False)
    with torch.no_grad():
        q.scale.fill_(0.25)
    q.initialized.fill_(True)
    x = torch.tensor([[0.1, 0.5, 1.7, -0.2]])
    y, g = grad_of(q, x)
    # x/s = [0.4, 2, 6.8, -0.8]; codes 0..3 -> [0, 2, 3, 0]
    assert torch.equal(y, torch.tensor([[0.0, 0.5, 0.75, 0.0]]))
    assert torch.equal(g, torch.tensor([[1.0, 1, 0, 0]]))
    # ds = g * sum(round(u) - u inside, hi above, lo below) = (1/sqrt(4*3)) * (-0.4 + 0 + 3 + 0)
    assert math.isclose(q.scale.grad.item(), 2.6 / math.sqrt(12), rel_tol=1e-6)


def test_lsq_per_channel_weight_gradient_matches_float64_reference():
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64)
    q = quant.get("lsq:3", channels=3, per_channel=True).double()
    q(w)  # initialise the steps
    up = torch.randn(3, 4, dtype=torch.float64)
    q.scale.grad = None
    _, g = grad_of(q, w, up)
    s = q.scale.detach().reshape(3, 1)
    u = w / s
    inside = (u >= -4) & (u <= 3)
    r = torch.where(inside, u.clamp(-4, 3).round() - u, u.clamp(-4, 3).round())
    expect = (up * r).sum(1) / math.sqrt(4 * 3)  # N = 4 weights per channel, Qp = 3
    assert torch.allclose(q.scale.grad, expect)
    assert torch.equal(g, up * inside)


def test_pact_gradients_hand_worked():
    q = quant.get("pact:2", role="act", alpha_init=2.0)
    x = torch.tensor([-0.5, 0.3, 1.0, 2.5])
    y, g = grad_of(q, x)
    # step 2/3; 1.0 / step = 1.5 ties to even 2 -> 4/3
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 4 / 3, 2.0]))
    assert torch.equal(g, torch.tensor([0.0, 1, 1, 0]))
    assert q.alpha.grad.item() == 1.0  # one value above alpha


@pytest.mark.parametrize("spec", ["lsq:4", "pact:4"])
def test_learned_parameters_move_under_an_optimizer(spec):
    torch.manual_seed(0)
    q = quant.get(spec, role="act", **({"alpha_init": 4.0} if spec.startswith("pact") else {}))
    x = torch.randn(256).relu() * 3
    target = x.clamp(max=1.0)  # a clipping level of 1 is optimal
    opt = torch.optim.SGD(q.parameters(), lr=0.02 if spec.startswith("lsq") else 0.1)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = (q(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    (p,) = list(q.parameters())
    assert loss.item() < 0.01 * first
    # both learn the optimal clipping level 1.0: LSQ as 15 steps of 1/15, PACT as alpha
    assert abs(p.item() * (15 if spec.startswith("lsq") else 1) - 1.0) < 0.01

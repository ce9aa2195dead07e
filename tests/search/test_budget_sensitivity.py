"""Sensitivities checked against exact float64 references on tiny models: the Hutchinson trace
against the trace of the Hessian built entry by entry (torch.autograd.functional.hessian), within
the estimator's own known spread; the empirical Fisher against per-sample gradients taken one
sample at a time; the perturbation against the fixed:b quantizer applied by hand."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import hwq
from hwq.search.sensitivity import sensitivity


class Tiny(nn.Module):
    """fc1 -> tanh -> fc2: smooth, so every Hessian block is dense and non-trivial."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Two(nn.Module):
    """Two layers reading the same tensor, as a residual block's conv and shortcut do."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x) + 3 * self.b(x)


def tiny_case(seed=0, n=6):
    torch.manual_seed(seed)
    m = Tiny().double()
    x = torch.randn(n, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return m, x, y


def exact_hessians(m, x, y):
    """(H of the mean loss w.r.t. fc1.weight, H w.r.t. fc2's input, both dense float64)."""
    params = dict(m.named_parameters())
    w1 = params["fc1.weight"].detach()

    def loss_w(w):
        p = dict(params, **{"fc1.weight": w})
        return F.cross_entropy(functional_call(m, p, (x,)), y)
    hw = torch.autograd.functional.hessian(loss_w, w1).reshape(w1.numel(), w1.numel())
    h = torch.tanh(m.fc1(x)).detach()
    ha = torch.autograd.functional.hessian(lambda a: F.cross_entropy(m.fc2(a), y), h)
    return hw, ha.reshape(h.numel(), h.numel()), h


def rademacher_se(h, iters):
    """Standard error of the mean of ``iters`` Hutchinson estimates v^T H v (Rademacher v):
    Var = 2 (||H||_F^2 - sum_i H_ii^2) for symmetric H."""
    var = 2 * (float((h ** 2).sum()) - float((torch.diagonal(h) ** 2).sum()))
    return math.sqrt(var / iters)


def test_hutchinson_matches_exact_trace_float64():
    m, x, y = tiny_case()
    hw, ha, h = exact_hessians(m, x, y)
    iters = 3000
    s = sensitivity(m, [(x, y)], bits=(2, 4), method="hutchinson", iters=iters, seed=1)
    fc1, fc2 = s["fc1"], s["fc2"]
    # weights: Tr(H_W) / n_W
    exact_w = float(torch.trace(hw)) / hw.shape[0]
    se_w = rademacher_se(hw, iters) / hw.shape[0]
    assert abs(fc1.w_trace - exact_w) < 5 * se_w
    assert fc1.w_trace_se == pytest.approx(se_w, rel=0.25)  # the reported spread is the real one
    # activations: mean over samples of Tr(H_i) / n_a = Tr(H_batch of the mean loss) / n_a
    n_a = h.shape[1]
    exact_a = float(torch.trace(ha)) / n_a
    se_a = rademacher_se(ha, iters) / n_a
    assert abs(fc2.a_trace - exact_a) < 5 * se_a
    assert exact_w > 10 * se_w and exact_a > 10 * se_a  # the check has teeth: traces are resolved
    assert s.hvp == iters and s.forward == 1 and s.backward == 1


def test_activation_hessian_is_block_diagonal_over_samples():
    """The premise of the per-sample normalisation of a_trace: in eval mode no sample sees another,
    so the Hessian w.r.t. a batch of activations has no blocks between samples."""
    m, x, y = tiny_case()
    _, ha, _ = exact_hessians(m, x, y)
    # the per-sample activation blocks are off the diagonal between samples: zero there
    n = x.shape[0]
    blocks = ha.reshape(n, 5, n, 5)
    off = blocks.clone()
    for i in range(n):
        off[i, :, i, :] = 0
    assert float(off.abs().max()) < 1e-12


def test_fisher_matches_per_sample_loop_float64():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(),
                      nn.Conv2d(3, 4, 3, groups=1, padding=0), nn.Flatten(),
                      nn.Linear(4 * 2 * 2, 3)).double()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    s = sensitivity(m, [(x, y)], bits=(4,), method="fisher")
    names = ["0", "2", "4"]
    w_ref = {n: 0.0 for n in names}
    a_ref = {n: 0.0 for n in names}
    for i in range(5):
        xi = x[i:i + 1].clone().requires_grad_(True)
        acts = {}
        hooks = [dict(m.named_modules())[n].register_forward_pre_hook(
            lambda mod, inp, n=n: acts.__setitem__(n, inp[0])) for n in names]
        loss = F.cross_entropy(m(xi), y[i:i + 1])
        for hk in hooks:
            hk.remove()
        ws = [dict(m.named_modules())[n].weight for n in names]
        grads = torch.autograd.grad(loss, ws + [acts[n] for n in names])
        for k, n in enumerate(names):
            w_ref[n] += float((grads[k] ** 2).sum()) / ws[k].numel() / 5
            a_ref[n] += float((grads[3 + k] ** 2).sum()) / acts[n][0].numel() / 5
    for n in names:
        assert s[n].w_trace == pytest.approx(w_ref[n], rel=1e-9)
        assert s[n].a_trace == pytest.approx(a_ref[n], rel=1e-9)
    assert s.forward == 1 and s.backward == 1 and s.hvp == 0


def test_fisher_grouped_conv_per_sample():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2, padding="same"), nn.Flatten(),
                      nn.Linear(4 * 5 * 5, 2)).double()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    s = sensitivity(m, [(x, y)], bits=(4,), method="fisher")
    ref = 0.0
    for i in range(3):
        m.zero_grad()
        F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]).backward()
        ref += float((m[0].weight.grad ** 2).sum()) / m[0].weight.numel() / 3
    assert s["0"].w_trace == pytest.approx(ref, rel=1e-9)


def test_perturbation_is_fixed_quantizer_error():
    m, x, y = tiny_case()
    s = sensitivity(m, [(x, y)], bits=(2, 3, 8), method="fisher")
    w = m.fc1.weight.detach()
    for b in (2, 3, 8):
        q = hwq.quant.get(f"fixed:{b}", role="weight")(w)
        assert s["fc1"].w_perturb[b] == pytest.approx(float(((q - w) ** 2).sum()), rel=1e-12)
        qa = hwq.quant.get(f"fixed:{b}", role="act").train()(x)
        ref = float(((qa - x) ** 2).sum()) / x.shape[0]
        assert s["fc1"].a_perturb[b] == pytest.approx(ref, rel=1e-12)
    assert s["fc1"].w_perturb[2] > s["fc1"].w_perturb[3] > s["fc1"].w_perturb[8] > 0
    # Omega = max(trace, 0) * perturbation
    l = s["fc2"]
    assert l.omega(3, 8) == pytest.approx(max(l.w_trace, 0) * l.w_perturb[3]
                                          + max(l.a_trace, 0) * l.a_perturb[8])


def test_perturbation_follows_the_quantizer_template():
    """With lsq templates, ||Q_b(W) - W||^2 is that of a fresh lsq quantizer (its initial step,
    per channel when asked) run on the tensor, as calibration runs it; not fixed:b's."""
    m, x, y = tiny_case()
    w = m.fc1.weight.detach()
    s = sensitivity(m, [(x, y)], bits=(3,), method="fisher",
                    weights={"name": "lsq", "per_channel": True}, acts="lsq")
    qw = hwq.quant.get({"name": "lsq", "bits": 3, "per_channel": True}, role="weight",
                       channels=w.shape[0]).double().train()
    qa = hwq.quant.get("lsq:3", role="act").double().train()
    with torch.no_grad():
        ew, ea = float(((qw(w) - w) ** 2).sum()), float(((qa(x) - x) ** 2).sum()) / x.shape[0]
    assert s["fc1"].w_perturb[3] == pytest.approx(ew, rel=1e-12)
    assert s["fc1"].a_perturb[3] == pytest.approx(ea, rel=1e-12)
    fixed = sensitivity(m, [(x, y)], bits=(3,), method="fisher")
    assert fixed["fc1"].w_perturb[3] != pytest.approx(s["fc1"].w_perturb[3], rel=1e-3)
    assert s.quantizers == {"weights": str({"name": "lsq", "per_channel": True}), "acts": "lsq"}
    with pytest.raises(ValueError, match="pow2"):
        sensitivity(m, [(x, y)], bits=(12,), weights="pow2")  # pow2 takes at most 8 bits


def test_sensitivity_round_trips_through_json():
    import json

    from hwq.search.sensitivity import Sensitivity
    m, x, y = tiny_case()
    s = sensitivity(m, [(x, y)], bits=(2, 4), method="fisher", acts="lsq")
    back = Sensitivity.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back["fc2"].omega(2, 4) == s["fc2"].omega(2, 4)
    with pytest.raises(ValueError, match="sensitivity record is not accepted"):
        Sensitivity.from_dict({"method": "fisher"})


def test_unresolved_traces_are_named():
    from hwq.search.sensitivity import LayerSensitivity, Sensitivity
    nan = float("nan")
    layers = [LayerSensitivity("a", 4, 2, 1.0, -0.1, 0.4, 0.1, {4: 1.0}, {4: 1.0}),  # acts: 1 SE
              LayerSensitivity("b", 4, 2, 0.5, 0.3, 0.1, 0.2, {4: 1.0}, {4: 1.0}),  # acts: 1.5 SE
              LayerSensitivity("c", 4, 2, 0.0, 0.0, nan, nan, {4: 1.0}, {4: 1.0})]  # no SE
    s = Sensitivity("hutchinson", (4,), layers, 8, 1, 2, 1, 1, 2, 0.1)
    assert s.unresolved() == ["a.acts", "b.acts"]
    assert s.unresolved(z=1.2) == ["a.acts"]
    assert "within 2 standard errors of 0" in s.table() and "a.acts, b.acts" in s.table()
    assert s["a"].omega(4, 4) == 1.0 * 1.0 + 0.0  # the negative act trace counts as 0


def test_qat_model_uses_latent_float_weights():
    m, x, y = tiny_case()
    q = hwq.quantize(Tiny().double(), weights="fixed:2", acts="fixed:2")
    q.load_state_dict(m.state_dict(), strict=False)
    a = sensitivity(m, [(x, y)], bits=(4,), method="fisher")
    b = sensitivity(q, [(x, y)], bits=(4,), method="fisher")
    assert b["fc1"].w_trace == pytest.approx(a["fc1"].w_trace, rel=1e-12)
    assert isinstance(q.fc1.weight_quant, hwq.quant.Quantizer) and q.fc1.w_bits == 2  # untouched


def test_shared_input_is_differentiated_per_layer():
    """Two layers reading the same tensor (a residual shortcut): each layer's activation
    curvature is that of its own branch, not of the shared tensor."""

    torch.manual_seed(0)
    m = Two().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    s = sensitivity(m, [(x, y)], bits=(4,), method="fisher")
    xi = x.clone().requires_grad_(True)
    ga = torch.autograd.grad(F.cross_entropy(m.a(xi) + 3 * m.b(x), y, reduction="sum"), xi)[0]
    assert s["a"].a_trace == pytest.approx(float((ga ** 2).sum()) / 4 / 3, rel=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="newton"), "method='newton' is not accepted"),
    (dict(iters=0), "iters=0 is not accepted"),
    (dict(bits=(1,)), "bits=1 is not accepted"),
    (dict(bits=()), "bits is empty"),
])
def test_bad_arguments(kwargs, match):
    m, x, y = tiny_case()
    with pytest.raises(ValueError, match=match):
        sensitivity(m, [(x, y)], **kwargs)
    with pytest.raises(ValueError, match="batches"):
        sensitivity(m, [x])


def _hand_loss(m, batches, layer=None, w=None, a_bits=None):
    """Mean cross-entropy over ``batches`` (weighted by size) of a copy of ``m`` whose ``layer``
    has weights ``w`` and/or its input through a fresh fixed:a_bits quantizer per batch: the
    method "loss" written out by hand, without hooks."""
    import copy
    net = copy.deepcopy(m).eval()
    mod = getattr(net, layer) if layer else None
    if w is not None:
        with torch.no_grad():
            mod.weight.copy_(w)
    if a_bits is not None:
        inner = mod.forward
        mod.forward = lambda t: inner(hwq.quant.get(f"fixed:{a_bits}", role="act").double()
                                      .train()(t))
    total = n = 0
    with torch.no_grad():
        for x, y in batches:
            total += float(F.cross_entropy(net(x), y)) * x.shape[0]
            n += x.shape[0]
    return total / n


def test_loss_method_matches_a_hand_loop_float64():
    """Method "loss": Omega is twice the measured rise of the mean loss with only that tensor
    quantized; checked against the model copied and changed by hand, over two batches of
    different sizes, in float64."""
    torch.manual_seed(3)
    m = Tiny().double()
    batches = [(torch.randn(n, 4, dtype=torch.float64), torch.randint(0, 3, (n,))) for n in (6, 4)]
    s = sensitivity(m, batches, bits=(2, 4), method="loss")
    base = _hand_loss(m, batches)
    for layer in ("fc1", "fc2"):
        w = getattr(m, layer).weight.detach()
        for b in (2, 4):
            qw = hwq.quant.get(f"fixed:{b}", role="weight")(w)
            ref_w = 2 * (_hand_loss(m, batches, layer, w=qw) - base)
            ref_a = 2 * (_hand_loss(m, batches, layer, a_bits=b) - base)
            assert s[layer].w_rise[b] == pytest.approx(ref_w, rel=1e-9, abs=1e-12)
            assert s[layer].a_rise[b] == pytest.approx(ref_a, rel=1e-9, abs=1e-12)
            assert s[layer].omega(b, b) == pytest.approx(max(ref_w, 0) + max(ref_a, 0))
    assert math.isnan(s["fc1"].w_trace) and s.backward == 0 and s.hvp == 0
    assert s.forward == 2 + 2 * 2 * 2 * 2  # the float pass, then layers x roles x bits per batch
    assert "loss on 10 samples in 2 batch(es)" in s.cost()
    assert "fc2" in s.table()
    assert all(getattr(m, l).weight.requires_grad for l in ("fc1", "fc2"))  # model untouched


def test_loss_method_round_trips_and_allocates():
    """A "loss" sensitivity survives JSON, and hwq.search.budget allocates with it (digits
    model, size budget)."""
    import json

    from hwq.search.sensitivity import Sensitivity
    torch.manual_seed(3)
    m = Tiny().double()
    w_before = m.fc1.weight.detach().clone()
    batches = [(torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,)))]
    s = sensitivity(m, batches, bits=(2, 8), method="loss")
    assert torch.equal(m.fc1.weight, w_before)  # weights restored on the caller's model
    text = json.dumps(s.to_dict())
    back = Sensitivity.from_dict(json.loads(text))
    assert json.dumps(back.to_dict()) == text  # NaN traces: compare the records, not ==
    assert back["fc1"].omega(2, 8) == s["fc1"].omega(2, 8)
    assert math.isnan(s["fc1"].w_rise_se[2])  # one batch: no standard error
    assert s.unresolved() == []
    res = hwq.search.budget(m.float(), [(x.float(), y) for x, y in batches], "size=0.6x",
                            arch=None, w_bits=(2, 8), pinned=None, method="loss")
    assert res.sensitivity.method == "loss"
    assert res.totals["size"] <= res.limits["size"] == pytest.approx(0.6 * res.uniform8["size"])
    # the allocation minimises the summed measured rises: brute force over the 4 x 4 plans
    best = min(((p1, p2) for p1 in res.candidates["fc1"] for p2 in res.candidates["fc2"]
                if res.costs["fc1"][p1]["size"] + res.costs["fc2"][p2]["size"]
                <= res.limits["size"]),
               key=lambda p: res.omega("fc1", p[0]) + res.omega("fc2", p[1]))
    assert res.objective == pytest.approx(res.omega("fc1", best[0]) + res.omega("fc2", best[1]))


def test_loss_method_sees_each_branch_of_a_shared_input():
    """The activation perturbation of method "loss" reaches only the layer measured, also when
    another layer reads the same tensor (a residual shortcut)."""

    torch.manual_seed(0)
    m = Two().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    s = sensitivity(m, [(x, y)], bits=(2,), method="loss")
    qx = hwq.quant.get("fixed:2", role="act").double().train()(x)
    with torch.no_grad():
        base = float(F.cross_entropy(m(x), y))
        only_a = float(F.cross_entropy(m.a(qx) + 3 * m.b(x), y))
    assert s["a"].a_rise[2] == pytest.approx(2 * (only_a - base), rel=1e-9)


def test_loss_rises_within_two_standard_errors_are_named():
    """Method "loss": a rise at the fewest bits within 2 standard errors of 0 is noise, named as
    the trace methods name theirs, with the loss method's remedy."""
    from hwq.search.sensitivity import LayerSensitivity, Sensitivity
    nan = float("nan")
    p = {2: 1.0, 4: 0.5}
    layers = [LayerSensitivity("a", 4, 2, nan, nan, nan, nan, p, p, w_rise={2: 0.3, 4: 0.01},
                               a_rise={2: 0.01, 4: -0.02}, w_rise_se={2: 0.1, 4: 0.1},
                               a_rise_se={2: 0.02, 4: 0.1})]
    s = Sensitivity("loss", (2, 4), layers, 8, 2, 0, 10, 0, 0, 0.1)
    assert s.unresolved() == ["a.acts"]  # 0.3 is 3 SE (resolved), 0.01 is 0.5 SE
    assert "more samples" in s.table()
    assert s["a"].omega(2, 4) == 0.3 + 0.0  # the fall at 4 bits counts as 0

"""The fused C++ fake-quantization kernels against the torch path: forward values and input
gradients bit-identical, LSQ's step gradient equal up to summation order; on random shapes,
strides and values, NaN and Inf included."""
import pytest
import torch
from hypothesis import given, strategies as st

from hwq import quant
from hwq.quant import fused

pytestmark = [pytest.mark.skipif(not fused.AVAILABLE, reason="hwq._C not built"),
              pytest.mark.filterwarnings("ignore:binary activation quantizer got")]


def run(q, x, up):
    x = x.clone().requires_grad_()
    y = q(x)
    y.backward(up)
    steps = [p.grad.clone() for p in q.parameters()]
    for p in q.parameters():
        p.grad = None
    return y.detach(), x.grad, steps


def both(make, x, up):
    q1, q2 = make(), make()
    q1.load_state_dict(q2.state_dict())
    with fused.disabled():
        ref = run(q1, x, up)
    assert fused.usable(x)
    return ref, run(q2, x, up)


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, seed=st.integers(0, 2**31), bits=st.integers(2, 16),
       spec=st.sampled_from(["fixed", "lsq"]), role=st.sampled_from(["weight", "act"]),
       channels_last=st.booleans(), special=st.booleans())
def test_fake_quant_matches_torch_path(shape, seed, bits, spec, role, channels_last, special):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.rand((), generator=g) * 10
    up = torch.randn(shape, generator=g)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    make = lambda: quant.get(f"{spec}:{bits}", role=role)  # noqa: E731
    q = make()
    q(x)  # set ranges / steps from finite data first
    special = special and role == "act"  # weights refuse non-finite values (test_nonfinite)
    if special and x.numel() > 2:
        flat = x.flatten()
        flat[:3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
        x = flat.reshape(shape)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    def make_ready():
        m = make()
        m.load_state_dict(q.state_dict())
        m.eval()  # the stored range: no new range from the non-finite batch
        return m
    (y1, dx1, s1), (y2, dx2, s2) = both(make_ready, x, up)
    assert torch.equal(y1.isnan(), y2.isnan())
    assert torch.equal(y1.nan_to_num(), y2.nan_to_num())
    assert torch.equal(dx1.nan_to_num(), dx2.nan_to_num())
    if not special:
        for a, b in zip(s1, s2):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@given(shape=shapes, seed=st.integers(0, 2**31), approx=st.booleans())
def test_sign_matches_torch_path(shape, seed, approx):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 2
    x.view(-1)[0] = 0.0
    up = torch.randn(shape, generator=g)
    make = lambda: quant.get("binary", role="act", grad="approx" if approx else "ste")  # noqa: E731
    (y1, dx1, _), (y2, dx2, _) = both(make, x, up)
    assert torch.equal(y1, y2) and torch.equal(dx1, dx2)


def test_non_dense_input_takes_the_torch_path():
    x = torch.randn(4, 8)[:, ::2]
    assert not fused.usable(x)
    y = quant.get("fixed:4", role="act")(x)
    assert y.shape == x.shape


def test_expanded_gradient_is_handled():
    q = quant.get("lsq:4", role="act")
    x = torch.randn(3, 5, requires_grad=True)
    q(x).sum().backward()  # the incoming gradient is an expanded (stride 0) tensor
    with fused.disabled():
        x2 = x.detach().clone().requires_grad_()
        q(x2).sum().backward()
    assert torch.equal(x.grad, x2.grad)

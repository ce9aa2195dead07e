"""Forward values lie exactly on each quantizer's grid, on random tensors (hypothesis)."""
import math

import torch
from hypothesis import given, strategies as st

from hwq import quant

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**31 - 1)
log_scales = st.floats(-6, 6)


def rand(shape, seed, log_scale, nonneg=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2.0 ** log_scale
    return x.abs() if nonneg else x


def check_codes(q, x, lo, hi):
    y = q(x)
    codes, scale = q.quantize_int(x)
    assert torch.equal(codes, codes.round()), "codes are integers"
    assert codes.min() >= lo and codes.max() <= hi
    assert torch.equal(y, codes * scale), "forward == codes * scale"
    assert codes.unique().numel() <= hi - lo + 1
    if scale.numel() == 1:  # one scale: at most 2^b distinct values
        assert y.unique().numel() <= hi - lo + 1
    return y, codes, scale


@given(shape=shapes, seed=seeds, ls=log_scales, bits=st.integers(2, 16),
       per_channel=st.booleans())
def test_fixed_weights_on_pow2_grid(shape, seed, ls, bits, per_channel):
    x = rand(shape, seed, ls)
    q = quant.get(f"fixed:{bits}", per_channel=per_channel).double()
    y, codes, step = check_codes(q, x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    # the step is a power of two: mantissa exactly 0.5
    assert torch.all(torch.frexp(step)[0] == 0.5)
    # the integer bits cover max|x| (per dim-0 row when per channel): m < 2^I = 2^(b-1) * step
    m = x.abs().reshape(x.shape[0], -1).amax(1) if per_channel else x.abs().amax()
    m = m.reshape(step.shape) if per_channel else m
    assert torch.all(m < 2 ** (bits - 1) * step)
    # rounding error at most half a step inside the grid; the top (two's complement asymmetry,
    # 2^I - step < m < 2^I) saturates by less than one step
    err = (y - x).abs()
    inside = x.abs() <= (2 ** (bits - 1) - 1) * step
    assert torch.all(err[inside] <= (step / 2).expand_as(x)[inside])
    assert torch.all(err < step)


@given(shape=shapes, seed=seeds, ls=log_scales, bits=st.integers(2, 16), relu=st.booleans())
def test_fixed_acts_signedness_from_first_batch(shape, seed, ls, bits, relu):
    x = rand(shape, seed, ls, nonneg=relu)
    q = quant.get(f"fixed:{bits}", role="act").double()
    signed = bool((x < 0).any())
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    check_codes(q, x, lo, hi)
    assert int(q.signed) == int(signed)


@given(shape=shapes, seed=seeds, ls=log_scales, bits=st.integers(2, 16),
       per_channel=st.booleans(), act=st.booleans())
def test_lsq_on_grid(shape, seed, ls, bits, per_channel, act):
    x = rand(shape, seed, ls, nonneg=act)
    role = "act" if act else "weight"
    q = quant.get(f"lsq:{bits}", role=role, channels=shape[0],
                  per_channel=per_channel and not act).double()
    lo, hi = (0, 2 ** bits - 1) if act else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    check_codes(q, x, lo, hi)


@given(shape=shapes, seed=seeds, ls=log_scales, bits=st.integers(2, 16),
       alpha=st.floats(0.01, 100))
def test_pact_on_grid(shape, seed, ls, bits, alpha):
    x = rand(shape, seed, ls)
    q = quant.get(f"pact:{bits}", role="act", alpha_init=alpha).double()
    y, codes, step = check_codes(q, x, 0, 2 ** bits - 1)
    # the top level is n * (alpha / n): alpha up to a rounding of the float product
    assert torch.all(y >= 0) and torch.all(y <= q.alpha * (1 + 4 * torch.finfo(y.dtype).eps))


@given(shape=shapes, seed=seeds, ls=log_scales, scale=st.sampled_from(["none", "channel", "tensor"]))
def test_binary_weights(shape, seed, ls, scale):
    x = rand(shape, seed, ls)
    x.view(-1)[0] = 0.0  # sign(0) must be +1
    q = quant.get("binary", scale=scale).double()
    y, codes, alpha = check_codes(q, x, -1, 1)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert codes.view(-1)[0] == 1.0
    if scale == "none":
        assert set(y.unique().tolist()) <= {-1.0, 1.0}
    elif scale == "tensor":
        assert torch.allclose(alpha, x.abs().mean())


@given(shape=shapes, seed=seeds, ls=log_scales, per_channel=st.booleans())
def test_ternary_three_levels(shape, seed, ls, per_channel):
    x = rand(shape, seed, ls)
    q = quant.get("ternary", per_channel=per_channel).double()
    y, codes, alpha = check_codes(q, x, -1, 1)
    if not per_channel or x.dim() == 1:
        assert y.unique().numel() <= 3
        # the TWN threshold: zeros exactly where |w| <= 0.7 mean|w|
        assert torch.equal(codes == 0, x.abs() <= 0.7 * x.abs().mean())


@given(shape=shapes, seed=seeds, ls=log_scales, bits=st.integers(2, 8), per_channel=st.booleans())
def test_pow2_values_are_powers_of_two(shape, seed, ls, bits, per_channel):
    x = rand(shape, seed, ls)
    q = quant.get(f"pow2:{bits}", per_channel=per_channel).double()
    y = q(x)
    nz = y[y != 0].abs()
    mant, _ = torch.frexp(nz)
    assert torch.all(mant == 0.5), "every non-zero value is +/- a power of two"
    # at most 2^(b-1) - 1 magnitudes (per channel: per row) and the sign agrees with x
    rows = y.reshape(y.shape[0], -1) if per_channel and y.dim() > 1 else y.reshape(1, -1)
    for r in rows:
        assert r[r != 0].abs().unique().numel() <= 2 ** (bits - 1) - 1
    assert torch.all((y == 0) | (torch.sign(y) == torch.sign(x)))
    codes, scale = q.quantize_int(x)
    assert torch.equal(y, codes * scale)


def test_pow2_log_domain_rounding_hand_worked():
    w = torch.tensor([0.9, -0.3, 0.1, 0.02, 0.0, 0.7])
    # e_top = round(log2 0.9) = 0; three exponents 0, -1, -2; log2 0.3 = -1.74 -> -2;
    # log2 0.1 = -3.3 -> below -2 -> 0; log2 0.7 = -0.51 -> -1
    assert torch.equal(quant.get("pow2:3")(w), torch.tensor([1.0, -0.25, 0, 0, 0, 0.5]))


def test_fixed_hand_worked():
    x = torch.tensor([0.3, -0.9, 0.05, 0.6])
    # max 0.9 needs 0 integer bits; 4-bit signed: 3 fraction bits, step 1/8
    assert torch.equal(quant.get("fixed:4")(x), torch.tensor([0.25, -0.875, 0.0, 0.625]))
    # 1.5 needs one integer bit: step 1/4; 1.5 itself is on the grid, 0.375 ties to even (0.5)
    assert torch.equal(quant.get("fixed:4")(torch.tensor([1.5, 0.375, -1.6])),
                       torch.tensor([1.5, 0.5, -1.5]))


def test_ternary_hand_worked():
    w = torch.tensor([0.9, -0.05, -0.6, 0.2])
    # mean|w| = 0.4375, threshold 0.30625: keep 0.9 and -0.6, alpha = 0.75
    assert torch.equal(quant.get("ternary")(w), torch.tensor([0.75, 0.0, -0.75, 0.0]))


def test_float_passthrough_is_identity():
    x = torch.randn(3, 4)
    assert quant.get(None)(x) is x
    assert quant.get("float", role="act").bits == 32
    assert math.isclose(quant.get(None).bits, 32)

"""The pure-torch references (hwq.kernels.reference) against float64 torch convolutions, and their
packed layouts against hand-worked bit positions. Everything else in tests/kernels is checked
against these references."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from hwq.kernels import reference as R


@st.composite
def conv_params(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 40))
    og = draw(st.integers(1, 12))
    k = (draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 3, 5, 7])))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    lo_h = max(1, dilation[0] * (k[0] - 1) + 1 - 2 * padding[0])
    lo_w = max(1, dilation[1] * (k[1] - 1) + 1 - 2 * padding[1])
    h = draw(st.integers(lo_h, lo_h + 8))
    w = draw(st.integers(lo_w, lo_w + 8))
    n = draw(st.integers(1, 2))
    return dict(n=n, cin=cg * groups, cout=og * groups, h=h, w=w, k=k, groups=groups,
                kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
                a_bits=draw(st.integers(1, 8)), w_bits=draw(st.integers(1, 8)),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


@settings(max_examples=100)
@given(conv_params())
def test_binary_conv2d_ref_equals_float64_conv(p):
    g = torch.Generator().manual_seed(p["seed"])
    x = torch.randint(0, 2, (p["n"], p["cin"], p["h"], p["w"]), generator=g).double() * 2 - 1
    w = torch.randint(0, 2, (p["cout"], p["cin"] // p["groups"]) + p["k"], generator=g).double() * 2 - 1
    got = R.binary_conv2d_ref(x, w, **p["kw"])
    assert got.dtype == torch.int64
    assert torch.equal(got.double(), F.conv2d(x, w, **p["kw"]))


@settings(max_examples=100)
@given(conv_params())
def test_bitserial_conv2d_ref_equals_float64_conv(p):
    g = torch.Generator().manual_seed(p["seed"])
    a, b = p["a_bits"], p["w_bits"]
    x = torch.randint(0, 2 ** a, (p["n"], p["cin"], p["h"], p["w"]), generator=g).double()
    w = torch.randint(-2 ** (b - 1), 2 ** (b - 1), (p["cout"], p["cin"] // p["groups"]) + p["k"],
                      generator=g).double()
    got = R.bitserial_conv2d_ref(x, w, a, b, **p["kw"])
    assert torch.equal(got.double(), F.conv2d(x, w, **p["kw"]))


@pytest.mark.parametrize("a_bits,w_bits", [(1, 1), (2, 2), (8, 8), (3, 5)])
def test_linear_refs_equal_float64_linear(a_bits, w_bits):
    g = torch.Generator().manual_seed(a_bits * 10 + w_bits)
    x = torch.randint(0, 2, (3, 4, 130), generator=g).double() * 2 - 1
    w = torch.randint(0, 2, (7, 130), generator=g).double() * 2 - 1
    assert torch.equal(R.binary_linear_ref(x, w).double(), F.linear(x, w))
    x = torch.randint(0, 2 ** a_bits, (5, 200), generator=g).double()
    w = torch.randint(-2 ** (w_bits - 1), 2 ** (w_bits - 1), (9, 200), generator=g).double()
    assert torch.equal(R.bitserial_linear_ref(x, w, a_bits, w_bits).double(), F.linear(x, w))


def test_one_bit_weight_is_two_complement():
    # A 1-bit two's-complement weight has the values 0 and -1: bit 1 carries -2^0.
    x = torch.tensor([[[[3.0]]]])
    assert R.bitserial_conv2d_ref(x, torch.tensor([[[[-1.0]]]]), 2, 1).item() == -3
    assert R.bitserial_conv2d_ref(x, torch.tensor([[[[0.0]]]]), 2, 1).item() == 0
    assert R.bitserial_coefficients(2, 3) == [[1, 2, -4], [2, 4, -8]]


def test_binary_zero_padding_counts_nothing():
    # All +1 image and all +1 3x3 filter, padding 1: a corner output sees 4 taps inside -> 4.
    x = torch.ones(1, 5, 4, 4)
    w = torch.ones(1, 5, 3, 3)
    y = R.binary_conv2d_ref(x, w, padding=1)
    assert y[0, 0, 0, 0].item() == 4 * 5 and y[0, 0, 1, 1].item() == 9 * 5 and y[0, 0, 0, 1] == 6 * 5


def test_activation_layout_hand_worked():
    # Channel c of pixel (h, w) is bit c % 64 of word c // 64; bit 1 means -1 (binary).
    x = torch.ones(1, 130, 2, 3)
    x[0, 0, 1, 2] = -1
    x[0, 65, 0, 1] = -1
    x[0, 129, 1, 0] = -1
    p = R.pack_activations_ref(x, None)
    assert p.shape == (1, 2, 3, 1, 1, 3)
    expected = torch.zeros_like(p)
    expected[0, 1, 2, 0, 0, 0] = 1
    expected[0, 0, 1, 0, 0, 1] = 2
    expected[0, 1, 0, 0, 0, 2] = 2
    assert torch.equal(p, expected)
    # Unsigned 3-bit 5 = 0b101: planes 0 and 2; group 1 starts its own word.
    x = torch.zeros(1, 4, 1, 1)
    x[0, 3, 0, 0] = 5
    p = R.pack_activations_ref(x, 3, groups=2)
    assert p.shape == (1, 1, 1, 2, 3, 1)
    assert p[0, 0, 0, 1, :, 0].tolist() == [2, 0, 2] and int(p[0, 0, 0, 0].abs().sum()) == 0


def test_bit_63_round_trips():
    x = torch.ones(2, 64, 1, 1)
    x[:, 63] = -1
    p = R.pack_activations_ref(x, None)
    assert p.flatten().tolist() == [-2 ** 63, -2 ** 63]
    assert torch.equal(R.unpack_activations_ref(p, 64, None), x)


def test_weight_layout_hand_worked():
    # Output channel o is lane o % 8 of panel o // 8; word k = (kh * KW + kw) * Cwg + c // 64;
    # signed 2-bit -1 = 0b11 sets both planes; panels are padded to a multiple of 4.
    w = torch.zeros(10, 3, 2, 2)
    w[9, 2, 1, 0] = -1
    p = R.pack_weights_ref(w, 2)
    assert p.shape == (1, 2, 4, 4, 8)
    nz = p.nonzero().tolist()
    assert nz == [[0, 0, 1, 2, 1], [0, 1, 1, 2, 1]]
    assert p[0, 0, 1, 2, 1].item() == 4


@settings(max_examples=60)
@given(st.integers(1, 200), st.integers(1, 4), st.sampled_from([None, 1, 3, 8]),
       st.integers(0, 2 ** 31 - 1))
def test_pack_unpack_round_trip(c_per_group, groups, bits, seed):
    g = torch.Generator().manual_seed(seed)
    c = c_per_group * groups
    if bits is None:
        x = torch.randint(0, 2, (2, c, 3, 2), generator=g).float() * 2 - 1
        w = torch.randint(0, 2, (groups * 3, c_per_group, 3, 1), generator=g).float() * 2 - 1
    else:
        x = torch.randint(0, 2 ** bits, (2, c, 3, 2), generator=g).float()
        w = torch.randint(-2 ** (bits - 1), 2 ** (bits - 1), (groups * 3, c_per_group, 3, 1),
                          generator=g).float()
    assert torch.equal(R.unpack_activations_ref(R.pack_activations_ref(x, bits, groups), c, bits), x)
    pw = R.pack_weights_ref(w, bits, groups)
    assert torch.equal(R.unpack_weights_ref(pw, groups * 3, c_per_group, (3, 1), bits), w)

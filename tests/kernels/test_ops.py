"""The C++ kernels (torch.ops.hwq.* through hwq.kernels) bit-exact against the pure-torch
references on thousands of seeded random shapes, every kernel path (ISA) forced in turn and
compared with the default one, and the input forms the ops must handle."""
import warnings

import pytest
import torch
from torch.nn import functional as F

import hwq.kernels as K
from hwq.kernels import _ext
from hwq.kernels import reference as R

from .cases import binary_tensors, bitserial_tensors, conv_cases, linear_cases

needs_ext = pytest.mark.skipif(not K.HAVE_EXTENSION, reason="hwq._C is not built")
N_CONV = 2000    # cases per conv op per run
N_LINEAR = 1000  # cases per linear op per run


@pytest.fixture
def one_thread():
    # The bulk loops run thousands of tiny problems, where a 2-thread pool on a shared 2-core
    # machine only adds synchronisation; threading is exercised by test_threads_agree.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _other_isas():
    return [i for i in K.available_isas() if i != K.current_isa()]


def _run_conv(binary: bool, cases, seed: int):
    """(case, x, w, result) for every case on the default path, checked against the reference."""
    gen = torch.Generator().manual_seed(seed)
    done = []
    for c in cases:
        if binary:
            x, w = binary_tensors(c, gen)
            y = K.binary_conv2d(x, w, **c.conv_kwargs())
            ref = R.binary_conv2d_ref(x, w, **c.conv_kwargs())
        else:
            x, w = bitserial_tensors(c, gen)
            y = K.bitserial_conv2d(x, w, c.a_bits, c.w_bits, **c.conv_kwargs())
            ref = R.bitserial_conv2d_ref(x, w, c.a_bits, c.w_bits, **c.conv_kwargs())
        assert y.dtype == torch.int32, c
        assert torch.equal(y.long(), ref), c
        done.append((c, x, w, y))
    return done


def _check_other_isas(binary: bool, done):
    others = _other_isas()
    for isa in others:
        with K.use_isa(isa):
            for c, x, w, y in done:
                if binary:
                    got = K.binary_conv2d(x, w, **c.conv_kwargs())
                else:
                    got = K.bitserial_conv2d(x, w, c.a_bits, c.w_bits, **c.conv_kwargs())
                assert torch.equal(got, y), (isa, c)
    return others


@needs_ext
def test_binary_conv2d_matches_reference_on_every_path(one_thread):
    cases = conv_cases(N_CONV, seed=1, max_cost=800_000)
    # The shrinking keeps the ranges represented, not just small shapes.
    assert sum(c.cin // c.groups > 64 for c in cases) > N_CONV // 40
    assert sum(max(c.h, c.w) >= 25 for c in cases) > N_CONV // 40
    assert {c.k[0] for c in cases} == {1, 3, 5, 7} and {c.groups for c in cases} == {1, 2, 3, 4}
    done = _run_conv(True, cases, seed=11)
    _check_other_isas(True, done)


@needs_ext
def test_bitserial_conv2d_matches_reference_on_every_path(one_thread):
    cases = conv_cases(N_CONV, seed=2, max_cost=1_000_000)
    assert {(c.a_bits, c.w_bits) for c in cases} == {(a, b) for a in range(1, 9) for b in range(1, 9)}
    done = _run_conv(False, cases, seed=12)
    _check_other_isas(False, done)


@needs_ext
@pytest.mark.parametrize("binary", [True, False])
def test_linear_matches_reference_on_every_path(binary, one_thread):
    gen = torch.Generator().manual_seed(13)
    runs = []
    for c in linear_cases(N_LINEAR, seed=3 if binary else 4):
        if binary:
            x = torch.randint(0, 2, (c.n, c.cin), generator=gen).float() * 2 - 1
            w = torch.randint(0, 2, (c.cout, c.cin), generator=gen).float() * 2 - 1
            y, ref = K.binary_linear(x, w), R.binary_linear_ref(x, w)
        else:
            x = torch.randint(0, 2 ** c.a_bits, (c.n, c.cin), generator=gen).float()
            half = 2 ** (c.w_bits - 1)
            w = torch.randint(-half, half, (c.cout, c.cin), generator=gen).float()
            y = K.bitserial_linear(x, w, c.a_bits, c.w_bits)
            ref = R.bitserial_linear_ref(x, w, c.a_bits, c.w_bits)
        assert y.shape == (c.n, c.cout) and torch.equal(y.long(), ref), c
        runs.append((c, x, w, y))
    for isa in _other_isas():
        with K.use_isa(isa):
            for c, x, w, y in runs:
                got = (K.binary_linear(x, w) if binary else
                       K.bitserial_linear(x, w, c.a_bits, c.w_bits))
                assert torch.equal(got, y), (isa, c)


@needs_ext
def test_resnet_sized_layers_match_float64_conv():
    # Channel counts of real networks (multiples of 64, words fully used) and odd ones, bigger than
    # the random cases; checked against float64 conv2d (exact here).
    gen = torch.Generator().manual_seed(5)
    for cin, cout, hw, stride in [(64, 64, 16, 1), (128, 256, 9, 2), (320, 96, 7, 1), (3, 64, 20, 2)]:
        x = torch.randint(0, 2, (2, cin, hw, hw), generator=gen).float() * 2 - 1
        w = torch.randint(0, 2, (cout, cin, 3, 3), generator=gen).float() * 2 - 1
        ref = F.conv2d(x.double(), w.double(), stride=stride, padding=1)
        assert torch.equal(K.binary_conv2d(x, w, stride=stride, padding=1).double(), ref)
        xa = torch.randint(0, 16, (2, cin, hw, hw), generator=gen).float()
        wa = torch.randint(-8, 8, (cout, cin, 3, 3), generator=gen).float()
        ref = F.conv2d(xa.double(), wa.double(), stride=stride, padding=1)
        assert torch.equal(K.bitserial_conv2d(xa, wa, 4, 4, stride=stride, padding=1).double(), ref)


@needs_ext
@pytest.mark.parametrize("a_bits", [None, 1, 3, 8])
def test_pack_ops_match_reference_layout(a_bits):
    gen = torch.Generator().manual_seed(6)
    for c, groups in [(1, 1), (64, 1), (130, 2), (300, 3), (7, 7)]:
        if a_bits is None:
            x = torch.randn(3, c, 5, 4, generator=gen)  # binary packing is the sign, sign(0) = +1
            x[0, 0, 0, 0] = 0.0
            w = torch.randn(2 * groups, c // groups, 3, 2, generator=gen)
        else:
            x = torch.randint(0, 2 ** a_bits, (3, c, 5, 4), generator=gen).float()
            half = 2 ** (a_bits - 1)
            w = torch.randint(-half, half, (2 * groups, c // groups, 3, 2), generator=gen).float()
        px = K.pack_activations(x, a_bits, groups)
        assert torch.equal(px.data, R.pack_activations_ref(x, a_bits, groups))
        pw = K.pack_weights(w, a_bits, groups)
        assert torch.equal(pw.data, R.pack_weights_ref(w, a_bits, groups))
        if a_bits is not None:
            assert torch.equal(px.unpack(), x) and torch.equal(pw.unpack(), w)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.uint8, torch.int32, torch.int64])
def test_value_dtypes_give_the_same_sums(dtype):
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(0, 8, (2, 20, 6, 6), generator=gen).float()
    w = torch.randint(-4, 4, (5, 20, 3, 3), generator=gen).float()
    want = K.bitserial_conv2d(x, w, 3, 3, padding=1)
    if dtype == torch.uint8:
        got = K.bitserial_conv2d(x.to(dtype), w, 3, 3, padding=1)
    else:
        got = K.bitserial_conv2d(x.to(dtype), w.to(dtype), 3, 3, padding=1)
    assert torch.equal(got, want)


@needs_ext
def test_channels_last_and_non_contiguous_inputs_are_handled():
    gen = torch.Generator().manual_seed(8)
    x = torch.randint(0, 2, (3, 70, 9, 8), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (33, 70, 3, 3), generator=gen).float() * 2 - 1
    want = R.binary_conv2d_ref(x, w, padding=1)
    variants = [x.to(memory_format=torch.channels_last),
                torch.stack([x, -x], dim=4).flatten(3)[..., ::2],  # strided in W
                x.permute(0, 1, 3, 2).contiguous().transpose(2, 3)]  # transposed H/W strides
    for xv in variants:
        assert torch.equal(xv, x)
        assert torch.equal(K.binary_conv2d(xv, w, padding=1).long(), want)
        assert torch.equal(K.binary_conv2d(x, w.to(memory_format=torch.channels_last),
                                           padding=1).long(), want)
    y = K.binary_conv2d(x, w, padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last)  # written NHWC, no copy


@needs_ext
def test_threads_agree():
    # Several row blocks per thread, the packed-sign output (words shared by channels of all
    # groups) included.
    gen = torch.Generator().manual_seed(15)
    x = torch.randint(0, 2, (4, 96, 14, 14), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (100, 48, 3, 3), generator=gen).float() * 2 - 1
    px, pw = K.pack_activations(x, groups=2), K.pack_weights(w, groups=2)
    args = (px.data, pw.data, 96, 100, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 2, None)
    bias = torch.randn(100, generator=gen) * 10
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append([torch.ops.hwq.conv2d_packed(*args, bias, mode) for mode in (1, 2)])
            outs[-1].append(K.binary_conv2d(x, w, padding=1, groups=2))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert torch.equal(outs[0][2].long(), R.binary_conv2d_ref(x, w, padding=1, groups=2))


@needs_ext
def test_empty_batch():
    x = torch.ones(0, 10, 5, 5)
    w = torch.ones(4, 10, 3, 3)
    assert K.binary_conv2d(x, w, padding=1).shape == (0, 4, 5, 5)
    assert K.bitserial_conv2d(x, w.neg(), 2, 2, stride=2).shape == (0, 4, 2, 2)
    assert K.binary_linear(torch.ones(0, 10), torch.ones(3, 10)).shape == (0, 3)


@needs_ext
def test_packed_inputs_and_bias():
    gen = torch.Generator().manual_seed(9)
    x = torch.randint(0, 4, (2, 16, 5, 5), generator=gen).float()
    w = torch.randint(-2, 2, (6, 8, 3, 3), generator=gen).float()
    ref = R.bitserial_conv2d_ref(x, w, 2, 2, padding=1, groups=2)
    px, pw = K.pack_activations(x, 2, groups=2), K.pack_weights(w, 2, groups=2)
    assert torch.equal(K.bitserial_conv2d(px, pw, 2, 2, padding=1, groups=2).long(), ref)
    ib = torch.arange(6, dtype=torch.int32)
    y = K.bitserial_conv2d(x, pw, 2, 2, bias=ib, padding=1, groups=2)
    assert y.dtype == torch.int32 and torch.equal(y.long(), ref + ib.view(1, -1, 1, 1))
    fb = torch.full((6,), 0.5)
    y = K.bitserial_conv2d(px, w, 2, 2, bias=fb, padding=1, groups=2)
    assert y.dtype == torch.float32 and torch.equal(y, ref.float() + 0.5)


@needs_ext
def test_fused_epilogue_and_packed_sign_output():
    # out_mode 1: sum * scale + bias in float32; out_mode 2: its sign bits packed for a following
    # binary layer (bit 1 = negative; exactly zero counts as +1).
    gen = torch.Generator().manual_seed(10)
    x = torch.randint(0, 2, (2, 40, 6, 6), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (70, 40, 3, 3), generator=gen).float() * 2 - 1
    sums = R.binary_conv2d_ref(x, w, padding=1).float()
    scale = torch.randn(70, generator=gen)
    bias = torch.randint(-20, 20, (70,), generator=gen).float()
    px, pw = K.pack_activations(x), K.pack_weights(w)
    args = (px.data, pw.data, 40, 70, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1)
    y = torch.ops.hwq.conv2d_packed(*args, scale, bias, 1)
    want = sums * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    assert torch.equal(y, want)
    z = torch.ops.hwq.conv2d_packed(*args, None, -sums[0, :, 0, 0], 2)  # some exact zeros
    signs = torch.where((sums - sums[0, :, 0, 0].view(1, -1, 1, 1)) < 0, -1.0, 1.0)
    assert torch.equal(z, R.pack_activations_ref(signs, None))


@needs_ext
def test_relu_epilogue_is_float_epilogue_then_torch_relu_on_every_path():
    # out_mode 3 = out_mode 1 followed by torch.relu, bit for bit (compared as int32 bit patterns):
    # negative values become +0.0, while NaN (a NaN bias) and -0.0 (a zero sum times a negative
    # scale plus a -0.0 bias) pass through as torch.relu lets them. Binary with padding (the
    # border correction) and bit-serial with groups; channel counts around the 32-column blocks.
    gen = torch.Generator().manual_seed(18)
    for binary, cin, cout, groups in [(True, 40, 70, 1), (True, 130, 33, 1), (False, 48, 36, 2),
                                      (False, 20, 8, 4)]:
        if binary:
            x = torch.randint(0, 2, (2, cin, 6, 5), generator=gen).float() * 2 - 1
            w = torch.randint(0, 2, (cout, cin // groups, 3, 3), generator=gen).float() * 2 - 1
            px, pw, bits = K.pack_activations(x, None, groups), K.pack_weights(w, None, groups), 1
        else:
            x = torch.randint(0, 4, (2, cin, 6, 5), generator=gen).float()
            w = torch.randint(-2, 2, (cout, cin // groups, 3, 3), generator=gen).float()
            px, pw, bits = K.pack_activations(x, 2, groups), K.pack_weights(w, 2, groups), 2
        scale = torch.randn(cout, generator=gen)
        bias = torch.randn(cout, generator=gen) * 10
        bias[1], scale[2], bias[2] = float("nan"), -1.0, -0.0
        args = (px.data, pw.data, cin, cout, [3, 3], bits, bits, binary, [1, 1], [1, 1], [1, 1],
                groups, scale, bias)
        with K.use_isa(K.available_isas()[0]):
            plain = torch.ops.hwq.conv2d_packed(*args, 1)
        want = torch.relu(plain)
        assert want.isnan().any() and (want == 0).any() and (want > 0).any()
        for isa in K.available_isas():
            with K.use_isa(isa):
                got = torch.ops.hwq.conv2d_packed(*args, 3)
                assert got.dtype == torch.float32 and got.shape == want.shape, isa
                assert got.stride() == plain.stride(), isa
                assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (isa, binary)
    # A -0.0 reaches the output and stays -0.0 (torch.relu(-0.0) is -0.0).
    x = torch.ones(1, 8, 1, 1)
    px, pw = K.pack_activations(x, 1), K.pack_weights(torch.zeros(1, 8, 1, 1), 1)
    y = torch.ops.hwq.conv2d_packed(px.data, pw.data, 8, 1, [1, 1], 1, 1, False, [1, 1], [0, 0],
                                    [1, 1], 1, torch.tensor([-1.0]), torch.tensor([-0.0]), 3)
    assert y.view(torch.int32).item() == torch.tensor(-0.0).view(torch.int32).item()


@needs_ext
def test_fake_kernels_propagate_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    x = torch.ones(2, 100, 9, 7)
    w = torch.ones(30, 50, 3, 3)
    px, pw = K.pack_activations(x, 3, groups=2), K.pack_weights(w, 2, groups=2)
    args = (100, 30, [3, 3], 3, 2, False, [2, 1], [1, 0], [1, 2], 2, None, None)
    real = torch.ops.hwq.conv2d_packed(px.data, pw.data, *args, 0)
    with FakeTensorMode() as mode:
        fx, fw = mode.from_tensor(px.data), mode.from_tensor(pw.data)
        fake = torch.ops.hwq.conv2d_packed(fx, fw, *args, 0)
        assert fake.shape == real.shape and fake.dtype == real.dtype
        assert fake.stride() == real.stride()
        assert torch.ops.hwq.pack_activations(mode.from_tensor(x), 3, False, 2).shape == px.data.shape
        assert torch.ops.hwq.pack_weights(mode.from_tensor(w), 2, False, 2).shape == pw.data.shape
        packed_out = torch.ops.hwq.conv2d_packed(fx, fw, *args[:-2], None, None, 2)
        relu_out = torch.ops.hwq.conv2d_packed(fx, fw, *args[:-2], None, None, 3)
    assert packed_out.shape == torch.ops.hwq.conv2d_packed(px.data, pw.data, *args, 2).shape
    real_relu = torch.ops.hwq.conv2d_packed(px.data, pw.data, *args, 3)
    assert relu_out.shape == real_relu.shape and relu_out.dtype == real_relu.dtype == torch.float32
    assert relu_out.stride() == real_relu.stride()


@needs_ext
def test_ops_run_under_torch_compile():
    pw = K.pack_weights(torch.ones(8, 16, 3, 3))

    def f(x):
        px = torch.ops.hwq.pack_activations(x, 1, True, 1)
        return torch.ops.hwq.conv2d_packed(px, pw.data, 16, 8, [3, 3], 1, 1, True, [1, 1], [1, 1],
                                           [1, 1], 1, None, None, 1)

    x = torch.randn(2, 16, 6, 6)
    compiled = torch.compile(f, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), f(x))


@needs_ext
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # still asked for by users
def test_ops_run_under_torchscript():
    w = torch.randint(0, 2, (8, 16, 3, 3), generator=torch.Generator().manual_seed(17)).float() * 2 - 1
    pw = K.pack_weights(w).data

    @torch.jit.script
    def f(x: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
        px = torch.ops.hwq.pack_activations(x, 1, True, 1)
        return torch.ops.hwq.conv2d_packed(px, pw, 16, 8, [3, 3], 1, 1, True, [1, 1], [1, 1],
                                           [1, 1], 1, None, None, 1)

    x = torch.randn(2, 16, 6, 6)
    want = R.binary_conv2d_ref(torch.where(x < 0, -1.0, 1.0), w, padding=1).float()
    assert torch.equal(f(x, pw), want)


def test_reference_fallback_warns_once_and_agrees(monkeypatch):
    monkeypatch.setattr(_ext, "HAVE_EXTENSION", False)
    monkeypatch.setattr(_ext, "_warned", False)
    gen = torch.Generator().manual_seed(14)
    x = torch.randint(0, 2, (2, 9, 5, 5), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (4, 9, 3, 3), generator=gen).float() * 2 - 1
    with pytest.warns(RuntimeWarning, match="not built"):
        y = K.binary_conv2d(x, w, padding=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call does not warn again
        y2 = K.binary_conv2d(K.pack_activations(x), K.pack_weights(w), padding=1)
    want = F.conv2d(x.double(), w.double(), padding=1)
    assert y.dtype == torch.int32 and torch.equal(y.double(), want) and torch.equal(y2, y)
    assert K.current_isa() is None and K.available_isas() == []


@needs_ext
def test_channels_last_float_sign_packing_on_every_path():
    # The SIMD sign packer (channels-last float32) against the reference: x < 0 -> bit 1, so
    # +0.0, -0.0 and NaN all give +1; channel counts around the 8/16/64 boundaries, groups.
    gen = torch.Generator().manual_seed(16)
    for c, groups in [(1, 1), (15, 1), (17, 1), (64, 1), (100, 2), (300, 3), (129, 1)]:
        x = torch.randn(2, c, 3, 5, generator=gen)
        x[0, 0, 0, 0], x[0, -1, 0, 1], x[1, 0, 2, 4] = -0.0, float("nan"), 0.0
        xl = x.to(memory_format=torch.channels_last)
        want = R.pack_activations_ref(x, None, groups)
        for isa in K.available_isas():
            with K.use_isa(isa):
                assert torch.equal(K.pack_activations(xl, None, groups).data, want), (isa, c)


@needs_ext
def test_packed_sign_output_of_groups_with_odd_channel_counts_on_every_path():
    # out_channels / groups = 17: a group's channels start off the 8-channel byte grid (17, 34,
    # 51), so a panel's 8 sign bits can straddle two 64-bit words (channels 59..66 of group 3).
    gen = torch.Generator().manual_seed(19)
    for groups, og in [(4, 17), (3, 23), (5, 13)]:
        x = torch.randint(0, 2, (2, 8 * groups, 5, 4), generator=gen).float() * 2 - 1
        w = torch.randint(0, 2, (og * groups, 8, 3, 3), generator=gen).float() * 2 - 1
        sums = R.binary_conv2d_ref(x, w, padding=1, groups=groups).float()
        bias = torch.randint(-3, 4, (og * groups,), generator=gen).float()
        want = R.pack_activations_ref(torch.where(sums + bias.view(1, -1, 1, 1) < 0, -1.0, 1.0),
                                      None)
        px, pw = K.pack_activations(x, None, groups), K.pack_weights(w, None, groups)
        for isa in K.available_isas():
            with K.use_isa(isa):
                got = torch.ops.hwq.conv2d_packed(
                    px.data, pw.data, 8 * groups, og * groups, [3, 3], 1, 1, True, [1, 1], [1, 1],
                    [1, 1], groups, torch.ones(og * groups), bias, 2)
                assert torch.equal(got, want), (isa, groups, og)

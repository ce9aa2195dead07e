"""The float epilogue of conv2d_packed on every path against torch's float32 arithmetic on the
exact int32 sums, bit for bit, for output widths whose rows start on 32- and 64-byte boundaries
(where the SIMD paths write with non-temporal stores) and widths where they do not; NaN and the
ReLU included. Each path the CPU runs is compared (hwq.kernels.available_isas); on
avx512_vpopcntdq, avx512bw and avx2 the binary float outputs come from the micro-kernel with the
epilogue fused and the windows read in place (its four variants: with and without the residual
and the ReLU; on avx512bw and avx2 the byte-table and Harley-Seal counts, the latter with more than
one flush of its byte counts past 248 words), on the scalar paths from the C block."""
import pytest
import torch

from hwq import kernels
from hwq.kernels import OutMode

pytestmark = pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")


@pytest.mark.parametrize("out_channels", [8, 16, 24, 32, 40, 64, 96, 130])
def test_float_epilogue_equals_torch_on_every_path(out_channels):
    gen = torch.Generator().manual_seed(out_channels)
    x = torch.randn(2, 70, 9, 7, generator=gen).sign()
    w = torch.randn(out_channels, 70, 3, 3, generator=gen).sign()
    px, pw = kernels.pack_activations(x), kernels.pack_weights(w)
    scale, bias = torch.randn(out_channels, generator=gen), torch.randn(out_channels, generator=gen)
    scale[3] = float("nan")  # a NaN channel: NaN through the ReLU, as torch.relu
    args = (px.data, pw.data, 70, out_channels, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1)
    for isa in kernels.available_isas():
        with kernels.use_isa(isa):
            s = torch.ops.hwq.conv2d_packed(*args, None, None, OutMode.INT32)
            want = s.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
            got = torch.ops.hwq.conv2d_packed(*args, scale, bias, OutMode.FLOAT)
            relu = torch.ops.hwq.conv2d_packed(*args, scale, bias, OutMode.FLOAT_RELU)
            residual = torch.randn(want.shape, generator=gen)
            added = torch.ops.hwq.conv2d_packed_add(*args, scale, bias, residual, False)
            added_relu = torch.ops.hwq.conv2d_packed_add(*args, scale, bias, residual, True)
        assert torch.equal(s.long(), torch.nn.functional.conv2d(x.double(), w.double(),
                                                                padding=1).long()), isa
        for a, b in ((got, want), (relu, torch.relu(want)), (added, want + residual),
                     (added_relu, torch.relu(want + residual))):
            assert torch.equal(torch.isnan(a), torch.isnan(b)), isa
            assert torch.equal(a.nan_to_num(), b.nan_to_num()), isa
        assert bool(torch.isnan(got[:, 3]).all())


# (in_channels, out_channels, groups, kernel, stride, padding, dilation): windows that reach far
# into the padding (wholly inside it for the 1x1 kernel with padding 3), strides and dilations,
# two words per pixel and group (70 channels per group), no padding (the input read in place).
BORDER_GEOMETRIES = [
    (64, 32, 1, (1, 1), (1, 1), (3, 3), (1, 1)),
    (64, 40, 1, (3, 3), (3, 2), (2, 1), (2, 2)),
    (140, 48, 2, (3, 5), (2, 1), (1, 2), (1, 1)),
    (96, 64, 1, (5, 3), (1, 2), (0, 0), (1, 2)),
    (7, 33, 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2048, 24, 1, (3, 3), (2, 2), (1, 1), (1, 1)),  # 288 words: Harley-Seal flushes twice
]


@pytest.mark.parametrize("geometry", BORDER_GEOMETRIES)
def test_fused_windows_in_place_match_float64_conv(geometry):
    """The fused kernels (avx512_vpopcntdq, avx512bw, avx2) read each window from a zero-padded copy of the
    packed input (no im2col); every path's float outputs against float64 torch.conv2d sums of the +/-1
    values with zero padding, then torch's float32 multiply and add."""
    cin, cout, groups, k, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(cin * cout)
    # +/-1 drawn directly: randn().sign() gives 0 now and then in a tensor this large (packed as
    # +1, which the float64 reference would count as 0).
    x = torch.randint(0, 2, (3, cin, 11, 10), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (cout, cin // groups, *k), generator=gen).float() * 2 - 1
    _fused_case(x, w, stride, padding, dilation, groups, gen)


def _fused_case(x, w, stride, padding, dilation, groups, gen):
    """Every path's float outputs (plain, ReLU, residual + ReLU) against float64 conv2d sums
    of the +/-1 values, then torch's float32 multiply and add."""
    cin, cout, k = x.shape[1], w.shape[0], list(w.shape[2:])
    sums = torch.nn.functional.conv2d(x.double(), w.double(), stride=stride, padding=padding,
                                      dilation=dilation, groups=groups)
    scale, bias = torch.randn(cout, generator=gen), torch.randn(cout, generator=gen)
    want = sums.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    residual = torch.randn(want.shape, generator=gen)
    px, pw = kernels.pack_activations(x, groups=groups), kernels.pack_weights(w, groups=groups)
    args = (px.data, pw.data, cin, cout, k, 1, 1, True, list(stride), list(padding),
            list(dilation), groups, scale, bias)
    for isa in kernels.available_isas():
        with kernels.use_isa(isa):
            got = torch.ops.hwq.conv2d_packed(*args, OutMode.FLOAT)
            relu = torch.ops.hwq.conv2d_packed(*args, OutMode.FLOAT_RELU)
            added = torch.ops.hwq.conv2d_packed_add(*args, residual, False)
            added_relu = torch.ops.hwq.conv2d_packed_add(*args, residual, True)
        assert torch.equal(got, want), isa
        assert torch.equal(relu, torch.relu(want)), isa
        assert torch.equal(added, want + residual), isa
        assert torch.equal(added_relu, torch.relu(want + residual)), isa


@pytest.mark.parametrize("seed", range(12))
def test_fused_random_shapes_match_float64_conv(seed):
    """Random geometries (channels 1-200 per group, 1-3 groups, kernels up to 5x5, stride 1-2,
    padding 0-2, dilation 1-2, batch 1-3, images 1-12 pixels a side): output pixel counts that
    are not multiples of the fused tiles' rows (6 on avx512_vpopcntdq, 16 on avx2), channel
    counts that cut a tile's 32 columns and a vector's 8 or 16, rows of 1 to 64 words."""
    gen = torch.Generator().manual_seed(1000 + seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
    groups = r(1, 3)
    cin, cout = groups * r(1, 200), groups * r(1, 30)
    k = (r(1, 5), r(1, 5))
    stride, padding, dilation = (r(1, 2), r(1, 2)), (r(0, 2), r(0, 2)), (r(1, 2), r(1, 2))
    h = max(r(1, 12), (k[0] - 1) * dilation[0] + 1 - 2 * padding[0])
    wd = max(r(1, 12), (k[1] - 1) * dilation[1] + 1 - 2 * padding[1])
    x = torch.randn(r(1, 3), cin, h, wd, generator=gen).sign()
    w = torch.randn(cout, cin // groups, *k, generator=gen).sign()
    _fused_case(x, w, stride, padding, dilation, groups, gen)


# Row lengths K (words per window) around the avx2 fused kernel's switch from the byte table to
# Harley-Seal (27 words), a Harley-Seal remainder of every length, and past the 248 words after
# which its byte counts are folded (31 blocks of 8).
@pytest.mark.parametrize("cin, kernel", [(64 * 26, 1), (64 * 27, 1), (64 * 27 - 5, 1),
                                         (64 * 3 + 1, 3), (64 * 4, 3), (64 * 28 - 60, 3),
                                         (64 * 29, 3)])
def test_fused_row_lengths_match_float64_conv(cin, kernel):
    gen = torch.Generator().manual_seed(cin + kernel)
    x = torch.randn(2, cin, 4, 5, generator=gen).sign()
    w = torch.randn(20, cin, kernel, kernel, generator=gen).sign()
    _fused_case(x, w, (1, 1), (kernel // 2, kernel // 2), (1, 1), 1, gen)


def _packed_sign_ref(v: torch.Tensor) -> torch.Tensor:
    """(N, O, OH, OW) float -> (N, OH, OW, 1, 1, words) int64: bit o % 64 of word o // 64 is
    v < 0 (an ordered compare: NaN and -0.0 give 0), bits past O zero."""
    n, o, oh, ow = v.shape
    words = (o + 63) // 64
    bits = torch.zeros(n, oh, ow, words * 64, dtype=torch.int64)
    bits[..., :o] = (v < 0).permute(0, 2, 3, 1).long()
    return (bits.view(n, oh, ow, words, 64) << torch.arange(64)).sum(-1).view(n, oh, ow, 1, 1, words)


# (in_channels, out_channels, groups): one group of 8-130 channels (whole and cut 32-channel
# tiles, one and three output words), groups of 32 (the fused kernels, tiles on 32-bit halves)
# and of 24 (not on halves: the C-block route).
SIGN_SHAPES = [(70, 8, 1), (70, 24, 1), (70, 40, 1), (64, 64, 1), (70, 130, 1), (9, 33, 1),
               (140, 64, 2), (96, 48, 2), (1100, 40, 1)]


@pytest.mark.parametrize("shape", SIGN_SHAPES)
def test_packed_sign_outputs_on_every_path(shape):
    """conv2d_packed's packed sign outputs (OutMode.PACKED_SIGN: the sign bits of the float
    epilogue, for a following binary layer) on every path, fused into the micro-kernel or from the
    C block, against float64 conv2d sums, torch's float32 multiply and add, and v < 0."""
    cin, cout, groups = shape
    gen = torch.Generator().manual_seed(cin + cout + groups)
    x = torch.randint(0, 2, (2, cin, 9, 7), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (cout, cin // groups, 3, 3), generator=gen).float() * 2 - 1
    sums = torch.nn.functional.conv2d(x.double(), w.double(), stride=(1, 2), padding=1,
                                      groups=groups)
    scale, bias = torch.randn(cout, generator=gen), torch.randn(cout, generator=gen)
    scale[cout // 2] = float("nan")  # NaN gives bit 0
    bias[0], scale[0] = -0.0, 0.0  # -0.0 gives bit 0
    want = _packed_sign_ref(sums.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1))
    px, pw = kernels.pack_activations(x, groups=groups), kernels.pack_weights(w, groups=groups)
    args = (px.data, pw.data, cin, cout, [3, 3], 1, 1, True, [1, 2], [1, 1], [1, 1], groups,
            scale, bias, OutMode.PACKED_SIGN)
    for isa in kernels.available_isas():
        with kernels.use_isa(isa):
            assert torch.equal(torch.ops.hwq.conv2d_packed(*args), want), isa

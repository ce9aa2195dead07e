"""Bad inputs: each error names the parameter, the value received and what is accepted."""
import pytest
import torch

import hwq.kernels as K

needs_ext = pytest.mark.skipif(not K.HAVE_EXTENSION, reason="hwq._C is not built")

X = torch.ones(2, 8, 5, 5)
W = torch.ones(4, 8, 3, 3)


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_wrong_dtype(dtype):
    with pytest.raises(TypeError, match=r"x has dtype torch\.(bool|complex64).*expected a real"):
        K.binary_conv2d(X.to(dtype), W)
    with pytest.raises(TypeError, match=r"w has dtype"):
        K.bitserial_conv2d(X, W.to(dtype), 2, 2)


def test_wrong_device():
    with pytest.raises(ValueError, match=r"x is on device 'meta'.*CPU tensors only"):
        K.binary_conv2d(X.to("meta"), W)
    with pytest.raises(ValueError, match=r"w is on device 'meta'"):
        K.binary_linear(torch.ones(3, 8), torch.ones(2, 8, device="meta"))


def test_mismatched_channels():
    with pytest.raises(ValueError, match=r"x has 8 channels but w expects 6"):
        K.binary_conv2d(X, torch.ones(4, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"x has 8 channels but w expects 9"):
        K.bitserial_linear(torch.ones(3, 8), torch.ones(2, 9), 2, 2)
    with pytest.raises(ValueError, match=r"w has 4 output channels, not divisible by groups=3"):
        K.binary_conv2d(torch.ones(1, 6, 4, 4), torch.ones(4, 2, 1, 1), groups=3)


@pytest.mark.parametrize("kw,match", [
    (dict(padding=-1), r"padding=\(-1, -1\).*integer >= 0"),
    (dict(padding=(1, -2)), r"padding=\(1, -2\)"),
    (dict(stride=0), r"stride=\(0, 0\).*integer >= 1"),
    (dict(dilation=(1, 0)), r"dilation=\(1, 0\)"),
    (dict(padding="same"), r"padding='same' is not accepted"),
    (dict(groups=0), r"groups=0 is not accepted"),
])
def test_bad_conv_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        K.binary_conv2d(X, W, **kw)


def test_input_smaller_than_kernel():
    with pytest.raises(ValueError, match=r"x has height 5.*smaller than the dilated kernel \(7\)"):
        K.binary_conv2d(X, W, dilation=3)


def test_values_outside_the_codes():
    with pytest.raises(ValueError, match=r"x has values other than \+1 and -1"):
        K.binary_conv2d(X * 0, W)
    with pytest.raises(ValueError, match=r"x has values in \[4, 4\].*unsigned 2-bit codes"):
        K.bitserial_conv2d(X * 4, W, 2, 2)
    with pytest.raises(ValueError, match=r"w has values in \[-3, -3\].*signed 2-bit codes \(integers from -2 to 1\)"):
        K.bitserial_conv2d(X, W * -3, 2, 2)
    with pytest.raises(ValueError, match=r"x has non-integer values"):
        K.bitserial_conv2d(X * 0.5, W, 2, 2)


@pytest.mark.parametrize("bits", [0, 9, 2.0, True])
def test_bad_bit_widths(bits):
    with pytest.raises(ValueError, match=r"a_bits=.* is not accepted: expected an integer from 1 to 8"):
        K.bitserial_conv2d(X, W, bits, 2)
    with pytest.raises(ValueError, match=r"w_bits="):
        K.bitserial_conv2d(X, W, 2, bits)


def test_bad_shapes_and_bias():
    with pytest.raises(ValueError, match=r"x has shape \(8, 5, 5\): expected \(N, C, H, W\)"):
        K.binary_conv2d(X[0], W)
    with pytest.raises(ValueError, match=r"bias has shape torch.Size\(\[3\]\): expected a tensor of shape \(4,\)"):
        K.binary_conv2d(X, W, bias=torch.ones(3))
    with pytest.raises(ValueError, match=r"kernel size \(9, 9\).*KH \* KW <= 64"):
        K.pack_weights(torch.ones(1, 1, 9, 9))


@needs_ext
def test_packed_operands_must_match_the_op():
    px = K.pack_activations(torch.ones(1, 8, 4, 4), 2)
    with pytest.raises(ValueError, match=r"x is a PackedTensor of kind='act', bits=2.*expected kind='act', bits=None"):
        K.binary_conv2d(px, W)
    pw = K.pack_weights(W)
    with pytest.raises(ValueError, match=r"w is a PackedTensor .*bits=None.*expected kind='weight', bits=3"):
        K.bitserial_conv2d(torch.ones(1, 8, 4, 4), pw, 2, 3)


@needs_ext
def test_cpp_checks_name_the_argument():
    px = K.pack_activations(X)
    pw = K.pack_weights(W)
    ok = [8, 4, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1, None, None, 0]
    with pytest.raises(RuntimeError, match=r"x has dtype Float: packed bits are expected as torch.int64"):
        torch.ops.hwq.conv2d_packed(px.data.float(), pw.data, *ok)
    with pytest.raises(RuntimeError, match=r"channel count mismatch"):
        torch.ops.hwq.conv2d_packed(px.data, pw.data, 200, *ok[1:])
    bad = list(ok)
    bad[7] = [-1, 0]
    with pytest.raises(RuntimeError, match=r"padding=\[-1, 0\] is not accepted"):
        torch.ops.hwq.conv2d_packed(px.data, pw.data, *bad)
    bad = list(ok)
    bad[-1] = 5
    with pytest.raises(RuntimeError, match=r"out_mode=5 is not accepted: expected 0 \(int32 sums\), "
                                           r"1 \(float\), 2 \(packed signs\) or 3 \(float then ReLU\)"):
        torch.ops.hwq.conv2d_packed(px.data, pw.data, *bad)
    bad[-1] = -1
    with pytest.raises(RuntimeError, match=r"out_mode=-1 is not accepted"):
        torch.ops.hwq.conv2d_packed(px.data, pw.data, *bad)
    bad = list(ok)
    bad[-2] = torch.ones(3)
    bad[-1] = 1
    with pytest.raises(RuntimeError, match=r"bias has dtype Float and 3 values: expected float32 with 4"):
        torch.ops.hwq.conv2d_packed(px.data, pw.data, *bad)
    with pytest.raises(RuntimeError, match=r"isa='sse9' is not a kernel path: the paths are 'auto'"):
        K.set_isa("sse9")


@needs_ext
def test_int32_overflow_is_refused_not_wrapped():
    x = torch.full((1, 8192, 1, 1), 255.0)
    w = torch.full((1, 8192, 3, 3), -128.0)
    px, pw = K.pack_activations(x, 8), K.pack_weights(w, 8)
    args = (px.data, pw.data, 8192, 1, [3, 3], 8, 8, False, [1, 1], [1, 1], [1, 1], 1, None, None)
    with pytest.raises(RuntimeError, match=r"can overflow the int32 output"):
        torch.ops.hwq.conv2d_packed(*args, 0)
    with pytest.raises(RuntimeError, match=r"can overflow"):
        torch.ops.hwq.conv2d_packed(*args, 1)  # the epilogues work in int32 too

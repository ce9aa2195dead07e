"""Bad inputs: each error names the parameter, the value received and what is accepted."""
import os
import re
import subprocess
import sys
import textwrap

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


def test_non_finite_codes_are_refused():
    for v in (float("inf"), float("-inf"), float("nan")):
        x = torch.full((1, 8, 3, 3), v)
        with pytest.raises(ValueError, match=r"x has non-finite values \(e\.g\. \[.*\]\): expected "
                                             r"unsigned 2-bit codes"):
            K.bitserial_conv2d(x, W, 2, 2)
        with pytest.raises(ValueError, match=r"x has non-finite values"):
            K.pack_activations(x, 3)
        with pytest.raises(ValueError, match=r"w has non-finite values"):
            K.bitserial_linear(torch.ones(2, 8), torch.full((3, 8), v), 2, 2)


def test_zero_input_channels_give_the_empty_sum():
    # as torch.nn.functional.linear / conv2d: a sum over no channels is 0
    for op, args in ((K.binary_linear, ()), (K.bitserial_linear, (2, 2))):
        y = op(torch.ones(3, 4, 0), torch.ones(5, 0), *args)
        assert torch.equal(y, torch.zeros(3, 4, 5, dtype=torch.int32))
    y = K.binary_conv2d(torch.ones(2, 0, 4, 4), torch.ones(3, 0, 3, 3), padding=1)
    assert torch.equal(y, torch.zeros(2, 3, 4, 4, dtype=torch.int32))


_RAW_OP = textwrap.dedent("""
    import torch
    import hwq.kernels as K
    g = torch.Generator().manual_seed(0)
    pm = lambda *s: torch.randint(0, 2, s, generator=g).float() * 2 - 1
    x8, x4, w8 = K.pack_activations(pm(2, 8, 5, 5)), K.pack_activations(pm(2, 4, 5, 5)), \\
        K.pack_weights(pm(4, 8, 3, 3))
    w4 = K.pack_weights(pm(4, 4, 3, 3))
    rest = [[3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1, None, None, 0]
    op = torch.ops.hwq.conv2d_packed
    cases = {
        "in_channels -8": lambda: op(x8.data, w8.data, -8, 4, *rest),
        "out_channels -4": lambda: op(x8.data, w8.data, 8, -4, *rest),
        "x packed for more channels": lambda: op(x8.data, w4.data, 4, 4, *rest),
        "w packed for more channels": lambda: op(x4.data, w8.data, 4, 4, *rest),
        "w packed for more outputs": lambda: op(x8.data, w8.data, 8, 2, *rest),
        "kernel_size not the weight's": lambda: op(x8.data, w8.data, 8, 4, [1, 1], *rest[1:]),
        "words not the weight's": lambda: op(x8.data, w8.data, 200, 4, *rest),
        "ok": lambda: op(x8.data, w8.data, 8, 4, *rest),
    }
    for name, fn in cases.items():
        try:
            fn()
            print(name, "|| accepted", flush=True)
        except Exception as e:
            print(name, "||", type(e).__name__, str(e).splitlines()[0], flush=True)
""")


@needs_ext
def test_raw_op_checks_the_claimed_sizes_against_the_packed_tensors():
    # in a subprocess: a check that failed to catch one of these would read out of bounds
    r = subprocess.run([sys.executable, "-c", _RAW_OP], env=dict(os.environ, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    got = dict(line.split(" || ", 1) for line in r.stdout.splitlines())
    want = {
        "in_channels -8": r"RuntimeError in_channels=-8 is not accepted: expected the input "
                          r"channel count \(>= 0\)",
        "out_channels -4": r"RuntimeError out_channels=-4 is not accepted",
        "x packed for more channels": r"RuntimeError x holds bits past in_channels=4 \(4 per "
                                      r"group\): it was packed for more input channels",
        "w packed for more channels": r"RuntimeError w holds bits past in_channels=4",
        "w packed for more outputs": r"RuntimeError w holds weights past out_channels=2 \(2 per "
                                     r"group\)",
        "kernel_size not the weight's": r"RuntimeError w has shape \[1, 1, 4, 9, 8\]: expected "
                                        r"\(1, 1, 4, 1, 8\)",
        "words not the weight's": r"RuntimeError x has shape \[2, 5, 5, 1, 1, 1\]: expected "
                                  r"\(N, H, W, 1, 1, 4\) for in_channels=200, groups=1, binary "
                                  r"\(channel count",
        "ok": "accepted",
    }
    assert set(got) == set(want)
    for name, pattern in want.items():
        assert re.match(pattern, got[name]), (name, got[name])

"""hwq.kernels.int8 (oneDNN's u8 x s8 conv and linear, the int8 path of hwq.deploy) against float64
torch convolution of the same integer codes: exact sums on random shapes (with unit scales the
float32 output is the integer sum itself), the zero point meaning the value 0 in the padding, the
scale/bias epilogue, and the bad inputs. Exactness is checked on this CPU, through the two-call
split that CPUs without VNNI take, and in a subprocess where oneDNN is capped at AVX2 (its
saturating vpmaddubsw path, as on AVX2-only CPUs)."""
import contextlib
import os
import re
import subprocess
import sys
import textwrap
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from hwq.kernels import int8

pytestmark = pytest.mark.skipif(not int8.HAVE_ONEDNN_INT8, reason="torch lacks oneDNN int8 ops")


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 40))
    cout = groups * draw(st.integers(1, 24))
    k = draw(st.sampled_from([1, 3, 5]))
    stride, dilation = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
    pad = draw(st.integers(0, 3))
    span = dilation * (k - 1) + 1
    h = draw(st.integers(max(1, span - 2 * pad), 17))
    w = draw(st.integers(max(1, span - 2 * pad), 17))
    signed = draw(st.booleans())
    a_bits = draw(st.integers(1, 8))
    return dict(n=draw(st.integers(1, 4)), cin=cin, cout=cout, k=k, stride=stride, pad=pad,
                dilation=dilation, groups=groups, h=h, w=w, signed=signed, a_bits=a_bits,
                seed=draw(st.integers(0, 2 ** 31 - 1)))


def _codes(c):
    g = torch.Generator().manual_seed(c["seed"])
    if c["signed"]:
        lo, hi, zp = -(2 ** (c["a_bits"] - 1)), 2 ** (c["a_bits"] - 1), 2 ** (c["a_bits"] - 1)
    else:
        lo, hi, zp = 0, 2 ** c["a_bits"], 0
    x = torch.randint(lo, hi, (c["n"], c["cin"], c["h"], c["w"]), generator=g).float()
    w = torch.randint(-128, 128, (c["cout"], c["cin"] // c["groups"], c["k"], c["k"]),
                      generator=g).float()
    return x, w, zp


def _path(path: str):
    """"this CPU": as this CPU runs it; "split": with oneDNN taken to lack VNNI, so that every call
    whose int16 pair sums could saturate takes the two-call split (on a VNNI CPU both halves then
    run on VNNI: this checks the split's arithmetic; test_exact_without_vnni the saturation)."""
    if path == "split":
        return mock.patch.object(int8, "onednn_has_vnni", lambda: False)
    return contextlib.nullcontext()


PATHS = pytest.mark.parametrize("path", ["this CPU", "split"])


@PATHS
@given(c=conv_case())
def test_conv2d_exact_sums(path, c):
    with _path(path):
        _conv2d_exact_sums(c)


def _conv2d_exact_sums(c):
    x, w, zp = _codes(c)
    geom = dict(stride=c["stride"], padding=c["pad"], dilation=c["dilation"], groups=c["groups"])
    want = F.conv2d(x.double(), w.double(), **geom)
    assert want.abs().max() < 2 ** 24  # float32 holds the sum exactly
    packed = int8.pack_conv_weight(w, (c["stride"],) * 2, (c["pad"],) * 2, (c["dilation"],) * 2,
                                   c["groups"])
    got = int8.conv2d(x, 1.0, zp, packed, torch.ones(c["cout"]), None, (c["stride"],) * 2,
                      (c["pad"],) * 2, (c["dilation"],) * 2, c["groups"])
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got.double(), want)


@PATHS
def test_conv2d_epilogue_and_layouts(path):
    with _path(path):
        _conv2d_epilogue_and_layouts()


def _conv2d_epilogue_and_layouts():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (2, 16, 9, 9), generator=g).float()
    w = torch.randint(-128, 128, (8, 16, 3, 3), generator=g).float()
    ws = torch.rand(8, generator=g) - 0.5  # negative scales (a folded BN with gamma < 0)
    b = torch.randn(8, generator=g)
    packed = int8.pack_conv_weight(w, (1, 1), (1, 1), (1, 1), 1)
    s = F.conv2d(x.double(), w.double(), padding=1)
    want = s * 0.03 * ws.double().view(1, -1, 1, 1) + b.double().view(1, -1, 1, 1)
    for xin in (x, x.contiguous(memory_format=torch.channels_last), x[:, :, :, :].transpose(2, 3)
                .transpose(2, 3)):
        got = int8.conv2d(xin, 0.03, 128, packed, ws, b, (1, 1), (1, 1), (1, 1), 1)
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)
        fused = int8.conv2d(xin, 0.03, 128, packed, ws, b, (1, 1), (1, 1), (1, 1), 1, relu=True)
        assert torch.equal(fused, torch.relu(got))


@PATHS
def test_linear_exact_and_epilogue(path):
    with _path(path):
        _linear_exact_and_epilogue()


def _linear_exact_and_epilogue():
    g = torch.Generator().manual_seed(1)
    for n, c, o in [(1, 1, 1), (3, 70, 9), (2, 513, 33)]:
        x = torch.randint(0, 256, (n, 5, c), generator=g).float()
        w = torch.randint(-128, 128, (o, c), generator=g).float()
        packed = int8.pack_linear_weight(w)
        got = int8.linear(x, 1.0, 0, packed, torch.ones(o), None)
        assert got.shape == (n, 5, o)
        assert torch.equal(got.double(), x.double() @ w.double().T)
        ws, b = torch.rand(o, generator=g), torch.randn(o, generator=g)
        got = int8.linear(x - 7, 0.5, 7, packed, ws, b)
        torch.testing.assert_close(got.double(), (x.double() - 7) @ w.double().T * 0.5
                                   * ws.double() + b.double(), rtol=1e-6, atol=1e-5)
        assert torch.equal(int8.linear(x - 7, 0.5, 7, packed, ws, b, relu=True), torch.relu(got))


def test_bad_inputs():
    w = torch.ones(4, 3, 3, 3)
    packed = int8.pack_conv_weight(w, (1, 1), (0, 0), (1, 1), 1)
    x = torch.zeros(1, 3, 5, 5)
    args = (packed, torch.ones(4), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="integer-valued"):
        int8.conv2d(x + 0.5, 1.0, 0, *args)
    with pytest.raises(ValueError, match=r"x_zp=0 span \[-1, -1\]"):
        int8.conv2d(x - 1, 1.0, 0, *args)
    with pytest.raises(ValueError, match=r"span \[256, 256\]"):
        int8.conv2d(x + 1, 1.0, 255, *args)
    with pytest.raises(ValueError, match=r"x has 2 channels but the packed weight takes 3"):
        int8.conv2d(torch.zeros(1, 2, 5, 5), 1.0, 0, *args)
    with pytest.raises(ValueError, match=r"x has shape \(3, 5, 5\): expected \(N, C, H, W\)"):
        int8.conv2d(torch.zeros(3, 5, 5), 1.0, 0, *args)
    with pytest.raises(ValueError, match=r"w_scale has 3 values: expected one per output channel \(4\)"):
        int8.conv2d(x, 1.0, 0, packed, torch.ones(3), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match=r"bias has 2 values: expected 4"):
        int8.conv2d(x, 1.0, 0, packed, torch.ones(4), torch.ones(2), (1, 1), (0, 0), (1, 1), 1)
    lin = int8.pack_linear_weight(torch.ones(5, 7))
    with pytest.raises(ValueError, match=r"x has 6 channels but the packed weight takes 7"):
        int8.linear(torch.zeros(2, 6), 1.0, 0, lin, torch.ones(5), None)
    with pytest.raises(ValueError, match=r"w_scale has 7 values"):
        int8.linear(torch.zeros(2, 7), 1.0, 0, lin, torch.ones(7), None)
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        int8.pack_conv_weight(w * 128, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        int8.pack_linear_weight(torch.full((2, 2), 0.5))


def _torch_u8(x, step, lo, hi, zp):
    return ((x / step).round().clamp(lo, hi) + zp).to(torch.uint8)


@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([(0, 255, 0), (-128, 127, 128), (0, 3, 0),
                                                     (-2, 1, 2), (-64, 63, 64)]))
def test_quantize_u8_matches_torch(seed, grid):
    lo, hi, zp = grid
    g = torch.Generator().manual_seed(seed)
    step = float(torch.rand((), generator=g)) * 0.1 + 1e-3
    x = torch.randn(3, 5, 7, 9, generator=g) * step * (hi - lo) / 2
    x.view(-1)[:40] = (torch.randint(lo - 3, hi + 3, (40,), generator=g) + 0.5) * step  # ties
    for xin in (x, x.contiguous(memory_format=torch.channels_last), x.transpose(1, 3)):
        got = int8.quantize_u8(xin, step, lo, hi, zp)
        assert got.dtype == torch.uint8 and got.stride() == (
            xin.stride() if xin.is_contiguous() or xin.is_contiguous(
                memory_format=torch.channels_last) else xin.contiguous().stride())
        assert torch.equal(got, _torch_u8(xin, torch.tensor(step), lo, hi, zp))
    assert torch.equal(int8.quantize_u8(x.double(), step, lo, hi, zp),  # torch fallback
                       _torch_u8(x.double(), step, lo, hi, zp))


@pytest.mark.parametrize("spec", ["fixed:8", "fixed:3", "lsq:4", "lsq:8", "pact:2", "pact:8"])
def test_step_and_range_gives_the_quantize_int_codes(spec):
    import hwq
    q = hwq.quant.get(spec, role="act")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 6, 6, generator=g) * 3
    q.train()
    q(x)
    q.eval()
    step, lo, hi = q.step_and_range(x)
    codes, scale = q.quantize_int(x)
    zp = -lo
    # values exactly at the grid's ties and at the top of PACT's range
    x2 = torch.cat([x.flatten(), (torch.arange(lo - 2, hi + 3) + 0.5) * step,
                    torch.arange(lo - 2, hi + 3) * step]).reshape(-1, 1)
    codes2, _ = q.quantize_int(x2)
    assert torch.equal(torch.as_tensor(scale), torch.as_tensor(step))
    for xx, cc in ((x, codes), (x2, codes2)):
        assert torch.equal((xx / step).round().clamp(lo, hi), cc)
        assert torch.equal(int8.quantize_u8(xx, step, lo, hi, zp).to(torch.float32) - zp, cc)


def test_quantize_u8_bad_inputs():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"lo=0, hi=255, zp=1"):
        int8.quantize_u8(x, 1.0, 0, 255, 1)
    with pytest.raises(ValueError, match=r"lo=3, hi=3"):
        int8.quantize_u8(x, 1.0, 3, 3, 0)
    with pytest.raises(ValueError, match="NaN"):
        int8.quantize_u8(torch.tensor([1.0, float("nan")]), 1.0, 0, 3, 0)
    with pytest.raises(RuntimeError, match=r"step=-1"):
        int8.quantize_u8(x, -1.0, 0, 3, 0)
    with pytest.raises(ValueError, match="step"):
        int8.quantize_u8(x.double(), -1.0, 0, 3, 0)


def _proc_cpuinfo_flags() -> set[str]:
    """The flags line of /proc/cpuinfo, read here independently of hwq (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


def test_vnni_detection_follows_the_cpu_flags_and_onednn_cap(monkeypatch):
    vnni_cpu = bool(_proc_cpuinfo_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    assert int8.onednn_has_vnni() == vnni_cpu
    assert int8.u8_exact_max() == (255 if vnni_cpu else 127)
    for cap in ("AVX2", "avx512_core", "SSE41", "AVX512_CORE_TYPO"):  # below VNNI, or unknown
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert int8.onednn_max_isa() == cap.upper()
        assert not int8.onednn_has_vnni() and int8.u8_exact_max() == 127
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # oneDNN's older name
    assert not int8.onednn_has_vnni()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # the new name wins
    assert int8.onednn_has_vnni() == bool(_proc_cpuinfo_flags() & {"avx512_vnni", "avx_vnni",
                                                                   "amx_int8"})


_WITHOUT_VNNI = textwrap.dedent("""
    import torch
    from torch.nn import functional as F
    from hwq.kernels import int8
    assert not int8.onednn_has_vnni() and int8.u8_exact_max() == 127
    # oneDNN's own kernel saturates here: u8 255 against -128, -128 is a pair sum of -65280
    x = torch.full((3, 64), 255.0)
    w = torch.full((5, 64), -128.0)
    raw = torch.ops.onednn.qlinear_pointwise(
        x.to(torch.uint8), 1.0, 0, torch.ops.onednn.qlinear_prepack(w.to(torch.int8), None),
        torch.ones(5), torch.zeros(5, dtype=torch.long), None, 1.0, 0, torch.float32, "none", [],
        "")
    print("raw", float(raw[0, 0]), "exact", -255 * 128 * 64)
    assert float(raw[0, 0]) != -255 * 128 * 64, "oneDNN was not capped below VNNI"
    assert torch.equal(int8.linear(x, 1.0, 0, int8.pack_linear_weight(w), torch.ones(5), None),
                       torch.full((3, 5), -255.0 * 128 * 64))
    g = torch.Generator().manual_seed(7)
    for trial in range(30):
        n, c, o = (int(v) for v in torch.randint(1, 40, (3,), generator=g))
        groups = [1, 2][trial % 2]
        c, o = c * groups, o * groups
        k, pad = [1, 3][trial % 3 == 0], trial % 2
        lo, hi = [(0, 256), (-128, 128), (0, 128), (-64, 64)][trial % 4]
        xc = torch.randint(lo, hi, (n % 4 + 1, c, 7, 6), generator=g).float()
        xc.view(-1)[::3] = hi - 1  # the largest code often: long runs of saturating pairs
        for wlo, whi in ((-128, 128), (-64, 64), (-128, -127)):
            w = torch.randint(wlo, whi, (o, c // groups, k, k), generator=g).float()
            want = F.conv2d(xc.double(), w.double(), padding=pad, groups=groups)
            got = int8.conv2d(xc, 1.0, -lo, int8.pack_conv_weight(w, (1, 1), (pad, pad), (1, 1),
                              groups), torch.ones(o), None, (1, 1), (pad, pad), (1, 1), groups)
            assert torch.equal(got.double(), want), (trial, wlo, whi, (got.double() - want).abs().max())
            x2 = xc[:, :, 0, :]  # (N, C, 6): 6 rows of C features each
            w2 = torch.randint(wlo, whi, (o, c), generator=g).float()
            got = int8.linear(x2.transpose(1, 2), 1.0, -lo, int8.pack_linear_weight(w2),
                              torch.ones(o), None)
            assert torch.equal(got.double(), x2.transpose(1, 2).double() @ w2.double().T), trial
    print("OK")
""")


def test_exact_without_vnni_in_a_subprocess():
    # ONEDNN_MAX_CPU_ISA=AVX2 gives, on any x86 CPU, the kernels of an AVX2-only one (oneDNN reads
    # it when it first generates code, hence a fresh process)
    if "avx2" not in _proc_cpuinfo_flags():
        pytest.skip("the CPU lacks AVX2 (no /proc/cpuinfo, or not x86)")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _WITHOUT_VNNI], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.endswith("OK\n"), r.stdout + r.stderr


_BAD_GEOMETRY = textwrap.dedent("""
    import torch
    from hwq.kernels import int8
    w = torch.ones(4, 3, 3, 3)
    ok = ((1, 1), (0, 0), (1, 1), 1)
    packed = int8.pack_conv_weight(w, *ok)
    x = torch.zeros(1, 3, 5, 5)
    cases = {
        "stride 0": lambda: int8.pack_conv_weight(w, (0, 0), (0, 0), (1, 1), 1),
        "stride 0 at the call": lambda: int8.conv2d(x, 1.0, 0, packed, torch.ones(4), None,
                                                    (0, 0), (0, 0), (1, 1), 1),
        "padding -1": lambda: int8.pack_conv_weight(w, (1, 1), (-1, 0), (1, 1), 1),
        "dilation 0": lambda: int8.pack_conv_weight(w, (1, 1), (0, 0), (1, 0), 1),
        "groups 0": lambda: int8.pack_conv_weight(w, (1, 1), (0, 0), (1, 1), 0),
        "groups 3": lambda: int8.pack_conv_weight(w, (1, 1), (0, 0), (1, 1), 3),
        "C 0": lambda: int8.pack_conv_weight(torch.ones(4, 0, 3, 3), *ok),
        "linear C 0": lambda: int8.pack_linear_weight(torch.ones(4, 0)),
        "x smaller than the kernel": lambda: int8.conv2d(torch.zeros(1, 3, 2, 6), 1.0, 0, packed,
                                                         torch.ones(4), None, *ok),
        "geometry not the packed one": lambda: int8.conv2d(x, 1.0, 0, packed, torch.ones(4), None,
                                                           (2, 2), (0, 0), (1, 1), 1),
        "x_zp 300": lambda: int8.conv2d(x, 1.0, 300, packed, torch.ones(4), None, *ok),
        "x_scale nan": lambda: int8.conv2d(x, float("nan"), 0, packed, torch.ones(4), None, *ok),
        "inf codes": lambda: int8.conv2d(x + float("inf"), 1.0, 0, packed, torch.ones(4), None, *ok),
        "linear weight for conv": lambda: int8.conv2d(x, 1.0, 0, int8.pack_linear_weight(
            torch.ones(4, 3)), torch.ones(4), None, *ok),
    }
    for name, fn in cases.items():
        try:
            fn()
            print(name, "|| accepted", flush=True)
        except Exception as e:
            print(name, "||", type(e).__name__, str(e).splitlines()[0], flush=True)
""")


def _errors_in_a_subprocess(script: str) -> dict[str, str]:
    """{case: "ErrorType message"} from a script run in a fresh process (a crash, such as oneDNN's
    SIGFPE on a stride of 0, fails the test that called this instead of the whole run)."""
    r = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return dict(line.split(" || ", 1) for line in r.stdout.splitlines())


def test_bad_geometry_is_refused_before_onednn():
    got = _errors_in_a_subprocess(_BAD_GEOMETRY)
    want = {
        "stride 0": r"ValueError stride=\(0, 0\) is not accepted: expected an integer >= 1",
        "stride 0 at the call": r"ValueError stride=\(0, 0\) is not accepted",
        "padding -1": r"ValueError padding=\(-1, 0\) is not accepted: expected an integer >= 0",
        "dilation 0": r"ValueError dilation=\(1, 0\) is not accepted",
        "groups 0": r"ValueError groups=0 is not accepted: expected an integer >= 1",
        "groups 3": r"ValueError w has 4 output channels, not divisible by groups=3",
        "C 0": r"ValueError w has shape \(4, 0, 3, 3\): expected at least one output and one input",
        "linear C 0": r"ValueError w has shape \(4, 0\)",
        "x smaller than the kernel": r"ValueError x has height 2, which with padding=0 is smaller "
                                     r"than the dilated kernel \(3\)",
        "geometry not the packed one": r"ValueError \(stride, padding, dilation, groups\)="
                                       r"\(\(2, 2\), .* differ from \(\(1, 1\)",
        "x_zp 300": r"ValueError x_zp=300 is not accepted: expected an integer in \[0, 255\]",
        "x_scale nan": r"ValueError x_scale=nan is not accepted: expected a finite number",
        "inf codes": r"ValueError .*non-finite",
        "linear weight for conv": r"TypeError w_packed is a Int8Weight for a linear layer: "
                                  r"expected the Int8Weight that pack_conv_weight returns",
    }
    assert set(got) == set(want)
    for name, pattern in want.items():
        assert re.match(pattern, got[name]), (name, got[name])

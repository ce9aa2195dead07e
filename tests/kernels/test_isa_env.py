"""HWQ_ISA: every packed-kernel path this CPU can execute, forced through the environment variable
in a fresh process, bit-exact against the pure-torch reference on seeded random shapes (conv and
linear, binary and bit-serial, the float, packed-sign and ReLU epilogues); a path the CPU cannot
execute, and an unknown name, refused at import with the variable and the accepted values. What
the CPU can execute is read here from /proc/cpuinfo, independently of the extension's cpuid."""
import os
import subprocess
import sys
import textwrap

import pytest

import hwq.kernels as K

needs_ext = pytest.mark.skipif(not K.HAVE_EXTENSION, reason="hwq._C is not built")

# Each path and the CPU flags (as /proc/cpuinfo spells them) it executes.
PATH_FLAGS = {
    "avx512_vpopcntdq": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vpopcntdq"},
    "avx512bw": {"avx512f", "avx512bw", "avx512dq", "avx512vl"},
    "avx2": {"avx2"},
    "scalar_popcnt": {"popcnt"},
    "scalar": set(),
}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), None)
    except OSError:
        return None


FLAGS = _cpu_flags()
needs_cpuinfo = pytest.mark.skipif(FLAGS is None, reason="no x86 flags in /proc/cpuinfo")


def _executable() -> list[str]:
    return [p for p, need in PATH_FLAGS.items() if need <= FLAGS]


@needs_ext
@needs_cpuinfo
def test_available_paths_are_what_the_cpu_flags_allow():
    assert K.available_isas() == _executable()


_CHECK = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, os.path.join(sys.argv[2], "tests"))
    import hwq.kernels as K
    from hwq.kernels import reference as R
    from kernels.cases import binary_tensors, bitserial_tensors, conv_cases, linear_cases
    assert K.current_isa() == sys.argv[1], (K.current_isa(), sys.argv[1])
    gen = torch.Generator().manual_seed(sum(map(ord, sys.argv[1])))
    for binary, cases in ((True, conv_cases(30, seed=41)), (False, conv_cases(30, seed=42)),
                          (True, linear_cases(20, seed=43)), (False, linear_cases(20, seed=44))):
        for c in cases:
            x, w = (binary_tensors if binary else bitserial_tensors)(c, gen)
            if binary:
                got = K.binary_conv2d(x, w, **c.conv_kwargs())
                ref = R.binary_conv2d_ref(x, w, **c.conv_kwargs())
            else:
                got = K.bitserial_conv2d(x, w, c.a_bits, c.w_bits, **c.conv_kwargs())
                ref = R.bitserial_conv2d_ref(x, w, c.a_bits, c.w_bits, **c.conv_kwargs())
            assert torch.equal(got.long(), ref), c
            if c.n == 0 or ref.numel() == 0:
                continue
            # the epilogues: float32 sum * scale + bias, then ReLU, or the packed sign bits
            bits = 1 if binary else c.a_bits
            px = K.pack_activations(x, None if binary else c.a_bits, c.groups)
            pw = K.pack_weights(w, None if binary else c.w_bits, c.groups)
            scale, bias = torch.randn(c.cout, generator=gen), torch.randn(c.cout, generator=gen)
            args = (px.data, pw.data, c.cin, c.cout, list(c.k), bits,
                    1 if binary else c.w_bits, binary, list(c.stride), list(c.padding),
                    list(c.dilation), c.groups, scale, bias)
            want = ref.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
            assert torch.equal(torch.ops.hwq.conv2d_packed(*args, 1), want), c
            assert torch.equal(torch.ops.hwq.conv2d_packed(*args, 3), torch.relu(want)), c
            signs = torch.where(want < 0, -1.0, 1.0)
            assert torch.equal(torch.ops.hwq.conv2d_packed(*args, 2),
                               R.pack_activations_ref(signs, None)), c
    xs = torch.randn(2, 200, 5, 7, generator=gen).to(memory_format=torch.channels_last)
    assert torch.equal(K.pack_activations(xs).data, R.pack_activations_ref(xs, None))
    print("OK", K.current_isa())
""")


def _run(isa: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HWQ_ISA=isa, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _CHECK, isa, ROOT], env=env, capture_output=True,
                          text=True, timeout=600)


@needs_ext
@needs_cpuinfo
@pytest.mark.parametrize("isa", list(PATH_FLAGS))
def test_forced_path_is_exact_or_refused(isa):
    r = _run(isa)
    if PATH_FLAGS[isa] <= FLAGS:
        assert r.returncode == 0 and r.stdout.strip() == f"OK {isa}", r.stdout + r.stderr
    else:  # the CPU lacks a flag: refused at import, naming the variable and the features
        assert r.returncode != 0
        assert f"HWQ_ISA='{isa}' is not accepted" in r.stderr, r.stderr
        assert "which this CPU lacks" in r.stderr and "expected one of 'auto'" in r.stderr, r.stderr


@needs_ext
def test_unknown_path_is_refused():
    r = _run("sse9")
    assert r.returncode != 0
    assert "ValueError: environment variable HWQ_ISA='sse9' is not accepted: isa='sse9' is not " \
           "a kernel path: the paths are 'auto', 'avx512_vpopcntdq'" in r.stderr, r.stderr

"""The CUDA binding's argument checks and its path to the kernels, without a GPU.

csrc/cuda/hwq_cuda.cpp compiled with -DHWQ_CUDA_HOST_CHECKS (plus csrc/cuda/host_launch.cpp and the
two host emulators) is the CUDA binding's own code on CPU tensors: torch.ops.hwq_cuda_host.* run
every check the CUDA build runs, in the same order, and where the CUDA build would launch a kernel
they run the host emulation of that kernel (the sm_80 mma.sync one or the sm_90a wgmma one).

- Each bad call runs in its own subprocess (a crash, like the H200 run's SIGSEGV on a channel
  mismatch, fails that case instead of the whole run) and must raise the CPU op's message
  (csrc/hwq_ops.cpp; both come from csrc/packed_conv_args.h) with no crash.
- Good calls through the binding equal the CPU op bit for bit, on both kernel paths.
Skipped where the CPU extension hwq._C is not built or no C++ compiler is found. Device-placement
checks (a CPU tensor passed to the CUDA op) need a GPU: scripts/gpu_check.py's errors phase.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import hwq.kernels as K
from hwq.kernels import reference as ref
from hwq.kernels.cuda import CUDA_DIR

pytestmark = [
    pytest.mark.skipif(not K.HAVE_EXTENSION,
                       reason="hwq._C (the CPU op to compare with) is not built"),
    pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                       reason="no C++ compiler"),
]

HOST_SOURCES = [os.path.join(CUDA_DIR, f)
                for f in ("hwq_cuda.cpp", "host_launch.cpp", "emulate.cpp", "emulate_sm90.cpp")]


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory) -> str:
    """Path of the built host-check library (built once per session, in a temporary folder)."""
    from torch.utils import cpp_extension
    # about a minute on 2 cores (torch headers); HWQ_CUDA_HOST_BUILD keeps it between runs
    build = os.environ.get("HWQ_CUDA_HOST_BUILD") or str(tmp_path_factory.mktemp("hwq_cuda_host"))
    os.makedirs(build, exist_ok=True)
    cpp_extension.load(
        name="hwq_cuda_host", sources=HOST_SOURCES, extra_include_paths=[CUDA_DIR],
        extra_cflags=["-DHWQ_CUDA_HOST_CHECKS", "-O1", "-ffp-contract=off", "-g0"],
        build_directory=build, is_python_module=False, verbose=False)
    return os.path.join(build, "hwq_cuda_host.so")


# Each case: a Python expression over xp, wp (packed binary 1x64x4x4 input, 8x64x3x3 weights),
# xq, wq (the same with 2-bit codes), `ops` (torch.ops.hwq_cuda_host or torch.ops.hwq) and torch.


def conv(x="xp", w="wp", c=64, o=8, k="[3, 3]", a=1, wb=1, binary=True, s="[1, 1]", p="[1, 1]",
         d="[1, 1]", g=1, scale=None, bias=None, mode=0) -> str:
    """A conv2d_packed call (schema order) as an expression; the defaults are a valid call."""
    return (f"ops.conv2d_packed({x}, {w}, {c}, {o}, {k}, {a}, {wb}, {binary}, {s}, {p}, {d}, {g}, "
            f"{scale}, {bias}, {mode})")


BAD_CALLS = {
    "channel mismatch (the H200 SIGSEGV)": conv(c=128),
    "kernel size mismatch": conv(k="[1, 1]", p="[0, 0]"),
    "negative padding": conv(p="[-1, 1]"),
    "zero stride": conv(s="[0, 1]"),
    "groups 0": conv(g=0),
    "binary with 2 bits": conv(a=2),
    "9 bits": conv("xq", "wq", a=9, wb=2, binary=False),
    "planes mismatch": conv("xq", "wq", a=3, wb=2, binary=False),
    "out_mode 7": conv(mode=7),
    "float packed input": conv(x="xp.float()"),
    "scale with out_mode 0": conv(scale="torch.ones(8)"),
    "scale of 7 values": conv(scale="torch.ones(7)", mode=1),
    "int32 overflow": conv("torch.zeros(1, 8, 8, 1, 8, 17, dtype=torch.int64)",
                           "torch.zeros(1, 8, 4, 1088, 8, dtype=torch.int64)", c=1040,
                           k="[8, 8]", a=8, wb=8, binary=False, p="[0, 0]"),
    "pack bits 9": "ops.pack_activations(torch.ones(1, 4, 2, 2), 9, False, 1)",
    "pack 3-dim weights": "ops.pack_weights(torch.ones(4, 2, 2), 1, True, 1)",
}

# The child loads the two libraries by path (importing the hwq package would cost seconds).
SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.ops.load_library(sys.argv[3])  # hwq._C: the CPU op
    torch.ops.load_library(sys.argv[1])
    x, w = torch.ones(1, 64, 4, 4), torch.ones(8, 64, 3, 3)
    xp = torch.ops.hwq.pack_activations(x, 1, True, 1)
    wp = torch.ops.hwq.pack_weights(w, 1, True, 1)
    xq = torch.ops.hwq.pack_activations(x, 2, False, 1)
    wq = torch.ops.hwq.pack_weights(w, 2, False, 1)
    got = {}
    for side, ops in (("host", torch.ops.hwq_cuda_host), ("cpu", torch.ops.hwq)):
        print("calling", side, flush=True)  # the last line names a crashing side
        try:
            eval(sys.argv[2])
            got[side] = None
        except Exception as e:
            got[side] = [type(e).__name__, str(e).split("\\n")[0]]
    print("RESULT " + json.dumps(got), flush=True)
""")


def _run(lib: str, expr: str) -> subprocess.CompletedProcess:
    import hwq._C
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", SCRIPT, lib, expr, hwq._C.__file__],
                          capture_output=True, text=True, timeout=300, env=env)


def test_bad_calls_raise_the_cpu_messages_without_crashing(host_lib):
    names = list(BAD_CALLS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda n: _run(host_lib, BAD_CALLS[n]), names))
    problems = []
    for name, r in zip(names, runs):
        if r.returncode != 0:
            problems.append(f"{name}: exit {r.returncode} (crash?)\n{r.stdout[-500:]}"
                            f"{r.stderr[-1500:]}")
            continue
        got = json.loads(r.stdout.split("RESULT ", 1)[1])
        if got["host"] is None:
            problems.append(f"{name}: the CUDA binding accepted it (CPU op: {got['cpu']})")
        elif got["cpu"] is None:
            problems.append(f"{name}: the CPU op accepted it (CUDA binding: {got['host']})")
        elif got["host"] != got["cpu"]:
            problems.append(f"{name}: messages differ\n  CUDA binding: {got['host']}\n"
                            f"  CPU op:       {got['cpu']}")
    assert not problems, "\n".join(problems)


def test_cuda_only_refusals(host_lib):
    """What the CUDA binding refuses and the CPU op takes: out_mode 3 (not in the CUDA epilogue)
    and a forced wgmma path for a product with more than 4 plane pairs; both with a message."""
    w3 = "torch.ops.hwq.pack_weights(w, 3, False, 1)"
    exprs = {
        "out_mode 3": (conv(mode=3),
                       "out_mode=3 (float then ReLU) is not implemented by the CUDA kernels"),
        "wgmma for W3A2": (f"(torch.ops.hwq_cuda_host.set_path(1), "
                           f"{conv('xq', w3, a=2, wb=3, binary=False)})",
                           "path=1 (wgmma) cannot run this call"),
        "path 5": ("torch.ops.hwq_cuda_host.set_path(5)", "path=5 is not accepted"),
    }
    for name, (expr, message) in exprs.items():
        r = _run(host_lib, expr)
        assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stderr[-1500:]}"
        got = json.loads(r.stdout.split("RESULT ", 1)[1])
        assert got["host"] is not None and message in got["host"][1], (name, got)


def _values(shape, bits, signed, gen):
    if bits is None:
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    return torch.randint(lo, hi, shape, generator=gen).float()


def test_good_calls_through_the_binding_equal_the_cpu_op(host_lib):
    """The binding's whole path (checks, ConvParams, output allocation, workspace, path choice,
    layout of the result) with the emulated kernels, against the CPU op, bit for bit."""
    torch.ops.load_library(host_lib)
    host = torch.ops.hwq_cuda_host
    gen = torch.Generator().manual_seed(4)
    cases = [  # (a_bits, w_bits or None for binary, c, o, k, stride, pad, groups, mode)
        (None, None, 70, 40, 3, 1, 1, 1, 0), (None, None, 128, 20, 3, 2, 1, 2, 2),
        (2, 2, 64, 24, 3, 1, 1, 1, 1), (1, 3, 30, 9, 1, 1, 0, 1, 0), (3, 2, 65, 16, 3, 1, 2, 1, 0),
    ]
    try:
        for path in (0, 1, 2, -1):
            host.set_path(path)
            for a_bits, w_bits, c, o, k, stride, pad, groups, mode in cases:
                binary = a_bits is None
                if path in (1, 2) and not binary and a_bits * w_bits > 4:
                    continue  # refused (test_cuda_only_refusals)
                x = _values((2, c, 7, 6), a_bits, False, gen)
                w = _values((o, c // groups, k, k), w_bits, True, gen)
                ab, wb = (1, 1) if binary else (a_bits, w_bits)
                xp = torch.ops.hwq.pack_activations(x, ab, binary, groups)
                wp = torch.ops.hwq.pack_weights(w, wb, binary, groups)
                scale = bias = None
                if mode:
                    scale = (torch.rand(o, generator=gen) * 2 - 1) * 0.37
                    bias = torch.randn(o, generator=gen) * 3
                args = (c, o, [k, k], ab, wb, binary, [stride] * 2, [pad] * 2, [1, 1], groups,
                        scale, bias, mode)
                got = host.conv2d_packed(xp, wp, *args)
                want = torch.ops.hwq.conv2d_packed(xp, wp, *args)
                assert got.shape == want.shape and got.dtype == want.dtype, (path, a_bits, w_bits)
                same = (torch.equal(got, want) if mode != 1 else
                        torch.equal(got.contiguous().view(torch.int32),
                                    want.contiguous().view(torch.int32)))
                assert same, f"path={path} a={a_bits} w={w_bits} c={c} o={o} k={k} mode={mode}"
                if mode == 0:  # and the reference, independently of both bindings
                    r = (ref.binary_conv2d_ref(x, w, stride, pad, 1, groups) if binary else
                         ref.bitserial_conv2d_ref(x, w, a_bits, w_bits, stride, pad, 1, groups))
                    assert torch.equal(got.to(torch.int64), r)
    finally:
        host.set_path(-1)

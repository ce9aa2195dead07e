"""Build, check and time the CUDA kernels on a GPU machine (driven by scripts/gpu_check.sh).

    python scripts/gpu_check.py build   # JIT-build csrc/cuda (sm_80 + sm_90a) into $HWQ_CUDA_BUILD
    python scripts/gpu_check.py check   # bit-exact vs hwq/kernels/reference.py on randomized cases
    python scripts/gpu_check.py errors  # bad inputs raise argument errors (own process: a crash
                                        # there cannot hide the check results)
    python scripts/gpu_check.py bench   # one table: binary GEMM, binary 3x3 conv, W2A2 GEMM
    python scripts/gpu_check.py profile # one call per kernel, for ncu (scripts/gpu_profile.sh)

Needs only torch and a CUDA toolkit: hwq is loaded from this checkout by path (no install), and
where hwq._C (the CPU extension) is not built, the op schemas are defined from Python
(hwq/kernels/cuda.py). Each phase runs in its own process (gpu_check.sh), so a crash in one still
leaves the others' results.
"""
from __future__ import annotations

import importlib.util
import faulthandler
import json
import os
import random
import shutil
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
OUT = os.environ.get("OUT") or "/tmp/hwq_gpu_out"
BUILD = os.environ.get("HWQ_CUDA_BUILD", "/tmp/hwq_cuda_build")
# HWQ_CHECK_DEVICE=cpu runs the check harness against the CPU kernels (hwq._C), to test the harness
# itself on a machine without a GPU.
DEV = os.environ.get("HWQ_CHECK_DEVICE", "cuda")
# Seconds of conv cases the check phase runs at most (gpu_check.sh gives the phase 130 s in all).
BUDGET_S = float(os.environ.get("HWQ_CHECK_BUDGET_S", "90"))


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def _load(name: str, rel: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # a dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


ref = _load("hwq_reference", "hwq/kernels/reference.py")
cuda_mod = _load("hwq_kernels_cuda", "hwq/kernels/cuda.py")
OutMode = _load("hwq_out_mode", "hwq/kernels/out_mode.py").OutMode  # conv2d_packed's out_mode
cases = _load("hwq_kernel_cases", "tests/kernels/cases.py")  # the kernel tests' case generator


def device_info() -> str:
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
            f"{p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}")


def load_ext(verbose=False) -> None:
    t = time.time()
    where = cuda_mod.load(jit=True, build_directory=BUILD, verbose=verbose)
    print(f"extension: {where} ({time.time() - t:.1f} s)", flush=True)
    assert cuda_mod.is_loaded(), "torch.ops.hwq.conv2d_packed has no CUDA kernel after loading"


# ---- checks ----------------------------------------------------------------------------------

POISON = -0x55555556  # 0xAAAAAAAA as int32


def poison_allocator(numel: int) -> None:
    """Leave a freed block of poison in the caching allocator, so an output the kernel fails to
    write shows up as poison instead of as stale zeros."""
    if numel > 0 and DEV == "cuda":
        t = torch.full((numel,), POISON, dtype=torch.int32, device=DEV)
        del t


def values(shape, bits, signed, gen):
    """Random integer codes (float32) or +/-1 (bits None), never all zeros."""
    if bits is None:
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    return torch.randint(lo, hi, shape, generator=gen).float()


EDGE_CHANNELS = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 255, 256, 257, 300, 320]


# Largest work of a drawn case (output values x MACs per value x plane pairs, tests/kernels/cases.py):
# 1e8 gives 400 cases about the reference work (float64, on the host) of the generator used before.
GPU_MAX_COST = 1e8


def draw_conv_case(rng: random.Random, i: int) -> dict:
    """Conv case number ``i`` as run_conv_case takes it: the kernel tests' generator
    (tests/kernels/cases.py: every (a_bits, w_bits) pair in turn, groups, kernels 1-7 including
    non-square, stride, padding, dilation) with channel counts at tile boundaries and depthwise-like
    cases added; every third case binary; out_mode and tile configuration drawn here."""
    c = cases.draw_conv_case(rng, i, GPU_MAX_COST, edge_channels=tuple(EDGE_CHANNELS),
                             depthwise=0.05)
    binary = i % 3 == 0
    mode = rng.choice([OutMode.INT32, OutMode.INT32, OutMode.INT32, OutMode.FLOAT,
                       OutMode.PACKED_SIGN])
    return dict(binary=binary, a_bits=1 if binary else c.a_bits, w_bits=1 if binary else c.w_bits,
                groups=c.groups, c=c.cin, o=c.cout, kh=c.k[0], kw=c.k[1], stride=list(c.stride),
                pad=list(c.padding), dil=list(c.dilation), n=c.n, h=c.h, w=c.w, mode=mode,
                config=[-1, 0, 1][(i // 3) % 3])


def _pair(v) -> tuple[int, int]:
    """A case's stride / pad / dil: one int for both dimensions, or a pair."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


FIXED_CASES = [
    # name, params: linear-like and ResNet-like shapes, multi-block M and N, long K
    dict(binary=True, a_bits=1, w_bits=1, groups=1, c=1000, o=700, kh=1, kw=1, stride=1, pad=0,
         dil=1, n=999, h=1, w=1, mode=OutMode.INT32, config=-1),
    dict(binary=False, a_bits=2, w_bits=2, groups=1, c=1000, o=700, kh=1, kw=1, stride=1, pad=0,
         dil=1, n=999, h=1, w=1, mode=OutMode.INT32, config=1),
    dict(binary=True, a_bits=1, w_bits=1, groups=1, c=256, o=256, kh=3, kw=3, stride=1, pad=1,
         dil=1, n=3, h=14, w=14, mode=OutMode.INT32, config=1),
    dict(binary=True, a_bits=1, w_bits=1, groups=1, c=256, o=512, kh=3, kw=3, stride=2, pad=1,
         dil=1, n=2, h=14, w=14, mode=OutMode.PACKED_SIGN, config=0),
    dict(binary=False, a_bits=2, w_bits=2, groups=1, c=512, o=512, kh=3, kw=3, stride=1, pad=1,
         dil=1, n=2, h=7, w=7, mode=OutMode.FLOAT, config=-1),
    dict(binary=False, a_bits=8, w_bits=8, groups=1, c=64, o=64, kh=7, kw=7, stride=2, pad=3,
         dil=1, n=1, h=30, w=30, mode=OutMode.INT32, config=0),
    dict(binary=True, a_bits=1, w_bits=1, groups=64, c=64, o=64, kh=3, kw=3, stride=1, pad=1,
         dil=1, n=2, h=9, w=9, mode=OutMode.PACKED_SIGN, config=1),
]


# Kernel paths the checks run every conv case on (hwq.kernels.cuda.set_path): the sm_80 mma.sync
# kernel always, the wgmma kernel (auto picks it on an sm_90a build on an H100/H200 for products of
# <= 4 plane pairs, every out_mode but FLOAT_RELU) and, on every other case it takes, wgmma with
# unswizzled tiles.
WGMMA_PAIRS = 4


def wgmma_takes(p: dict) -> bool:
    return p["mode"] != OutMode.FLOAT_RELU and (
        p["binary"] or p["a_bits"] * p["w_bits"] <= WGMMA_PAIRS)


def run_conv_case(p: dict, gen: torch.Generator, paths=(-1,)) -> str | None:
    """None when the CUDA result equals the reference bit for bit on every kernel path in
    `paths` (hwq.kernels.cuda.set_path values), else a description naming the path."""
    binary = p["binary"]
    g = p["groups"]
    x = values((p["n"], p["c"], p["h"], p["w"]), None if binary else p["a_bits"], False, gen)
    wt = values((p["o"], p["c"] // g, p["kh"], p["kw"]), None if binary else p["w_bits"], True, gen)
    xd = x.to(DEV)
    if p.get("channels_last"):
        xd = xd.to(memory_format=torch.channels_last)
    bits_a = 1 if binary else p["a_bits"]
    bits_w = 1 if binary else p["w_bits"]
    poison_allocator(x.numel() * 2)
    xp = torch.ops.hwq.pack_activations(xd.half() if p.get("half") else xd, bits_a, binary, g)
    wp = torch.ops.hwq.pack_weights(wt.to(DEV), bits_w, binary, g)
    xr = ref.pack_activations_ref(x, None if binary else p["a_bits"], g)
    wr = ref.pack_weights_ref(wt, None if binary else p["w_bits"], g)
    if not torch.equal(xp.cpu(), xr):
        return "pack_activations differs from reference"
    if not torch.equal(wp.cpu(), wr):
        return "pack_weights differs from reference"
    s, pd, d = _pair(p["stride"]), _pair(p["pad"]), _pair(p["dil"])
    if binary:
        want = ref.binary_conv2d_ref(x, wt, s, pd, d, g)
    else:
        want = ref.bitserial_conv2d_ref(x, wt, p["a_bits"], p["w_bits"], s, pd, d, g)
    scale = bias = None
    mode = p["mode"]
    if mode != OutMode.INT32:
        scale = (torch.rand(p["o"], generator=gen) * 2 - 1) * 0.37
        bias = torch.randn(p["o"], generator=gen) * 3
    for path in paths:
        if DEV == "cuda":
            cuda_mod.set_config(p["config"])
            cuda_mod.set_path(path)
        try:
            poison_allocator(want.numel() * 2)
            y = torch.ops.hwq.conv2d_packed(
                xp, wp, p["c"], p["o"], [p["kh"], p["kw"]], bits_a, bits_w, binary, list(s),
                list(pd), list(d), g, None if scale is None else scale.to(DEV),
                None if bias is None else bias.to(DEV), mode)
            sync()
        finally:
            if DEV == "cuda":
                cuda_mod.set_path(-1)
        err = _compare(y.cpu(), want, mode, scale, bias)
        if err is not None:
            return f"path {path} ({PATH_NAMES.get(path, path)}): {err}"
    return None


PATH_NAMES = {-1: "auto", 0: "mma.sync", 1: "wgmma", 2: "wgmma-noswizzle"}


def _compare(y: torch.Tensor, want: torch.Tensor, mode: int, scale, bias) -> str | None:
    if mode == OutMode.INT32:
        if y.dtype != torch.int32 or y.shape != want.shape:
            return f"output {y.dtype} {tuple(y.shape)}, expected int32 {tuple(want.shape)}"
        bad = (y.to(torch.int64) != want)
    else:
        yf = want.to(torch.int32).to(torch.float32) * scale.view(1, -1, 1, 1)
        yf = yf + bias.view(1, -1, 1, 1)
        if mode == OutMode.FLOAT:
            if y.dtype != torch.float32 or y.shape != want.shape:
                return f"output {y.dtype} {tuple(y.shape)}, expected float32 {tuple(want.shape)}"
            bad = (y.view(torch.int32) != yf.contiguous().view(torch.int32))
        else:
            exp = ref.pack_activations_ref(yf, None, 1)
            if y.shape != exp.shape:
                return f"output {tuple(y.shape)}, expected {tuple(exp.shape)}"
            bad = (y != exp)
    if bool(bad.any()):
        idx = bad.nonzero()[0].tolist()
        return f"{int(bad.sum())} of {bad.numel()} values differ (first at {idx})"
    return None


def draw_pack_case(rng: random.Random, gen: torch.Generator):
    """Activation and weight values in a random dtype and memory layout."""
    binary = rng.random() < 0.4
    bits = None if binary else rng.randint(1, 8)
    groups = rng.choice([1, 1, 2, 3])
    cg = rng.choice(EDGE_CHANNELS) if rng.random() < 0.5 else rng.randint(1, 200)
    shape = (rng.randint(1, 3), cg * groups, rng.randint(1, 9), rng.randint(1, 9))
    wshape = (groups * rng.randint(1, 40), cg, rng.randint(1, 4), rng.randint(1, 4))
    if binary:
        x, w = torch.randn(shape, generator=gen), torch.randn(wshape, generator=gen)
        x[torch.rand(shape, generator=gen) < 0.1] = 0.0  # sign(0) = +1
        w[torch.rand(wshape, generator=gen) < 0.1] = 0.0
        dtypes = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
                  torch.int32, torch.int64]
    else:
        x, w = values(shape, bits, False, gen), values(wshape, bits, True, gen)
        dtypes = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int16,
                  torch.int32, torch.int64] + ([torch.int8] if bits < 8 else [])
    dtype = rng.choice(dtypes)
    layout = rng.choice(["nchw", "channels_last", "sliced"])
    return binary, bits, groups, x.to(dtype), w.to(dtype), layout


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    t = t.to(DEV)
    if layout == "channels_last":
        return t.to(memory_format=torch.channels_last)
    if layout == "sliced":  # non-contiguous: every other column of a wider tensor
        big = torch.zeros(*t.shape[:3], 2 * t.shape[3], dtype=t.dtype, device=DEV)
        big[..., ::2] = t
        return big[..., ::2]
    return t


def run_pack_case(case) -> str | None:
    binary, bits, groups, x, w, layout = case
    got = torch.ops.hwq.pack_activations(_layout(x, layout), 1 if binary else bits, binary,
                                         groups).cpu()
    if not torch.equal(got, ref.pack_activations_ref(x.to(torch.float64), bits, groups)):
        return f"pack_activations {x.dtype} {layout} binary={binary} bits={bits} differs"
    got = torch.ops.hwq.pack_weights(_layout(w, layout), 1 if binary else bits, binary,
                                     groups).cpu()
    if not torch.equal(got, ref.pack_weights_ref(w.to(torch.float64), bits, groups)):
        return f"pack_weights {w.dtype} {layout} binary={binary} bits={bits} differs"
    return None


# Bad calls of the errors phase: each runs in its own process (gpu_check.py error-one NAME), so that
# a crash (the H200 runs' SIGSEGV on "channel mismatch") fails that call alone and is named.
# Expressions over xp, wp (packed binary 1x64x4x4 / 8x64x3x3 on the GPU), torch, ops = torch.ops.hwq
def _conv(x="xp", w="wp", c=64, o=8, a=1, wb=1, binary=True, p="[1, 1]", scale=None,
          mode=OutMode.INT32) -> str:
    return (f"ops.conv2d_packed({x}, {w}, {c}, {o}, [3, 3], {a}, {wb}, {binary}, [1, 1], {p}, "
            f"[1, 1], 1, {scale}, None, {int(mode)})")


_W3A2 = _conv("ops.pack_activations(torch.ones(1, 64, 4, 4, device='cuda'), 2, False, 1)",
              "ops.pack_weights(torch.ones(8, 64, 3, 3, device='cuda'), 3, False, 1)", a=2, wb=3,
              binary=False)
BAD_CALLS = {
    "weights on the CPU": _conv(w="wp.cpu()"),
    "channel mismatch": _conv(c=128),
    "output channel mismatch": _conv(o=40),
    "negative padding": _conv(p="[-1, 1]"),
    "float packed input": _conv(x="xp.float()"),
    "scale with out_mode 0": _conv(scale="torch.ones(8, device='cuda')"),
    "scale on the CPU": _conv(scale="torch.ones(8)", mode=OutMode.FLOAT),
    "wgmma forced for W3A2": f"(torch.ops.hwq_cuda.set_path(1), {_W3A2})",
    "bits 9": "ops.pack_activations(torch.ones(1, 4, 2, 2, device='cuda'), 9, False, 1)",
}


def error_one(name: str) -> int:
    """One bad call (errors phase child): 0 when it raised an argument error, 1 otherwise."""
    load_ext()
    ops = torch.ops.hwq
    xp = ops.pack_activations(torch.ones(1, 64, 4, 4, device="cuda"), 1, True, 1)
    wp = ops.pack_weights(torch.ones(8, 64, 3, 3, device="cuda"), 1, True, 1)
    torch.cuda.synchronize()
    print(f"calling: {name}", flush=True)
    try:
        eval(BAD_CALLS[name], {"torch": torch, "ops": ops, "xp": xp, "wp": wp})
        torch.cuda.synchronize()
    except RuntimeError as e:
        msg = str(e).split("\n")[0]
        if "CUDA error" in msg or "illegal" in msg or "failed:" in msg:
            print(f"FAIL {name}: CUDA failure instead of an argument error: {msg}", flush=True)
            return 1
        print(f"ok {name}: {msg}", flush=True)
        return 0
    print(f"FAIL {name}: no error raised", flush=True)
    return 1


def run_error_checks() -> list[str]:
    """Every bad call in its own process; then an empty batch in this one."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor
    fails = []

    def one(name):
        try:
            return subprocess.run([sys.executable, os.path.abspath(__file__), "error-one", name],
                                  capture_output=True, text=True, timeout=45)
        except subprocess.TimeoutExpired as e:  # a hang: reported as such, the others still count
            out = e.stdout or ""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            return subprocess.CompletedProcess(e.cmd, 124, out + "\nTIMED OUT after 45 s", "")
    with ThreadPoolExecutor(max_workers=5) as pool:
        runs = list(pool.map(one, BAD_CALLS))
    crash_traced = []

    def why(rc):
        return "crash" if rc < 0 else "timeout" if rc == 124 else "no argument error"
    for name, r in zip(BAD_CALLS, runs):
        out = (r.stdout + r.stderr).strip().splitlines()
        print(f"  {name}: rc {r.returncode}: {out[-1] if out else ''}", flush=True)
        if r.returncode != 0:
            fails.append(f"error check '{name}': rc {r.returncode} "
                         f"({why(r.returncode)}); last lines: "
                         + " | ".join(out[-6:]))
        if r.returncode < 0 and shutil.which("cuda-gdb") and not crash_traced:
            # A crash: once, the native stack of the crashing call (cuda-gdb also debugs host
            # code; the GPU machines have no gdb), into errors.log.
            crash_traced.append(name)
            try:
                g = subprocess.run(
                    ["cuda-gdb", "-batch", "-ex", "set pagination off", "-ex", "run", "-ex",
                     "bt 40", "--args", sys.executable, os.path.abspath(__file__), "error-one", name],
                    capture_output=True, text=True, timeout=35)
                lines = [ln for ln in g.stdout.splitlines() if ln.startswith("#") or "SIG" in ln]
                print(f"  native stack of '{name}' (cuda-gdb):", flush=True)
                for ln in lines[:45]:
                    print("    " + ln[:300], flush=True)
            except Exception as e:  # a debugger that hangs or is missing costs nothing else
                print(f"  cuda-gdb on '{name}' failed: {type(e).__name__}: {e}", flush=True)
    load_ext()
    print("  empty batch", flush=True)
    xp = torch.ops.hwq.pack_activations(torch.ones(1, 64, 4, 4, device=DEV), 1, True, 1)
    wp = torch.ops.hwq.pack_weights(torch.ones(8, 64, 3, 3, device=DEV), 1, True, 1)
    e = torch.ops.hwq.conv2d_packed(xp[:0], wp, 64, 8, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1],
                                    1, None, None, OutMode.INT32)
    if tuple(e.shape) != (0, 8, 4, 4):
        fails.append(f"empty batch: shape {tuple(e.shape)}")
    return fails


def check(n_conv: int, n_pack: int, seed: int, max_fail: int = 10) -> int:
    """Packing and conv cases; stops after `max_fail` conv failures (the rest would say nothing
    new). Bad inputs are the `errors` phase."""
    if DEV == "cuda":
        print(f"device: {device_info()}", flush=True)
        load_ext()
    else:
        import hwq._C  # noqa: F401  (harness test: the CPU kernels stand in for the CUDA ones)
        print("device: CPU (harness test against hwq._C)", flush=True)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    log = open(os.path.join(OUT, "check_cases.jsonl"), "w")
    failures, t0 = [], time.time()
    counts = {"pack": [0, 0], "conv": [0, 0]}
    stopped = ""

    def record(kind, params, err):
        counts[kind][1] += 1
        if err is None:
            counts[kind][0] += 1
        else:
            failures.append((kind, params, err))
            print(f"FAIL {kind}: {err} :: {params}", flush=True)
        log.write(json.dumps({"kind": kind, "params": params, "error": err}) + "\n")

    for _ in range(n_pack):
        case = draw_pack_case(rng, gen)
        desc = {"binary": case[0], "bits": case[1], "groups": case[2], "shape": list(case[3].shape),
                "wshape": list(case[4].shape), "dtype": str(case[3].dtype), "layout": case[5]}
        try:
            record("pack", desc, run_pack_case(case))
        except Exception as e:  # report and go on (a sticky CUDA error will fail the rest)
            record("pack", desc, f"{type(e).__name__}: {e}")
    cases = FIXED_CASES + [dict(FIXED_CASES[2], channels_last=True, half=True)]
    cases += [draw_conv_case(rng, i) for i in range(n_conv)]
    wgmma = DEV == "cuda" and torch.cuda.get_device_capability(0) == (9, 0)
    for i, p in enumerate(cases):
        paths = [0]
        if wgmma and wgmma_takes(p):
            paths += [1] + ([2] if i % 2 == 0 else [])
            for path in paths[1:]:
                counts.setdefault(f"conv {PATH_NAMES[path]}", [0, 0])
        try:
            err = run_conv_case(p, gen, paths)
            record("conv", p, err)
            for path in paths[1:]:
                c = counts[f"conv {PATH_NAMES[path]}"]
                c[1] += 1
                c[0] += err is None or not err.startswith(f"path {path} ")
        except Exception as e:
            record("conv", p, f"{type(e).__name__}: {e}")
            if "CUDA" in str(e) and "illegal" in str(e).lower():
                print("sticky CUDA error: stopping the checks", flush=True)
                stopped = " (STOPPED EARLY: sticky CUDA error)"
                break
        conv_fails = counts["conv"][1] - counts["conv"][0]
        if conv_fails >= max_fail and i + 1 < len(cases):
            stopped = (f" (STOPPED EARLY after {conv_fails} conv failures; {len(cases) - i - 1} "
                       "cases not run)")
            print(f"{conv_fails} conv failures: stopping the checks early", flush=True)
            break
        if time.time() - t0 > BUDGET_S and i + 1 < len(cases):
            stopped = (f" (STOPPED at the {BUDGET_S:.0f} s budget: {len(cases) - i - 1} cases not "
                       "run)")
            print(stopped.strip(), flush=True)
            break
        if i % 100 == 99:
            print(f"  {i + 1} conv cases, {len(failures)} failures, {time.time() - t0:.0f} s",
                  flush=True)
    if DEV == "cuda":
        cuda_mod.set_config(-1)
    log.close()
    bits_seen = sorted({(c["a_bits"], c["w_bits"]) for c in cases if not c["binary"]})
    per_path = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in counts.items()
                         if k.startswith("conv ")) or "no wgmma cases (not an sm_90 GPU)"
    summary = (f"CHECKS {'PASSED' if not failures else 'FAILED'}: pack {counts['pack'][0]}/"
               f"{counts['pack'][1]}, conv {counts['conv'][0]}/{counts['conv'][1]} of "
               f"{len(cases)} ({len(bits_seen)} of 64 (a, w) bit pairs; every case on mma.sync; "
               f"{per_path}){stopped}, {time.time() - t0:.0f} s")
    print(summary, flush=True)
    with open(os.path.join(OUT, "check_summary.txt"), "w") as f:
        f.write(summary + "\n")
        for kind, params, err in failures[:50]:
            f.write(f"{kind}: {err} :: {params}\n")
    return 0 if not failures else 1


def errors() -> int:
    """Bad inputs raise argument errors, each in its own process (and an empty batch works)."""
    print(f"device: {device_info()}", flush=True)
    try:
        fails = run_error_checks()
    except Exception:
        fails = ["error checks raised: " + traceback.format_exc()]
    for f in fails:
        print("FAIL", f, flush=True)
    total = len(BAD_CALLS) + 1
    print(f"BAD-INPUT CHECKS {'PASSED' if not fails else 'FAILED'}: {total - len(fails)}/{total}",
          flush=True)
    return 0 if not fails else 1


# ---- benchmark -------------------------------------------------------------------------------

def time_gpu(fn, calls_per_graph: int = 10, replays: int = 7, eager_iters: int = 20):
    """Median seconds per call: CUDA-graph replay of `calls_per_graph` calls (no launch gaps), timed
    with CUDA events; falls back to eager per-call events if capture fails. Returns (s, how)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    try:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()  # warm-up on the capture stream
            torch.cuda.synchronize()
            with torch.cuda.graph(graph, stream=stream):
                for _ in range(calls_per_graph):
                    fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(replays):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            graph.replay()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1e3 / calls_per_graph)
        del graph
        torch.cuda.synchronize()
        return statistics.median(times), "graph"
    except Exception as err:  # capture unsupported for this op: time eagerly, say so
        print(f"  (graph capture failed: {type(err).__name__}: {err}; timing eagerly)", flush=True)
        torch.cuda.synchronize()
        times = []
        for _ in range(eager_iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        return statistics.median(times), "eager"


def bench() -> int:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    info = device_info()
    print(f"device: {info}", flush=True)
    load_ext()
    # Kernel variants timed: (label, path, sm_80 tile config). wgmma only on compute capability 9.0.
    # mma.sync first: if a wgmma kernel faults, the CUDA context is lost for the rest of the
    # process, and the known kernel's numbers are already in the table.
    variants = [(f"mma.sync {n}", 0, i) for i, n in enumerate(cuda_mod.config_names())]
    if torch.cuda.get_device_capability(0) == (9, 0):
        variants += [("wgmma", 1, -1), ("wgmma-noswizzle", 2, -1)]
    rows = []  # (case, impl, variant, us, rate, ratio, exact)
    best = {}  # case -> (seconds, variant) of the fastest exact hwq variant
    gen = torch.Generator(device="cuda").manual_seed(1)

    def add(case, impl, cfg, sec, rate, ratio="", exact=""):
        rows.append((case, impl, cfg, f"{sec * 1e6:,.1f}", rate, ratio, exact))
        print(f"  {case} | {impl} | {cfg} | {sec * 1e6:,.1f} us | {rate} | {ratio} | {exact}",
              flush=True)

    def safe(label, f):
        try:
            f()
        except Exception as e:
            print(f"  {label} FAILED: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
            rows.append((label, "FAILED", "", "", f"{type(e).__name__}: {str(e)[:80]}", "", ""))
            torch.cuda.synchronize()

    def pm1(shape):
        return torch.where(torch.rand(shape, device="cuda", generator=gen) < 0.5, -1.0, 1.0)

    def each_variant(case, body):
        """body(label, path, cfg) per variant; a failing variant is a row, the others still run."""
        for label, path, cfg in variants:
            try:
                body(label, path, cfg)
            except Exception as e:
                print(f"  {case} {label} FAILED: {type(e).__name__}: {e}", flush=True)
                rows.append((case, "FAILED", label, "", f"{type(e).__name__}: {str(e)[:80]}", "",
                             ""))
            finally:
                cuda_mod.set_path(-1)
                cuda_mod.set_config(-1)

    def run_variant(path, cfg, fn):
        cuda_mod.set_path(path)
        cuda_mod.set_config(cfg)
        try:
            return time_gpu(fn)
        finally:
            cuda_mod.set_config(-1)
            cuda_mod.set_path(-1)

    def note_best(key, t, label, exact):
        if exact and (key not in best or t < best[key][0]):
            best[key] = (t, label)

    S = 8192
    ops = 2.0 * S ** 3
    ctx = {}

    def ref_gemms():
        a16 = torch.randn(S, S, device="cuda", dtype=torch.float16, generator=gen)
        b16 = torch.randn(S, S, device="cuda", dtype=torch.float16, generator=gen)
        t, how = time_gpu(lambda: a16 @ b16, calls_per_graph=5)
        add("GEMM 8192^3", "cuBLAS fp16", how, t, f"{ops / t / 1e12:,.0f} TFLOP/s")
        del a16, b16
        a8 = torch.randint(-128, 128, (S, S), device="cuda", dtype=torch.int8, generator=gen)
        b8 = torch.randint(-128, 128, (S, S), device="cuda", dtype=torch.int8, generator=gen)
        # torch._int_mm at each layout of B: row-major (K, N), and column-major (N, K)^T, which
        # is cuBLASLt's native int8 "TN" layout; the best one is the reference.
        b8t = b8.t().contiguous().t()
        for label, bb in (("B row-major", b8), ("B column-major", b8t)):
            t, how = time_gpu(lambda bb=bb: torch._int_mm(a8, bb), calls_per_graph=5)
            if "int8" not in ctx or t < ctx["int8"][0]:
                ctx["int8"] = (t, label)
            add("GEMM 8192^3", f"torch._int_mm int8, {label}", how, t,
                f"{ops / t / 1e12:,.0f} TOPS")
    safe("GEMM 8192^3 competitors", ref_gemms)

    def binary_gemm():
        x, w = pm1((S, S)), pm1((S, S))
        xp = torch.ops.hwq.pack_activations(x.view(S, S, 1, 1), 1, True, 1)
        wp = torch.ops.hwq.pack_weights(w.view(S, S, 1, 1), 1, True, 1)
        def body(label, path, cfg):
            cuda_mod.set_path(path)
            cuda_mod.set_config(cfg)
            y = torch.ops.hwq.conv2d_packed(xp, wp, S, S, [1, 1], 1, 1, True, [1, 1], [0, 0],
                                            [1, 1], 1, None, None, OutMode.INT32).view(S, S)
            cuda_mod.set_path(-1)
            cuda_mod.set_config(-1)
            # exact: fp32 sums of +/-1 are exact below 2^24 (TF32 off)
            exact = bool(torch.equal(y[:512].float(), x[:512] @ w.t())) and bool(
                torch.equal(y[-300:, -300:].float(), x[-300:] @ w[-300:].t()))
            del y
            for mode, out in ((OutMode.INT32, "int32 out"),
                              (OutMode.PACKED_SIGN, "packed-sign out")):
                f = lambda mode=mode: torch.ops.hwq.conv2d_packed(  # noqa: E731
                    xp, wp, S, S, [1, 1], 1, 1, True, [1, 1], [0, 0], [1, 1], 1, None, None, mode)
                t, how = run_variant(path, cfg, f)
                note_best(f"binary GEMM {out}", t, label, exact)
                add("binary GEMM 8192^3", f"hwq {out}", f"{label} {how}", t,
                    f"{ops / t / 1e15:.2f} P ops/s", "", "yes" if exact else "NO")
        each_variant("binary GEMM 8192^3", body)
    safe("binary GEMM 8192^3", binary_gemm)

    def w2a2_gemm():
        x = torch.randint(0, 4, (S, S), device="cuda", generator=gen).float()
        w = torch.randint(-2, 2, (S, S), device="cuda", generator=gen).float()
        xp = torch.ops.hwq.pack_activations(x.view(S, S, 1, 1), 2, False, 1)
        wp = torch.ops.hwq.pack_weights(w.view(S, S, 1, 1), 2, False, 1)
        want = (x[:512].double() @ w.t().double())
        def body(label, path, cfg):
            cuda_mod.set_path(path)
            cuda_mod.set_config(cfg)
            y = torch.ops.hwq.conv2d_packed(xp, wp, S, S, [1, 1], 2, 2, False, [1, 1], [0, 0],
                                            [1, 1], 1, None, None, OutMode.INT32).view(S, S)
            cuda_mod.set_path(-1)
            cuda_mod.set_config(-1)
            exact = bool(torch.equal(y[:512].double(), want))
            del y
            f = lambda: torch.ops.hwq.conv2d_packed(  # noqa: E731
                xp, wp, S, S, [1, 1], 2, 2, False, [1, 1], [0, 0], [1, 1], 1, None, None, OutMode.INT32)
            t, how = run_variant(path, cfg, f)
            note_best("W2A2 GEMM", t, label, exact)
            ratio = f"{ctx['int8'][0] / t:.2f}x vs best _int_mm" if "int8" in ctx else ""
            add("W2A2 GEMM 8192^3", "hwq int32 out", f"{label} {how}", t,
                f"{ops / t / 1e12:,.0f} TOPS (2-bit)", ratio, "yes" if exact else "NO")
        each_variant("W2A2 GEMM 8192^3", body)
    safe("W2A2 GEMM 8192^3", w2a2_gemm)

    for c, hw in ((256, 14), (512, 7)):
        def conv(c=c, hw=hw):
            n = 256
            case = f"binary 3x3 conv {c}ch {hw}x{hw} b{n}"
            flops = 2.0 * n * hw * hw * c * c * 9
            x, w = pm1((n, c, hw, hw)), pm1((c, c, 3, 3))
            xh = x.half().to(memory_format=torch.channels_last)
            wh = w.half().to(memory_format=torch.channels_last)
            t_ref, how = time_gpu(lambda: F.conv2d(xh, wh, padding=1))
            ctx[case] = t_ref
            add(case, "cuDNN fp16 channels_last", how, t_ref,
                f"{flops / t_ref / 1e12:,.0f} TFLOP/s")
            xp = torch.ops.hwq.pack_activations(xh, 1, True, 1)
            wp = torch.ops.hwq.pack_weights(w, 1, True, 1)
            t, how = time_gpu(lambda: torch.ops.hwq.pack_activations(xh, 1, True, 1))
            add(case, "hwq pack_activations (fp16 in)", how, t, "")
            # float64 reference on 16 images (exact; an fp32 cuDNN conv may pick Winograd)
            want = F.conv2d(x[:16].double(), w.double(), padding=1)
            def body(label, path, cfg):
                cuda_mod.set_path(path)
                cuda_mod.set_config(cfg)
                y = torch.ops.hwq.conv2d_packed(xp, wp, c, c, [3, 3], 1, 1, True, [1, 1], [1, 1],
                                                [1, 1], 1, None, None, OutMode.INT32)
                cuda_mod.set_path(-1)
                cuda_mod.set_config(-1)
                exact = bool(torch.equal(y[:16].double(), want))
                del y
                for mode, out in ((OutMode.INT32, "int32 out"),
                              (OutMode.PACKED_SIGN, "packed-sign out")):
                    f = lambda mode=mode: torch.ops.hwq.conv2d_packed(  # noqa: E731
                        xp, wp, c, c, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1, None, None,
                        mode)
                    t, how = run_variant(path, cfg, f)
                    note_best(f"{case} {out}", t, label, exact)
                    add(case, f"hwq {out}", f"{label} {how}", t,
                        f"{flops / t / 1e15:.2f} P ops/s", f"{t_ref / t:.2f}x vs cuDNN fp16",
                        "yes" if exact else "NO")
            each_variant(case, body)
        safe(f"binary conv {c}", conv)

    table = ["| case | implementation | kernel / timing | us per call | rate | ratio | exact |",
             "|---|---|---|---:|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    # The targets (H200, batch 256): milestone / goal.
    goals = ["", "Against the targets (fastest exact hwq variant; milestone / goal):"]
    for out in ("int32 out", "packed-sign out"):
        if f"binary GEMM {out}" in best:
            t, label = best[f"binary GEMM {out}"]
            goals.append(f"- binary GEMM 8192^3, {out}: {ops / t / 1e15:.2f} P ops/s ({label}); "
                         "target 5 / 10")
    for c, hw in ((256, 14), (512, 7)):
        case = f"binary 3x3 conv {c}ch {hw}x{hw} b256"
        for out in ("int32 out", "packed-sign out"):
            if f"{case} {out}" in best and case in ctx:
                t, label = best[f"{case} {out}"]
                goals.append(f"- {case}, {out}: {ctx[case] / t:.2f}x cuDNN fp16 channels_last "
                             f"({label}); target 2x / 4x")
    if "W2A2 GEMM" in best and "int8" in ctx:
        t, label = best["W2A2 GEMM"]
        goals.append(f"- W2A2 GEMM 8192^3: {ctx['int8'][0] / t:.2f}x torch._int_mm at its best "
                     f"layout ({ctx['int8'][1]}, {ops / ctx['int8'][0] / 1e12:,.0f} TOPS) "
                     f"({label}); target 1.5x / 2x")
    text = (f"\nBenchmark on {info}; medians of CUDA-graph replays (CUDA events); "
            "ops = 2 x MACs.\n" + "\n".join(table) + "\n" + "\n".join(goals) + "\n")
    with open(os.path.join(OUT, "bench_table.md"), "w") as f:
        f.write(text)
    print(text, flush=True)
    return 0


def profile() -> int:
    """One call of each kernel worth profiling, for Nsight Compute (scripts/gpu_profile.sh runs this
    phase under ncu): the binary GEMM 8192^3 (int32 out) on wgmma and on mma.sync 128x128, and the
    binary 3x3 conv 256ch 14x14 batch 256 on wgmma. No timing here: ncu replays each kernel."""
    print(f"device: {device_info()}", flush=True)
    load_ext()
    gen = torch.Generator(device="cuda").manual_seed(1)

    def pm1(shape):
        return torch.where(torch.rand(shape, device="cuda", generator=gen) < 0.5, -1.0, 1.0)

    S = 8192
    xp = torch.ops.hwq.pack_activations(pm1((S, S, 1, 1)), 1, True, 1)
    wp = torch.ops.hwq.pack_weights(pm1((S, S, 1, 1)), 1, True, 1)
    n, c, hw = 256, 256, 14
    cxp = torch.ops.hwq.pack_activations(pm1((n, c, hw, hw)).half(), 1, True, 1)
    cwp = torch.ops.hwq.pack_weights(pm1((c, c, 3, 3)), 1, True, 1)
    calls = [("binary GEMM 8192^3, wgmma", 1, -1,
              lambda: torch.ops.hwq.conv2d_packed(xp, wp, S, S, [1, 1], 1, 1, True, [1, 1],
                                                  [0, 0], [1, 1], 1, None, None, OutMode.INT32)),
             ("binary GEMM 8192^3, mma.sync 128x128", 0, 0,
              lambda: torch.ops.hwq.conv2d_packed(xp, wp, S, S, [1, 1], 1, 1, True, [1, 1],
                                                  [0, 0], [1, 1], 1, None, None, OutMode.INT32)),
             ("binary 3x3 conv 256ch 14x14 b256, wgmma", 1, -1,
              lambda: torch.ops.hwq.conv2d_packed(cxp, cwp, c, c, [3, 3], 1, 1, True, [1, 1],
                                                  [1, 1], [1, 1], 1, None, None, OutMode.INT32))]
    for label, path, cfg, f in calls:
        cuda_mod.set_path(path)
        cuda_mod.set_config(cfg)
        try:
            f()
            torch.cuda.synchronize()
            print(f"profiled: {label}", flush=True)
        finally:
            cuda_mod.set_path(-1)
            cuda_mod.set_config(-1)
    return 0


def main() -> int:
    faulthandler.enable()  # a segfault prints the Python stack (to stderr: the phase's log)
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1] if len(sys.argv) > 1 else "check"
    if what == "check" and DEV == "cpu":
        return check(int(os.environ.get("HWQ_CHECK_CASES", "400")),
                     int(os.environ.get("HWQ_CHECK_PACK", "150")), int(os.environ.get("SEED", "0")),
                     int(os.environ.get("HWQ_CHECK_MAX_FAIL", "10")))
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (the compile-only test covers CI)")
        return 2
    if what == "build":
        print(f"device: {device_info()}", flush=True)
        load_ext(verbose=True)
        return 0
    if what == "check":
        return check(int(os.environ.get("HWQ_CHECK_CASES", "400")),
                     int(os.environ.get("HWQ_CHECK_PACK", "150")), int(os.environ.get("SEED", "0")),
                     int(os.environ.get("HWQ_CHECK_MAX_FAIL", "10")))
    if what == "errors":
        return errors()
    if what == "error-one":
        return error_one(sys.argv[2])
    if what == "bench":
        return bench()
    if what == "profile":
        return profile()
    print(f"unknown phase {what!r}: expected build, check, errors, bench or profile")
    return 2


if __name__ == "__main__":
    sys.exit(main())

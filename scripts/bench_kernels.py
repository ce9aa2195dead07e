"""Speed of the packed CPU kernels (hwq.kernels, the C++ extension hwq._C) against this machine's
own ceilings and against torch's fp32 conv2d (oneDNN) and torch's int8 quantized conv (x86
backend, what users pick today), on the 3x3 layers of ResNet-18 (batch 16) and a few
DeepBench-style conv shapes; optionally a binary ResNet-18 end to end (hwq.deploy) against its
float and int8 twins (torch FX x86 int8, and PT2E + Inductor x86 int8 with --pt2e).

Ceilings, measured first on the same threads (printed with the machine's name and flags):
  clock     core cycles per second: a chain of dependent one-cycle adds (torch.ops.hwq.cycle_probe).
  binary    binary MACs (bits) per second of the dispatched popcount path: its own XOR + popcount
            + accumulate sequence on register operands, no loads (torch.ops.hwq.popcount_peak).
  fp32      MACs per second of torch's large fp32 GEMM (512^3; 1536^3 in CPU time): the faster
            of torch.mm (MKL) and oneDNN's (torch's mkldnn_linear, what its convolutions run on).
            MKL takes its AVX2 code on AMD CPUs: on a Zen 5 it ran at 13 fp32 MACs per cycle
            against oneDNN's 28.5, and F.conv2d at twice torch.mm's rate.
  int8      MACs per second of oneDNN's large u8 x s8 GEMM (torch.ops.onednn.qlinear, as fp32),
            the kernels of torch's x86 int8 path.
Each kernel is then reported as the fraction of its ceiling it reaches: binary layers against the
binary ceiling, bit-serial WxAy layers counting x * y binary MACs per MAC, fp32 and int8 against
theirs. Ceilings and layers alike take the fastest of many short runs: on a shared machine that is
the least-disturbed one (a median there measures the other jobs as much as the kernel).

Everything runs in this one process with the same thread count. Each configuration gets a warm-up
run, then all of a layer's configurations are timed in interleaved rounds (so drift on a shared
machine hits all of them alike); each round times a burst of calls of one configuration, at least
10 ms of them (a single call where one takes longer), and the fastest round's time per call is
reported, with speed-ups over fp32 (higher is faster) and over int8. A burst, as the ceilings'
repeated loops and oneDNN's benchdnn do, measures a kernel's steady rate: on a Zen 5 EPYC the
first call after another heavy kernel ran 10-15% slower than the next (the binary 64-channel
layer 1.12-1.20 ms right after torch's fp32 conv, 1.00-1.04 ms as the second call;
docs/kernels.md), a cost of what the previous work leaves behind that a one-call round charges to
whichever configuration comes next. The end-to-end models are timed one call per round (each takes
tens of milliseconds or more).

What each column times (inputs prepared outside the timed region, as inside a network):
  fp32      F.conv2d on an NCHW float tensor.
  int8      torch.ao.nn.quantized.Conv2d on a quint8 channels-last input (requantized output).
  binary    torch.ops.hwq.conv2d_packed on packed +/-1 input, float output with the per-channel
            scale/bias epilogue (what hwq.deploy runs); "+pack" adds packing the float input
            (channels-last, as a deployed layer receives it from the previous one).
  WxAy      bit-serial: signed x-bit weights, unsigned y-bit activations, packed input, float out.
After the layers, ResNet-18's stem max pool: torch's F.max_pool2d against hwq.deploy's (no argmax
indices, the same values).

    .venv/bin/python scripts/bench_kernels.py [--rounds 7] [--threads N] [--isa NAME] [--e2e]
        [--pt2e] [--no-layers] [--no-deepbench] [--batch 16] [--cpu-time]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import torch
from torch.nn import functional as F

import hwq.kernels as K
from hwq.kernels import int8 as I8

# The clock every timing reads: wall time, or with --cpu-time this process's CPU time, which on a
# machine shared with other jobs leaves out the time the OS gives them (one thread only).
TIMER = time.perf_counter

# (name, batch, in_channels, out_channels, height = width, kernel, stride)
RESNET18_3X3 = [
    ("resnet18 64ch 56x56", 16, 64, 64, 56, 3, 1),
    ("resnet18 128ch 28x28", 16, 128, 128, 28, 3, 1),
    ("resnet18 256ch 14x14", 16, 256, 256, 14, 3, 1),
    ("resnet18 512ch 7x7", 16, 512, 512, 7, 3, 1),
    ("resnet18 64->128 s2", 16, 64, 128, 56, 3, 2),
    ("resnet18 256->512 s2", 16, 256, 512, 14, 3, 2),
]
# Shapes in the style of DeepBench's inference conv set (batch 1-8; 3x3 and 1x1).
DEEPBENCH = [
    ("deepbench 3x3 64ch 112x112 b1", 1, 64, 64, 112, 3, 1),
    ("deepbench 3x3 128ch 56x56 b4", 4, 128, 128, 56, 3, 1),
    ("deepbench 3x3 512ch 14x14 b8", 8, 512, 512, 14, 3, 1),
    ("deepbench 1x1 832->256 7x7 b8", 8, 832, 256, 7, 1, 1),
    ("deepbench 1x1 480->192 14x14 b4", 4, 480, 192, 14, 1, 1),
]
BITSERIAL = [(1, 2), (2, 2), (3, 3), (4, 4)]  # (w_bits, a_bits)


def conv_configs(batch, cin, cout, hw, k, stride, with_pack: bool):
    """{name: zero-argument callable} for one layer, inputs built once."""
    g = torch.Generator().manual_seed(0)
    pad = k // 2
    x = torch.randn(batch, cin, hw, hw, generator=g)
    w = torch.randn(cout, cin, k, k, generator=g)
    scale, bias = torch.rand(cout, generator=g), torch.randn(cout, generator=g)
    out = {"fp32": lambda: F.conv2d(x, w, stride=stride, padding=pad)}

    torch.backends.quantized.engine = "x86"
    qconv = torch.ao.nn.quantized.Conv2d(cin, cout, k, stride=stride, padding=pad)
    qconv.set_weight_bias(torch.quantize_per_channel(w, w.abs().amax((1, 2, 3)) / 127,
                                                     torch.zeros(cout, dtype=torch.long), 0,
                                                     torch.qint8), None)
    qconv.scale, qconv.zero_point = 0.05, 64
    qx = torch.quantize_per_tensor(x.relu().contiguous(memory_format=torch.channels_last),
                                   0.02, 0, torch.quint8)
    out["int8"] = lambda: qconv(qx)

    geometry = ([k, k], [stride, stride], [pad, pad], [1, 1], 1)
    px, pw = K.pack_activations(x), K.pack_weights(w)
    out["binary"] = lambda: torch.ops.hwq.conv2d_packed(px.data, pw.data, cin, cout, *geometry[:1],
                                                        1, 1, True, *geometry[1:], scale, bias, 1)
    if with_pack:
        # A deployed layer's input is the previous layer's channels-last float output.
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def binary_with_pack():
            p = torch.ops.hwq.pack_activations(x_cl, 1, True, 1)
            return torch.ops.hwq.conv2d_packed(p, pw.data, cin, cout, [k, k], 1, 1, True,
                                               *geometry[1:], scale, bias, 1)
        out["binary+pack"] = binary_with_pack
    for wb, ab in BITSERIAL:
        xa = torch.randint(0, 2 ** ab, x.shape, generator=g).float()
        wa = torch.randint(-2 ** (wb - 1), 2 ** (wb - 1), w.shape, generator=g).float()
        pxa, pwa = K.pack_activations(xa, ab), K.pack_weights(wa, wb)
        out[f"W{wb}A{ab}"] = (lambda pxa=pxa, pwa=pwa, ab=ab, wb=wb: torch.ops.hwq.conv2d_packed(
            pxa.data, pwa.data, cin, cout, [k, k], ab, wb, False, *geometry[1:], scale, bias, 1))
    return out


def time_interleaved(configs: dict, rounds: int, min_time: float = 0.05,
                     stat=statistics.median) -> dict:
    """Seconds per call of each config (``stat`` of the rounds: the median, or min for the
    least-disturbed round); each round times every config once (repeating a call until min_time
    has passed, to time short calls reliably)."""
    reps = {}
    for name, f in configs.items():
        f()  # warm-up (allocations, weight prepacking in oneDNN / the int8 backend)
        t0 = TIMER()
        f()
        reps[name] = max(1, int(min_time / max(TIMER() - t0, 1e-6)))
    times = {name: [] for name in configs}
    for _ in range(rounds):
        for name, f in configs.items():
            t0 = TIMER()
            for _ in range(reps[name]):
                f()
            times[name].append((TIMER() - t0) / reps[name])
    return {name: stat(v) for name, v in times.items()}


FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vpopcntdq", "avx512_bitalg",
               "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = [f for f in FLAGS_SHOWN if f in I8.cpu_flags()]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {os.cpu_count()} logical CPUs; flags: {' '.join(flags) or 'none shown'}\n"
            f"torch {torch.__version__}; {torch.get_num_threads()} threads; hwq kernel path "
            f"{K.current_isa()} (available: {', '.join(K.available_isas())}); oneDNN int8 "
            f"{'with' if I8.onednn_has_vnni() else 'without'} VNNI/AMX"
            + (f" (ONEDNN_MAX_CPU_ISA={I8.onednn_max_isa()})" if I8.onednn_max_isa() else "")
            + f"; load average {load}")


def _best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` calls (a ceiling: interruptions on a shared machine only add time)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = TIMER()
        fn()
        best = min(best, TIMER() - t0)
    return best


def ceilings(repeats: int = 7) -> dict:
    """{"clock": cycles/s, "binary", "fp32", "int8": MACs/s on all of torch's threads}: the
    fastest of many short runs (about a millisecond for clock and binary), so that on a shared
    machine some run is likely to go undisturbed."""
    n = 250_000
    out = {"clock": 8 * n / _best_time(lambda: torch.ops.hwq.cycle_probe(n), 15 * repeats)}
    iters = 20_000
    macs = torch.ops.hwq.popcount_peak(1)[0] * iters
    out["binary"] = macs / _best_time(lambda: torch.ops.hwq.popcount_peak(iters), 15 * repeats)
    # wall time: a few ms per call, short enough for some calls to run undisturbed on a shared
    # machine; CPU time: large enough for the GEMM's full rate
    m = 512 if TIMER is time.perf_counter else 1536
    a, b = torch.randn(m, m), torch.randn(m, m)
    out["m"] = m
    gemm_repeats = 5 * repeats if TIMER is time.perf_counter else repeats  # CPU time: few suffice
    out["fp32"] = m ** 3 / _best_time(lambda: torch.mm(a, b), gemm_repeats)
    out["fp32_how"] = f"torch.mm {m}^3"
    try:  # oneDNN's GEMM, private to torch, so only where it runs
        a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
        dnn = m ** 3 / _best_time(lambda: torch._C._nn.mkldnn_linear(a_dnn, b_dnn), gemm_repeats)
        if dnn > out["fp32"]:
            out["fp32"], out["fp32_how"] = dnn, f"oneDNN fp32 GEMM {m}^3 (torch.mm: " \
                f"{out['fp32'] / 1e9:.1f} GMAC/s)"
    except (AttributeError, RuntimeError):
        pass
    if I8.HAVE_ONEDNN_INT8:
        g = torch.Generator().manual_seed(0)
        xu = torch.randint(0, 128, (m, m), generator=g, dtype=torch.uint8)
        wq = I8.pack_linear_weight(torch.randint(-64, 64, (m, m), generator=g).float())
        ones, zeros = torch.ones(m), torch.zeros(m, dtype=torch.long)
        out["int8"] = m ** 3 / _best_time(lambda: torch.ops.onednn.qlinear_pointwise(
            xu, 1.0, 0, wq.packed, ones, zeros, None, 1.0, 0, torch.float32, "none", [], ""),
            gemm_repeats)
    return out


def print_ceilings(c: dict) -> None:
    t = torch.get_num_threads()
    print(f"\nceilings on {t} thread(s), clock {c['clock'] / 1e9:.2f} GHz (measured):")
    print("| ceiling | GMAC/s | MACs per cycle per core | how |\n|---|---|---|---|")
    how = {"binary": f"{K.current_isa()} popcount, register operands",
           "fp32": c["fp32_how"], "int8": f"oneDNN u8 x s8 {c['m']}^3"}
    for k in ("binary", "fp32", "int8"):
        if k in c:
            print(f"| {k} | {c[k] / 1e9:.1f} | {c[k] / c['clock'] / t:.1f} | {how[k]} |")


def run_layers(args, ceil: dict) -> None:
    layers = RESNET18_3X3 + ([] if args.no_deepbench else DEEPBENCH)
    print("\nper layer: milliseconds per call (fastest of interleaved rounds of >= 10 ms bursts, the "
          "least-disturbed, as the ceilings are), % of the kernel's ceiling, speed-up of binary "
          "over fp32 and over torch int8")
    print("| layer | fp32 ms | int8 ms | binary ms | binary+pack ms | W2A2 ms | fp32 % | int8 % "
          "| binary % | W1A2 % | W2A2 % | W4A4 % | binary/fp32 | binary/int8 | W2A2/int8 |")
    print("|---" * 15 + "|")
    for name, batch, cin, cout, hw, k, stride in layers:
        # Bursts of >= 10 ms: the steady rate, not the first call's transition (module docstring).
        res = time_interleaved(conv_configs(batch, cin, cout, hw, k, stride, with_pack=True),
                               3 * args.rounds, min_time=0.01, stat=min)
        oh = (hw + 2 * (k // 2) - k) // stride + 1
        macs = batch * oh * oh * cout * cin * k * k

        def pct(key, ceiling, planes=1):
            return f"{100 * macs * planes / res[key] / ceil[ceiling]:.0f}" if ceiling in ceil else "-"
        print(f"| {name} | {res['fp32'] * 1e3:.2f} | {res['int8'] * 1e3:.2f} | "
              f"{res['binary'] * 1e3:.3f} | {res['binary+pack'] * 1e3:.3f} | {res['W2A2'] * 1e3:.3f} | "
              f"{pct('fp32', 'fp32')} | {pct('int8', 'int8')} | {pct('binary', 'binary')} | "
              f"{pct('W1A2', 'binary', 2)} | {pct('W2A2', 'binary', 4)} | {pct('W4A4', 'binary', 16)} | "
              f"{res['fp32'] / res['binary']:.2f}x | {res['int8'] / res['binary']:.2f}x | "
              f"{res['int8'] / res['W2A2']:.2f}x |", flush=True)


def resnet18_twins(batch: int):
    """(float ResNet-18, its torch int8 twin (FX, x86 backend), its hwq binary twin deployed by rule,
    the same deployed with measured per-layer choices, input). The binary twin has binary weights
    and activations everywhere but the first conv and the fc layer (8-bit weights and activations,
    which hwq.deploy runs on its int8 path); BN statistics come from calibration batches of random
    data, which is all a timing needs."""
    import copy

    import torchvision
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    import hwq

    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224)
    fp = torchvision.models.resnet18().eval()
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(fp), get_default_qconfig_mapping("x86"), (x,))
    with torch.no_grad():
        prepared(x)
    int8 = convert_fx(prepared).eval()
    qat = hwq.quantize(copy.deepcopy(fp), weights="binary", acts="binary",
                       layers={"conv1": dict(weights="fixed:8", acts="fixed:8"),
                               "fc": dict(weights="fixed:8", acts="fixed:8")})
    qat.train()
    with torch.no_grad():
        qat(x[:4])
    qat.eval()
    return fp, int8, hwq.deploy(qat), hwq.deploy(qat, example_input=x), x


def pt2e_int8(fp, x):
    """fp's int8 twin through PT2E and Inductor (X86InductorQuantizer, torch.compile): the path
    torch 2.14 recommends over the deprecated quantized tensors. It lives in torchao now
    (pip install torchao); returns (model, None) or (None, why it did not run)."""
    import copy
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer, get_default_x86_inductor_quantization_config)
    except ImportError as err:
        return None, f"torchao's PT2E is not installed ({err})"
    try:
        exported = torch.export.export(copy.deepcopy(fp), (x,)).module()
        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            prepared(x)
            model = torch.compile(convert_pt2e(prepared))
            model(x)  # compiles here, outside the timing
        return model, None
    except Exception as err:  # an export or Inductor failure on this machine: say so, go on
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def run_e2e(args) -> None:
    warnings.filterwarnings("ignore", message="binary activation quantizer got a first batch")
    fp, int8, deployed, measured, x = resnet18_twins(args.batch)
    for name, model in (("by rule", deployed), ("measured", measured)):
        kinds = [d.impl for d in model.deploy_report.layers]
        print(f"\nhwq binary twin deployed {name}: "
              + ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))))
    models = {"float": fp, "int8 (torch FX, x86)": int8}
    if args.pt2e:
        pt2e, why = pt2e_int8(fp, x)
        if pt2e is None:
            print(f"PT2E/Inductor int8 not timed: {why}")
        else:
            models["int8 (PT2E + Inductor, x86)"] = pt2e
    models["hwq binary (deployed by rule)"] = deployed
    models["hwq binary (deployed, measured choice)"] = measured
    print(f"\nResNet-18 end to end, batch {args.batch}, 3x224x224, {torch.get_num_threads()} "
          "thread(s)")
    with torch.no_grad():
        res = time_interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, args.rounds,
                               min_time=0.0)
        faults = minor_faults({k: (lambda m=m: m(x)) for k, m in models.items()})
    best_int8 = min((k for k in res if k.startswith("int8")), key=res.get)
    print(f"| model | ms per batch | speed-up over float | over the faster int8 ({best_int8}) "
          "| minor page faults per batch |")
    print("|---|---|---|---|---|")
    for name, t in res.items():
        print(f"| {name} | {t * 1e3:.1f} | {res['float'] / t:.2f}x | {res[best_int8] / t:.2f}x "
              f"| {faults.get(name, 'not counted')} |")
    if any(faults.values()):
        print("Page faults in steady state mean the allocator handed memory back to the OS between "
              "batches (glibc maps blocks over 32 MB afresh each time): the times above include "
              "them. MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 (or jemalloc / "
              "tcmalloc) keeps the memory; see docs/kernels.md.")


def run_pool(args) -> None:
    """ResNet-18's stem max pool (3x3, stride 2, padding 1 on 64 x 112 x 112, channels-last float32,
    what a deployed conv1 hands on): torch's F.max_pool2d, which also computes the argmax indices,
    against hwq.deploy's op (csrc/max_pool.cpp), same values bit for bit."""
    x = torch.randn(args.batch, 64, 112, 112).contiguous(memory_format=torch.channels_last)
    configs = {"torch": lambda: F.max_pool2d(x, 3, 2, 1),
               "hwq": lambda: torch.ops.hwq.max_pool2d_cl(x, [3, 3], [2, 2], [1, 1])}
    res = time_interleaved(configs, 3 * args.rounds, min_time=0.01, stat=min)
    print(f"\nResNet-18 stem max pool, batch {args.batch}: torch F.max_pool2d {res['torch'] * 1e3:.2f} "
          f"ms, hwq max_pool2d_cl {res['hwq'] * 1e3:.2f} ms, {res['torch'] / res['hwq']:.2f}x")


def faults_counted() -> bool:
    """Whether this kernel counts minor page faults in getrusage: writing a fresh 4 MiB anonymous
    mapping must fault at least once (some sandboxed kernels report 0 for every process)."""
    try:
        import mmap
        import resource
    except ImportError:
        return False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buf = mmap.mmap(-1, 1 << 22)
    buf.write(b"\1" * (1 << 22))
    buf.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt > before


def minor_faults(configs: dict) -> dict:
    """Minor page faults of one more call of each configuration, in the timing's interleaved
    order (what glibc's allocator does depends on what ran before). {} where the kernel does not
    count them (faults_counted()), so that no 0 is printed that was never measured."""
    if not faults_counted():
        return {}
    import resource
    out = {}
    for name, fn in configs.items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        out[name] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--isa", default="auto", help="hwq kernel path (default: the fastest)")
    ap.add_argument("--no-deepbench", action="store_true")
    ap.add_argument("--e2e", action="store_true", help="also time a binary ResNet-18 end to end")
    ap.add_argument("--pt2e", action="store_true",
                    help="with --e2e, also the PT2E + Inductor x86 int8 ResNet-18 (needs torchao)")
    ap.add_argument("--no-layers", action="store_true")
    ap.add_argument("--batch", type=int, default=16, help="end-to-end batch size")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with this process's CPU time instead of wall time (needs "
                         "--threads 1): on a shared machine it leaves out the other jobs' turns")
    args = ap.parse_args()
    if args.cpu_time:
        if args.threads != 1:
            raise SystemExit("--cpu-time needs --threads 1 (CPU time adds up over threads)")
        global TIMER
        TIMER = time.process_time
    if not K.HAVE_EXTENSION:
        raise SystemExit("hwq._C is not built: pip install --no-build-isolation -e .")
    # torch.ao's quantized tensors warn that they are deprecated; they are still what users run.
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    K.set_isa(args.isa)
    print(machine() + ("; timed in process CPU time" if args.cpu_time else "; timed in wall time"))
    ceil = ceilings()
    print_ceilings(ceil)
    if not args.no_layers:
        run_layers(args, ceil)
        run_pool(args)
    if args.e2e:
        run_e2e(args)


if __name__ == "__main__":
    main()

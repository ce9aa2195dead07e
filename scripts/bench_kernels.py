"""Speed of the packed CPU kernels (hwq.kernels, the C++ extension hwq._C) against torch's fp32
conv2d (oneDNN) and torch's int8 quantized conv (x86 backend, what users pick today), on the 3x3
layers of ResNet-18 (batch 16) and a few DeepBench-style conv shapes; optionally a binary
ResNet-18 end to end (hwq.deploy) against its float and int8 twins.

Everything runs in this one process with the same thread count. Each configuration gets a warm-up
run, then all of a layer's configurations are timed in interleaved rounds (so drift on a shared
machine hits all of them alike) and the median is reported, as a speed-up over fp32 (higher is
faster) and over int8.

What each column times (inputs prepared outside the timed region, as inside a network):
  fp32      F.conv2d on an NCHW float tensor.
  int8      torch.ao.nn.quantized.Conv2d on a quint8 channels-last input (requantized output).
  binary    torch.ops.hwq.conv2d_packed on packed +/-1 input, float output with the per-channel
            scale/bias epilogue (what hwq.deploy runs); "+pack" adds packing the float input
            (channels-last, as a deployed layer receives it from the previous one).
  WxAy      bit-serial: signed x-bit weights, unsigned y-bit activations, packed input, float out.

    .venv/bin/python scripts/bench_kernels.py [--rounds 7] [--threads N] [--isa NAME] [--e2e]
"""
from __future__ import annotations

import argparse
import platform
import warnings
import statistics
import time

import torch
from torch.nn import functional as F

import hwq.kernels as K

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


def time_interleaved(configs: dict, rounds: int, min_time: float = 0.05) -> dict:
    """Median seconds per call of each config; each round times every config once (repeating a
    call until min_time has passed, to time short calls reliably)."""
    reps = {}
    for name, f in configs.items():
        f()  # warm-up (allocations, weight prepacking in oneDNN / the int8 backend)
        t0 = time.perf_counter()
        f()
        reps[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-6)))
    times = {name: [] for name in configs}
    for _ in range(rounds):
        for name, f in configs.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                f()
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: statistics.median(v) for name, v in times.items()}


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
    return (f"{cpu}; torch {torch.__version__}; {torch.get_num_threads()} threads; "
            f"hwq kernel path {K.current_isa()} (available: {', '.join(K.available_isas())})")


def run_layers(args) -> None:
    layers = RESNET18_3X3 + ([] if args.no_deepbench else DEEPBENCH)
    names = None
    print("speed-up over fp32 conv2d (median of interleaved rounds; higher is faster); "
          "last columns: binary and W2A2 over torch int8")
    for name, *shape in layers:
        res = time_interleaved(conv_configs(*shape, with_pack=True), args.rounds)
        if names is None:
            names = list(res)
            print(f"| layer | fp32 ms | " + " | ".join(n for n in names if n != "fp32")
                  + " | binary/int8 | W2A2/int8 |")
            print("|---" * (len(names) + 3) + "|")
        cells = [f"{res['fp32'] / res[n]:.2f}x" for n in names if n != "fp32"]
        print(f"| {name} | {res['fp32'] * 1e3:.2f} | " + " | ".join(cells)
              + f" | {res['int8'] / res['binary']:.2f}x | {res['int8'] / res['W2A2']:.2f}x |",
              flush=True)


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


def run_e2e(args) -> None:
    import warnings
    warnings.filterwarnings("ignore", message="binary activation quantizer got a first batch")
    fp, int8, deployed, measured, x = resnet18_twins(args.batch)
    for name, model in (("by rule", deployed), ("measured", measured)):
        kinds = [d.impl for d in model.deploy_report.layers]
        print(f"\nhwq binary twin deployed {name}: "
              + ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))))
    print(f"ResNet-18 end to end, batch {args.batch}, 3x224x224")
    with torch.no_grad():
        res = time_interleaved({"float": lambda: fp(x), "int8 (torch FX, x86)": lambda: int8(x),
                                "hwq binary (deployed by rule)": lambda: deployed(x),
                                "hwq binary (deployed, measured choice)": lambda: measured(x)},
                               args.rounds, min_time=0.0)
    print("| model | ms per batch | speed-up over float | over int8 |\n|---|---|---|---|")
    for name, t in res.items():
        print(f"| {name} | {t * 1e3:.1f} | {res['float'] / t:.2f}x | "
              f"{res['int8 (torch FX, x86)'] / t:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--isa", default="auto", help="hwq kernel path (default: the fastest)")
    ap.add_argument("--no-deepbench", action="store_true")
    ap.add_argument("--e2e", action="store_true", help="also time a binary ResNet-18 end to end")
    ap.add_argument("--no-layers", action="store_true")
    ap.add_argument("--batch", type=int, default=16, help="end-to-end batch size")
    args = ap.parse_args()
    if not K.HAVE_EXTENSION:
        raise SystemExit("hwq._C is not built: pip install --no-build-isolation -e .")
    # torch.ao's quantized tensors warn that they are deprecated; they are still what users run.
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    K.set_isa(args.isa)
    print(machine())
    if not args.no_layers:
        run_layers(args)
    if args.e2e:
        run_e2e(args)


if __name__ == "__main__":
    main()

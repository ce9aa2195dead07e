"""Training-step time of a CIFAR ResNet-20 (batch 64, 3x32x32) on the CPU: float vs hwq W8A8, W4A4
(LSQ) and W1A1, and Brevitas's nearest configurations when Brevitas is installed
(`pip install brevitas`), all in this one process, as ratios to the float step.

A step is forward + cross-entropy + backward + SGD step. Each configuration gets warm-up steps, then
the configurations are timed in interleaved rounds (so drift on a shared machine hits all of them)
and the median step time is reported.

    .venv/bin/python scripts/bench_qat.py [--rounds 7] [--steps 5] [--batch 64]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import time

import torch
from torch import nn

import hwq
from hwq.models import resnet20
from hwq.quant import fused

FIRST_LAST_8BIT = {"conv1": dict(weights="fixed:8", acts=None),
                   "fc": dict(weights="fixed:8", acts="fixed:8")}

HWQ_CONFIGS = {
    "hwq W8A8 (fixed:8)": (nn.ReLU, dict(weights="fixed:8", acts="fixed:8")),
    "hwq W4A4 (lsq:4)": (nn.ReLU, dict(weights="lsq:4", acts="lsq:4", layers=FIRST_LAST_8BIT)),
    "hwq W1A1 (binary)": (nn.Hardtanh, dict(weights="binary", acts="binary", layers=FIRST_LAST_8BIT)),
}


def brevitas_configs():
    """Brevitas layers standing in for hwq's: power-of-two (fixed point) scales for W8A8, learned
    float scales (PARAMETER_FROM_STATS activations) for W4A4, constant-scale binary for W1A1.
    Returns {} when Brevitas is not installed."""
    try:
        import brevitas.nn as qnn
        from brevitas import quant as bq
    except ImportError:
        return {}

    def conv(w_quant, a_quant, bits_w, bits_a):
        def make(c: nn.Conv2d):
            return qnn.QuantConv2d(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride,
                                   padding=c.padding, bias=c.bias is not None,
                                   weight_quant=w_quant, weight_bit_width=bits_w,
                                   input_quant=a_quant, input_bit_width=bits_a)
        return make

    def linear(c: nn.Linear):
        return qnn.QuantLinear(c.in_features, c.out_features, bias=True,
                               weight_quant=bq.Int8WeightPerTensorFixedPoint, weight_bit_width=8,
                               input_quant=bq.Int8ActPerTensorFixedPoint, input_bit_width=8)

    first8 = conv(bq.Int8WeightPerTensorFixedPoint, None, 8, None)
    return {
        "Brevitas W8A8 (fixed point)": (nn.ReLU, conv(bq.Int8WeightPerTensorFixedPoint,
                                                      bq.Int8ActPerTensorFixedPoint, 8, 8), first8),
        "Brevitas W4A4 (learned scale)": (nn.ReLU, conv(bq.Int8WeightPerTensorFloat,
                                                        bq.Int8ActPerTensorFloat, 4, 4), first8),
        "Brevitas W1A1 (binary)": (nn.Hardtanh, conv(bq.SignedBinaryWeightPerTensorConst,
                                                     bq.SignedBinaryActPerTensorConst, None, None),
                                   first8),
    }, linear


def swap_brevitas(model: nn.Module, make_conv, make_first, make_linear) -> nn.Module:
    for name, m in list(model.named_modules()):
        if type(m) in (nn.Conv2d, nn.Linear):
            new = make_linear(m) if isinstance(m, nn.Linear) else \
                (make_first(m) if name == "conv1" else make_conv(m))
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


TORCH_PATH = " [torch ops, no fused kernels]"


def build_all(torch_path: bool):
    torch.manual_seed(0)
    models = {"float": resnet20()}
    for label, (act, cfg) in HWQ_CONFIGS.items():
        torch.manual_seed(0)
        models[label] = hwq.quantize(resnet20(act=act), **copy.deepcopy(cfg))
        if torch_path and fused.AVAILABLE:
            torch.manual_seed(0)
            models[label + TORCH_PATH] = hwq.quantize(resnet20(act=act), **copy.deepcopy(cfg))
    found = brevitas_configs()
    if found:
        configs, make_linear = found
        for label, (act, make_conv, make_first) in configs.items():
            torch.manual_seed(0)
            models[label] = swap_brevitas(resnet20(act=act), make_conv, make_first, make_linear)
    return models


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps timed per round and model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--torch-path", action="store_true",
                   help="also time hwq with its fused C++ kernels switched off")
    args = p.parse_args()

    # Denormal floats make x86 arithmetic 10-100x slower; they appear once a model has nearly
    # fitted its data (tiny gradients) and would make the timings depend on training progress.
    torch.set_flush_denormal(True)
    models = build_all(args.torch_path)
    g = torch.Generator().manual_seed(0)
    # A pool of random batches with random labels: no model can fit them during the benchmark.
    pool = [(torch.randn(args.batch, 3, 32, 32, generator=g),
             torch.randint(0, 10, (args.batch,), generator=g)) for _ in range(8)]
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    counter = {k: 0 for k in models}

    def step(name):
        m, opt = models[name], opts[name]
        x, y = pool[counter[name] % len(pool)]
        counter[name] += 1
        with fused.disabled() if name.endswith(TORCH_PATH) else contextlib.nullcontext():
            loss = nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()

    for name in models:  # warm-up: allocator, oneDNN primitives, lazy quantizer initialisation
        for _ in range(3):
            step(name)
    times = {k: [] for k in models}
    for _ in range(args.rounds):
        for name in models:
            t = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t) / args.steps)

    base = statistics.median(times["float"])
    print(f"ResNet-20 CIFAR training step, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    width = max(len(n) for n in times) + 2
    print(f"{'configuration':{width}s} {'ms/step':>9s} {'vs float':>9s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:{width}s} {med * 1e3:9.1f} {med / base:8.2f}x")
    if not brevitas_configs():
        print("(Brevitas not installed: `pip install brevitas` to time it here too)")


if __name__ == "__main__":
    main()

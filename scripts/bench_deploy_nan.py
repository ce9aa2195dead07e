"""What the deployed path's NaN check costs (hwq.deploy, README "NaN and Inf").

A deployed binary ResNet-18 runs, interleaved in the same process, (a) with no check at all
(hwq.deploy.nan._nonfinite replaced by a function returning False), (b) as shipped (one min/max of
the model's input; per-layer checks only for a batch holding NaN or Inf), (c) with the per-layer
check on every batch (_nonfinite returning True: each deployed layer takes the max of its input). The
table gives the median time of each and the ratio to (a).

    .venv/bin/python scripts/bench_deploy_nan.py [--rounds 7] [--batch 8]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time

import torch
import torchvision

import hwq

deploy_mod = importlib.import_module("hwq.deploy.nan")  # where the deployed model's hook reads it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = hwq.quantize(torchvision.models.resnet18(num_classes=10), weights="binary",
                       acts="binary", layers={"conv1": dict(weights="fixed:8", acts=None),
                                              "fc": dict(weights="fixed:8", acts="fixed:8")})
    x = torch.randn(args.batch, 3, args.size, args.size)
    net.train()  # calibrate (ReLU before binary acts: ignore its warning)
    with torch.no_grad():
        net(x)
    dep = hwq.deploy(net.eval())
    shipped = deploy_mod._nonfinite
    variants = {"no check": lambda t: False, "shipped": shipped, "per layer": lambda t: True}
    times = {k: [] for k in variants}
    with torch.no_grad():
        dep(x)
        for _ in range(args.rounds):
            for name, fn in variants.items():
                deploy_mod._nonfinite = fn
                t0 = time.perf_counter()
                dep(x)
                times[name].append(time.perf_counter() - t0)
    deploy_mod._nonfinite = shipped
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"binary ResNet-18, batch {args.batch}x3x{args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds}")
    print(f"{'variant':<10} {'ms':>9} {'vs no check':>12}")
    for k in variants:
        print(f"{k:<10} {med[k]:9.2f} {med[k] / med['no check']:11.3f}x")


if __name__ == "__main__":
    main()

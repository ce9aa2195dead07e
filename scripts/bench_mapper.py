"""Speed of the profiler and the mapper (issue 3), printed as tables of times and ratios.

1. Profiling ResNet-50 with run-time statistics on one batch, as a ratio to a plain forward pass of
   the same model on the same batch (eval, no_grad), for the float model and a fixed:8 one.
   Target: under 3x. hwq.profile(model, batches=[x]) takes the shapes in the same pass.
2. Mapping the ResNet-50 profile (with statistics) on every registered design, baseline included.
   Target: under 1 s for all designs together. Warm: BitFusion's tiling search (the authors'
   simulator, hwq.hw.bitfusion_tiles) is cached per layer shape and configuration, so a repeated
   map reuses it; its cold time (cache cleared, every layer searched) is printed apart.

    .venv/bin/python scripts/bench_mapper.py [--batch 8] [--threads 1] [--repeat 3] [--map-only]

--map-only skips part 1 and maps the shape-only ResNet-50 workload at 8 bits.

Times are the minimum over --repeat runs (after one warm-up). On a shared machine use --threads 1:
with other processes on the cores, multi-threaded elementwise ops stall on each other and the ratio
measures the contention, not the code.
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision

import hwq


def best(fn, repeat: int) -> float:
    fn()  # warm-up: allocator, lookup tables, oneDNN primitives
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--map-only", action="store_true", help="skip the profiling part")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"best of {args.repeat}")

    profile = hwq.workloads.build("resnet50", w_bits=8, a_bits=8)
    if not args.map_only:
        print("\n1. profiling ResNet-50 with statistics on one batch vs a plain forward")
        print(f"{'model':<16}{'forward s':>11}{'profile s':>11}{'ratio':>8}")
    for label, spec in (() if args.map_only else (("float", None), ("fixed:8", "fixed:8"))):
        model = torchvision.models.resnet50(weights=None)
        if spec is not None:
            hwq.quantize(model, weights=spec, acts=spec)
        model.eval()
        with torch.no_grad():
            model(x)  # calibrates the activation ranges once, as a trained model would have them

        def forward():
            with torch.no_grad():
                model(x)

        t_fwd = best(forward, args.repeat)
        t_prof = best(lambda: hwq.profile(model, batches=[x]), args.repeat)
        print(f"{'resnet50 ' + label:<16}{t_fwd:>11.3f}{t_prof:>11.3f}{t_prof / t_fwd:>7.2f}x")
        profile = hwq.profile(model, batches=[x], name=f"resnet50 {label}")

    print("\n2. mapping the ResNet-50 profile (with statistics) on every design")
    print(f"{'arch':<16}{'ms':>9}{'speedup':>10}{'energy eff':>12}")
    total = 0.0
    for arch in hwq.hw.ARCHS:
        t = best(lambda: hwq.map(profile, arch), args.repeat)
        total += t
        r = hwq.map(profile, arch)
        print(f"{arch:<16}{t * 1e3:>9.1f}{r.total.speedup:>9.2f}x{r.total.energy_efficiency:>11.2f}x")
    print(f"{'all designs':<16}{total * 1e3:>9.1f}   (target: under 1000 ms; each map also costs "
          "the baseline)")
    from hwq.hw.bitfusion_tiles import search

    def cold():
        search.cache_clear()
        hwq.map(profile, "bitfusion")
    t = best(cold, args.repeat)
    layers = len({(l.kernel, l.stride, l.in_shape, l.out_shape, l.groups) for l in profile.layers})
    print(f"{'bitfusion cold':<16}{t * 1e3:>9.1f}   (tiling search of {layers} distinct layers, "
          f"{t / layers * 1e3:.1f} ms each)")


if __name__ == "__main__":
    main()

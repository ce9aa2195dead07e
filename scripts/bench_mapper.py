"""Speed of the profiler and the mapper (issue 3), printed as tables of times and ratios.

1. Profiling ResNet-50 with run-time statistics on one batch, as a ratio to a plain forward pass of
   the same model on the same batch (eval, no_grad), for the float model and a fixed:8 one.
   Target: under 3x. hwq.profile(model, batches=[x]) takes the shapes in the same pass.
2. Mapping the ResNet-50 profile (with statistics) on every registered design, baseline included.
   Target: under 1 s for all designs together. Warm: BitFusion's tiling search (the authors'
   simulator, hwq.hw.bitfusion_tiles) is cached per layer shape and configuration, so a repeated
   map reuses it; its cold time (cache cleared, every layer searched) is printed apart.

3. Sweeping ResNet-50 (hwq.sweep): design points per minute for every design over its default
   search space times 5 clocks, against calling hwq.map once per point in the same process.
   Target: at least 10,000 points a minute. BitFusion is timed apart, cold (its tiling search runs
   for every new array / bandwidth), also with the direct search (every tiling under all 120 loop
   orders) in its place, and warm (points that change only what the search does not see, such
   as the clock).

    .venv/bin/python scripts/bench_mapper.py [--batch 8] [--threads 1] [--repeat 3] [--map-only]
                                             [--sweep-only]

--map-only skips part 1 and maps the shape-only ResNet-50 workload at 8 bits; --sweep-only runs
part 3 alone.

Times are the minimum over --repeat runs (after one warm-up). On a shared machine use --threads 1:
with other processes on the cores, multi-threaded elementwise ops stall on each other and the ratio
measures the contention, not the code.
"""
from __future__ import annotations

import argparse
import math
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
    ap.add_argument("--sweep-only", action="store_true", help="only part 3 (hwq.sweep)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"best of {args.repeat}")

    profile = hwq.workloads.build("resnet50", w_bits=8, a_bits=8)
    if args.sweep_only:
        return bench_sweep(profile)
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
    from hwq.hw.bitfusion_tiles import _walked, search

    def cold():
        search.cache_clear()
        _walked.cache_clear()
        hwq.map(profile, "bitfusion")
    t = best(cold, args.repeat)
    layers = len({(l.kernel, l.stride, l.in_shape, l.out_shape, l.groups) for l in profile.layers})
    print(f"{'bitfusion cold':<16}{t * 1e3:>9.1f}   (tiling search of {layers} distinct layers, "
          f"{t / layers * 1e3:.1f} ms each)")

    bench_sweep(profile)


CLOCKS = (2e8, 4e8, 6e8, 8e8, 1e9)


def bench_sweep(profile) -> None:
    """Part 3: hwq.sweep on ResNet-50, points per minute, and the same points by hwq.map."""
    import os
    from hwq.hw.bitfusion_tiles import search
    print(f"\n3. sweeping ResNet-50 ({len(profile.layers)} layers): design points per minute "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'arch':<16}{'points':>7}{'sweep s':>9}{'points/min':>12}{'hwq.map s':>11}"
          f"{'ratio':>8}")
    slowest = math.inf
    for arch in hwq.hw.ARCHS:
        if arch in ("bitfusion", "finn"):
            continue
        grid = {**hwq.hw.get(arch).config.search_space, "freq_hz": CLOCKS}
        t = time.perf_counter()
        r = hwq.sweep(profile, arch, grid)
        t_sweep = time.perf_counter() - t
        rows = r.rows[:40]  # hwq.map, the way without hwq.sweep, on the first 40 points
        t = time.perf_counter()
        for row in rows:
            hwq.map(profile, arch, config=r.config(row))
        t_map = (time.perf_counter() - t) * r.points / len(rows)
        rate = 60 * r.points / t_sweep
        slowest = min(slowest, rate)
        print(f"{arch:<16}{r.points:>7}{t_sweep:>9.2f}{rate:>12,.0f}{t_map:>11.2f}"
              f"{t_map / t_sweep:>7.1f}x")
    grid = {"pe": (2, 4, 8, 16, 32, 64), "simd": (2, 4, 8, 16, 32, 64), "freq_hz": CLOCKS}
    t = time.perf_counter()
    r = hwq.sweep(profile, "finn", grid)
    rate = 60 * r.points / (time.perf_counter() - t)
    slowest = min(slowest, rate)
    print(f"{'finn':<16}{r.points:>7}{time.perf_counter() - t:>9.2f}{rate:>12,.0f}")
    print(f"slowest closed-form design: {slowest:,.0f} points/min (target: 10,000)")

    # BitFusion: each new array or bandwidth runs the authors' tiling search on every distinct
    # layer (a few hundred tilings x 120 loop orders each), cached per layer and configuration;
    # timed with hwq's search (order classes, pruned tilings, walks shared across bandwidths)
    # and with the direct enumeration of every tiling under every order (search_reference) in
    # its place, on the same points; then the design's whole search space, cold
    import functools
    from hwq.hw import bitfusion, bitfusion_tiles
    from hwq.hw.bitfusion_tiles import search_reference
    grid = {"rows": (8, 16), "cols": (16, 32), "bandwidth_bits_per_cycle": (128, 192)}
    reference = functools.lru_cache(maxsize=8192)(search_reference)
    rates = {}
    for label, fn in (("bitfusion cold", search), ("  reference", reference)):
        fn.cache_clear()
        bitfusion_tiles._walked.cache_clear()
        bitfusion.search = fn
        try:
            t = time.perf_counter()
            r = hwq.sweep(profile, "bitfusion", grid)
            cold = time.perf_counter() - t
        finally:
            bitfusion.search = search
        rates[label] = 60 * r.points / cold
        print(f"{label:<16}{r.points:>7}{cold:>9.2f}{rates[label]:>12,.0f}"
              "   (every point a new tiling search)")
    t = time.perf_counter()
    r2 = hwq.sweep(profile, "bitfusion", {**grid, "freq_hz": CLOCKS})
    warm = time.perf_counter() - t
    print(f"{'bitfusion warm':<16}{r2.points:>7}{warm:>9.2f}{60 * r2.points / warm:>12,.0f}"
          "   (the same arrays and bandwidths at 5 clocks: searches cached)")
    search.cache_clear()
    bitfusion_tiles._walked.cache_clear()
    space = dict(hwq.hw.get("bitfusion").config.search_space)
    t = time.perf_counter()
    r3 = hwq.sweep(profile, "bitfusion", space)
    cold = time.perf_counter() - t
    print(f"{'bitfusion space':<16}{r3.points:>7}{cold:>9.2f}{60 * r3.points / cold:>12,.0f}"
          "   (its search space, cold: rows x cols x bandwidth)")
    print(f"bitfusion cold: {rates['bitfusion cold'] / rates['  reference']:.1f}x the direct "
          "search (same results, tests/hw/test_sweep.py)")


if __name__ == "__main__":
    main()

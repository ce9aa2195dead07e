"""Timing a layer's candidates on the input it really receives (deploy with an example input)."""
from __future__ import annotations

import time

import torch
from torch import nn

TIMING_RUNS = 5  # rounds when deploy measures (after one warm-up run each); the fastest counts


def fastest_ms(fns: dict, x) -> dict[str, float]:
    """{name: milliseconds of fn(x)}: the fastest of TIMING_RUNS rounds, each round running every
    fn once in turn (after one warm-up run each). Interleaved and the minimum because on a shared
    machine other jobs only ever add time, and a burst of theirs then hits one round of every
    candidate rather than all the runs of one (a median of one candidate's consecutive runs had
    deploy keep a ResNet-18's first conv that runs 1.3x slower under two training jobs)."""
    times = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn(x)  # warm-up: first-use packing, caches
        for _ in range(TIMING_RUNS):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t0)
    return {name: min(t) * 1e3 for name, t in times.items()}


def layer_inputs(model: nn.Module, names: list[str], example_input) -> dict[str, torch.Tensor]:
    """The input each named layer receives when ``model`` runs ``example_input`` (eval mode)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(mod, args, name=name):
            if name not in seen and args and isinstance(args[0], torch.Tensor):
                seen[name] = args[0].detach().clone()
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example_input)
    except (RuntimeError, IndexError) as e:  # a batch of the wrong shape: name it
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"example_input of shape {tuple(example_input.shape)} does not run "
                         f"through the model: {type(e).__name__}: {first}") from e
    finally:
        for h in handles:
            h.remove()
    return seen

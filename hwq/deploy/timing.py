"""Timing a layer's candidates on the input it really receives (deploy with an example input)."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

TIMING_RUNS = 5  # per candidate when deploy measures (after one warm-up run); the median counts


def median_ms(fn, x) -> float:
    """Median milliseconds of ``fn(x)`` over TIMING_RUNS runs, after one warm-up run."""
    with torch.no_grad():
        fn(x)  # warm-up: first-use packing, caches
        times = []
        for _ in range(TIMING_RUNS):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


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

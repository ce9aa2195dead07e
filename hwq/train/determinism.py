"""Seeds and torch's process-wide determinism settings, for training runs that repeat exactly.

``seed_everything`` seeds torch and Python's random and, when asked, turns on torch's deterministic
algorithms; those settings belong to the whole process, so whatever changes them for a while (``hwq
train``, the fine-tuning of ``hwq search``) does it inside ``KeepDeterminism``, which puts the
previous ones back when it ends.
"""
from __future__ import annotations

import os
import random

import torch


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed torch and Python's random; with ``deterministic``, ask torch for deterministic
    algorithms where it has them (warn_only: an op without one warns instead of failing) and turn
    off cudnn's benchmark search (CUBLAS_WORKSPACE_CONFIG as torch's reproducibility notes ask).
    The settings are process-wide: use KeepDeterminism around the code that needs them."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


class KeepDeterminism:
    """A context manager that restores torch's deterministic-algorithm, cudnn.benchmark and CPU
    thread settings on exit to what they were on entry::

        with KeepDeterminism():
            seed_everything(0, deterministic=True)
            ...  # train
        # the caller's settings again
    """

    def __enter__(self) -> "KeepDeterminism":
        self.saved = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(),
                      torch.backends.cudnn.benchmark, torch.get_num_threads())
        return self

    def __exit__(self, *exc) -> None:
        on, warn_only, bench, threads = self.saved
        torch.use_deterministic_algorithms(on, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        torch.set_num_threads(threads)

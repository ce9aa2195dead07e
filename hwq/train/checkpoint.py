"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain values only (model, optimizer and scheduler state
dicts, the number of finished epochs, random states, metrics), so loading it cannot run code from
the file. It is written to a temporary file beside the target, flushed to disk and renamed over it:
a run killed while writing leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import random
from typing import Any

import torch

from .._io import atomic_write


def rng_state() -> dict[str, Any]:
    """The random states training uses: torch's CPU (and CUDA) generators and Python's random."""
    version, state, gauss = random.getstate()
    out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, st, gauss = state["python"]
    random.setstate((version, tuple(st), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save ``state`` to ``path`` atomically (temporary file, fsync, os.replace)."""
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU with weights_only=True (tensors and plain data only)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)

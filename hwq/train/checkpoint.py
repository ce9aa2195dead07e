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

from .._io import atomic_torch_save


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
    """torch.save ``state`` to ``path`` atomically (temporary file, fsync, os.replace). A Ctrl-C
    while it writes takes effect once the checkpoint is complete."""
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    atomic_torch_save(path, state)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU with weights_only=True (tensors and plain data only).

    ValueError naming the file when it is missing, a directory, truncated, corrupt or not a dict
    (torch.load's own messages name neither the file nor the problem in words)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a directory: expected a file written by "
                         "torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, FileNotFoundError):
        raise  # the CLI names the path
    except Exception as e:  # noqa: BLE001 - zip (OSError EINVAL), pickle, EOF, unsupported types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"checkpoint {path!r} cannot be read: truncated, corrupt or not a "
                         f"torch checkpoint of tensors ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds a {type(state).__name__}: expected a dict")
    return state


def load_model_state(model: torch.nn.Module, state: Any, path: str | os.PathLike,
                     strict: bool = True):
    """model.load_state_dict(state), with one line naming the file and the first mismatches
    when the checkpoint belongs to another model (missing or unexpected keys, other shapes)."""
    path = os.fspath(path)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r}: its model state is a {type(state).__name__}, "
                         "expected a dict of tensors")
    own = model.state_dict()
    shapes = [f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})" for k, v in state.items()
              if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    if shapes:
        raise ValueError(f"checkpoint {path!r} does not fit this model: {len(shapes)} tensor(s) "
                         f"of another shape, e.g. {'; '.join(shapes[:3])}")
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        raise ValueError(f"checkpoint {path!r} does not fit this model: "
                         f"{' '.join(lines[1:3])[:300] or lines[0][:300]}") from None

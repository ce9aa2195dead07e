"""Shared by the training tests: run ``hwq train`` in a subprocess, read checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
TORCHRUN = os.path.join(os.path.dirname(PY), "torchrun")


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def hwq_cmd(*args: str) -> list[str]:
    return [PY, "-m", "hwq", "train", "--no-progress", *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def data_root() -> str | None:
    """The folder of the real data sets the tests may use: $HWQ_DATA, else ../shared/data beside
    the repository when it exists (CIFAR-10 lives in <root>/cifar10); None when there is none."""
    root = os.environ.get("HWQ_DATA") or os.path.join(
        ROOT, "..", "shared", "data")
    return root if os.path.isdir(root) else None


def cifar10_dir() -> str:
    """The CIFAR-10 image folder, or pytest.skip naming where it was looked for."""
    import pytest
    root = data_root()
    path = os.path.join(root, "cifar10") if root else None
    if path is None or not os.path.isdir(os.path.join(path, "train")):
        pytest.skip("CIFAR-10 not found: set HWQ_DATA to a folder holding cifar10/train and "
                    f"cifar10/test (looked in {path or os.environ.get('HWQ_DATA') or '../shared/data'})")
    return path

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

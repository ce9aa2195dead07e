"""scripts/gpu_cifar10.sh refuses bad arguments before it touches data or starts training (it runs
on GPU machines lent for minutes, where a wrong call costs the lease)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "gpu_cifar10.sh")
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


def _run(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("minutes", ["0", "0.0", "-1", "abc", "1e3", "5m"])
def test_bad_minutes_are_refused(minutes):
    r = _run("float", minutes)  # `timeout 0` would mean no limit at all
    assert r.returncode == 2
    assert f"MINUTES={minutes} is not accepted: expected a positive number of minutes" in r.stderr


def test_missing_arguments_and_data_are_named():
    r = _run("float")
    assert r.returncode != 0 and "usage: gpu_cifar10.sh SCHEMES MINUTES" in r.stderr
    if os.path.exists(os.path.join(REPO, ".carry", "cifar10.tar.gz")):
        pytest.skip(".carry/cifar10.tar.gz exists here: the script would start training")
    r = _run("float", "1")
    assert r.returncode == 2 and "no .carry/cifar10.tar.gz: make it first" in r.stderr

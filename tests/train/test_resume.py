"""A run killed with SIGKILL in the middle of an epoch and resumed with --resume ends with the
same weights, optimizer state and metrics as an uninterrupted run with the same seed."""
import os
import signal
import subprocess
import time

import torch

import hwq
from hwq.train import recipe as recipes

from .helpers import ROOT, env, hwq_cmd, load, run

# W1A1 from scratch (Adam, clipped latent weights, quantizer state) with small batches, so that an
# epoch lasts long enough to be interrupted in its middle.
ARGS = ["--schemes", "w1a1", "--set", "schemes.w1a1.epochs=3", "--set", "data.batch_size=16"]


def untimed(metrics: list[dict]) -> list[dict]:
    """The metrics without the wall-clock seconds of each epoch (train_s, data_s)."""
    return [{k: v for k, v in m.items() if not k.endswith("_s")} for m in metrics]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    run(hwq_cmd(*ARGS, "--out", full))

    ckpt = os.path.join(killed, "w1a1", "last.pt")
    p = subprocess.Popen(hwq_cmd(*ARGS, "--out", killed), cwd=ROOT, env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(ckpt) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # into the second epoch's batches
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert load(ckpt)["epoch"] < 3  # it was really interrupted

    run(hwq_cmd(*ARGS, "--out", killed, "--resume"))
    a, b = load(os.path.join(full, "w1a1", "last.pt")), load(ckpt)
    assert a["epoch"] == b["epoch"] == 3
    assert untimed(a["metrics"]) == untimed(b["metrics"])
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    out = str(tmp_path / "r")
    recipe = recipes.load(os.path.join(ROOT, "recipes", "digits.toml"),
                          ["train.epochs=1", "train.progress=false"])
    first = hwq.train.run(recipe, out, schemes=["float"], log=lambda s: None)
    before = load(os.path.join(out, "float", "last.pt"))
    again = hwq.train.run(recipe, out, schemes=["float"], resume=True, log=lambda s: None)
    after = load(os.path.join(out, "float", "last.pt"))
    assert again == first and after["metrics"] == before["metrics"]
    for k in before["model"]:
        assert torch.equal(before["model"][k], after["model"][k])

"""A run killed with SIGKILL in the middle of an epoch and resumed with --resume ends with the
same weights, optimizer state and metrics as an uninterrupted run with the same seed."""
import os
import signal
import subprocess
import time

import pytest
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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    full = str(tmp_path_factory.mktemp("full"))
    run(hwq_cmd(*ARGS, "--out", full))
    return full


# SIGINT is Ctrl-C: hwq train closes its logs (TensorBoard's writer at most 10 s) and exits 130.
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, uninterrupted, sig):
    full, killed = uninterrupted, str(tmp_path / "killed")
    ckpt = os.path.join(killed, "w1a1", "last.pt")
    p = subprocess.Popen(hwq_cmd(*ARGS, "--out", killed), cwd=ROOT, env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(ckpt) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # into the second epoch's batches
        p.send_signal(sig)
        err = p.communicate(timeout=60)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if sig == signal.SIGKILL:
        assert p.returncode == -signal.SIGKILL
    else:
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
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


def test_ctrl_c_while_a_checkpoint_is_written_waits_for_it(tmp_path, monkeypatch):
    """Ctrl-C landing inside torch.save: the checkpoint is completed, then the KeyboardInterrupt
    comes (raised inside torch.save it had left the zip writer broken, whose clean-up raised a
    RuntimeError instead: hwq train's Ctrl-C then ended in a traceback, seen in CI)."""
    from hwq.train import checkpoint
    real_save = torch.save

    def save_with_ctrl_c(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at its next instruction
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_with_ctrl_c)
    path = str(tmp_path / "last.pt")
    # Python's own handler (the one a plain script has), whatever this process started with: a
    # job started in the background by a shell inherits SIGINT ignored (POSIX), as CI's run did,
    # and the deferral then rightly ignores it too.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(path, {"epoch": 2, "w": torch.arange(1000.0)})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    got = checkpoint.load(path)
    assert got["epoch"] == 2 and torch.equal(got["w"], torch.arange(1000.0))

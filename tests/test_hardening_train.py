"""Training, checkpoints and the CLI under hostile conditions (issue 11): corrupt and foreign
checkpoints, a diverging run, Ctrl-C, log files instead of terminals, later runs into the same
folder, and OS errors at the command-line boundary."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import hwq
from hwq.cli import main
from hwq.train import checkpoint, engine
from hwq.train import recipe as recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIM = {"name": "sgd", "lr": 0.05}
SCHEDULE = {"name": "constant"}


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def _fit(model, path, epochs=2, **kw):
    return engine.fit(model, _data(), _data(32, 1), epochs=epochs, batch_size=16, optim=OPTIM,
                      schedule=SCHEDULE, checkpoint_path=str(path), **kw)


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.fixture()
def good_ckpt(tmp_path):
    path = tmp_path / "last.pt"
    _fit(_model(), path, epochs=1)
    return path


@pytest.mark.parametrize("damage,match", [
    ("truncate", "cannot be read"), ("empty", "cannot be read"), ("flip", "cannot be read"),
    ("text", "cannot be read"), ("list", "holds a list"), ("epoch-3", "epoch = -3"),
    ("epoch-true", "epoch = True"), ("metrics", "metrics entries"),
    ("too-many-epochs", "more than epochs"), ("format", "not a hwq.checkpoint"),
    ("shapes", "does not fit this model"), ("keys", "does not fit this model"),
    ("directory", "is a directory")])
def test_bad_checkpoint_is_one_line_naming_the_file(good_ckpt, tmp_path, damage, match):
    data = good_ckpt.read_bytes()
    path = tmp_path / "bad.pt"
    state = torch.load(good_ckpt, weights_only=True)
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flip":  # bytes flipped in the middle of the zip's data
        b = bytearray(data)
        for i in range(len(b) // 3, len(b) // 3 + 64):
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif damage == "text":
        path.write_text("not a checkpoint")
    elif damage == "directory":
        path.mkdir()
    else:
        if damage == "list":
            state = [1, 2]
        elif damage == "epoch-3":
            state["epoch"] = -3
        elif damage == "epoch-true":
            state["epoch"] = True
        elif damage == "metrics":
            state["metrics"] = state["metrics"] * 2
        elif damage == "too-many-epochs":
            state["epoch"], state["metrics"] = 5, state["metrics"] * 5
        elif damage == "format":
            state["format"] = "other"
        elif damage == "shapes":
            state["model"]["0.weight"] = torch.zeros(8, 7)
        elif damage == "keys":
            state["model"]["extra.weight"] = torch.zeros(1)
        torch.save(state, path)
    with pytest.raises(ValueError, match=match) as e:
        _fit(_model(), path, epochs=2, resume=True)
    assert "bad.pt" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("change,named", [
    ({"epochs": 3}, "epochs = 2 there, 3 here"),
    ({"optim": {**OPTIM, "lr": 0.1}}, "optim.lr = 0.05 there, 0.1 here"),
    ({"schedule": {"name": "cosine"}}, "schedule.name = 'constant' there, 'cosine' here"),
    ({"seed": 1}, "seed = 0 there, 1 here")])
def test_resume_under_another_schedule_is_refused(tmp_path, change, named):
    """A 2-epoch run stopped after its first epoch, resumed with more epochs or another learning
    rate, would train on under a schedule no recipe describes (a cosine restarted mid-way)."""
    path = tmp_path / "last.pt"
    first = _fit(_model(), path, epochs=2)
    state = torch.load(path, weights_only=True)
    state["epoch"], state["metrics"] = 1, state["metrics"][:1]  # as if stopped after epoch 1
    torch.save(state, path)
    kw = {"epochs": 2, "optim": OPTIM, "schedule": SCHEDULE, **change}
    with pytest.raises(ValueError, match="another schedule") as e:
        engine.fit(_model(), _data(), _data(32, 1), batch_size=16, checkpoint_path=str(path),
                   resume=True, **kw)
    assert named in str(e.value) and "last.pt" in str(e.value)
    again = engine.fit(_model(), _data(), _data(32, 1), epochs=2, batch_size=16, optim=OPTIM,
                       schedule=SCHEDULE, checkpoint_path=str(path), resume=True)
    assert [m["test_acc"] for m in again] == [m["test_acc"] for m in first]  # same plan: resumed


def test_resume_of_a_checkpoint_without_its_plan_warns(tmp_path):
    path = tmp_path / "last.pt"
    _fit(_model(), path, epochs=1)
    state = torch.load(path, weights_only=True)
    del state["plan"]  # as written by hwq before checkpoints recorded their plan
    torch.save(state, path)
    with pytest.warns(UserWarning, match="does not record the schedule"):
        _fit(_model(), path, epochs=2, resume=True)


def test_load_model_state_names_file_and_shapes(tmp_path):
    m = _model()
    with pytest.raises(ValueError, match=r"x\.pt.*0\.weight \(8, 7\) \(model: \(8, 6\)\)"):
        checkpoint.load_model_state(m, {"0.weight": torch.zeros(8, 7)}, tmp_path / "x.pt")


# -- a diverging run -----------------------------------------------------------------------------
def test_diverging_run_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    model = _model()

    def poison(metrics):  # after epoch 1 is saved, a weight becomes NaN: epoch 2 diverges
        if metrics["epoch"] == 1:
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")
    with pytest.raises(engine.TrainingDiverged,
                       match=r"^run: loss became NaN at epoch 2 step 1: .*keeps epoch 1"):
        _fit(model, path, epochs=3, on_epoch=poison, desc="run")
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_infinite_loss_is_divergence_too(tmp_path):
    model = _model()
    with torch.no_grad():
        model[2].bias.fill_(float("inf"))
    with pytest.raises(engine.TrainingDiverged, match=r"loss became (nan|NaN|inf) at epoch 1 step 1"):
        _fit(model, tmp_path / "x.pt", epochs=1)


# -- logging -------------------------------------------------------------------------------------
def test_progress_without_a_terminal_is_one_line_per_epoch(tmp_path, capfd):
    _fit(_model(), tmp_path / "x.pt", epochs=3, progress=True, desc="demo")
    err = capfd.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert "\r" not in err
    assert [l.split(":")[0] for l in lines] == [f"demo epoch {e}/3" for e in (1, 2, 3)]


CLOSE_HANG = r"""
import sys, time, warnings
from hwq.train.engine import Logger
log = Logger(sys.argv[1])
log.scalar("x", 1.0, 0)
# an interrupt that landed inside TensorBoard's write left its lock held
log.writer.file_writer.event_writer._async_writer._lock.acquire()
t = time.monotonic()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    log.close(timeout=0.5)
print(round(time.monotonic() - t, 1), any("did not close" in str(x.message) for x in w))
"""


def test_logger_close_is_bounded_when_tensorboard_hangs(tmp_path):
    p = subprocess.run([sys.executable, "-c", CLOSE_HANG, str(tmp_path / "tb")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    seconds, warned = p.stdout.split()
    assert float(seconds) < 5 and warned == "True"


SECOND_CTRL_C = r"""
import time
from hwq.cli import _SecondInterruptExits
with _SecondInterruptExits():
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("cleaning up", flush=True)
        while True:  # a clean-up that never ends and swallows interrupts (the worst case)
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
"""


def test_second_ctrl_c_ends_the_process():
    p = subprocess.Popen([sys.executable, "-c", SECOND_CTRL_C], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)
        assert p.stdout.readline().strip() == "cleaning up"
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 130 and "interrupted twice" in p.stderr.read()


# -- later runs into the same folder -------------------------------------------------------------
def test_later_run_with_other_schemes_keeps_earlier_results(tmp_path):
    out = str(tmp_path / "r")
    recipe = recipes.load(recipes.find("digits"), ["train.epochs=1", "train.progress=false",
                                                   "schemes.w8a8.epochs=1",
                                                   "report.stats_batches=1"])
    first = hwq.train.run(recipe, out, schemes=["float", "w8a8"], log=lambda s: None)
    later = dict(recipe, schemes={"w4": {**recipe["schemes"]["w8a8"], "weights": "fixed:4",
                                         "acts": "fixed:4"}, "float": recipe["schemes"]["float"]})
    second = hwq.train.run(later, out, schemes=["w4"], resume=True, log=lambda s: None)
    saved = json.load(open(os.path.join(out, "results.json")))
    assert set(saved) == {"float", "w8a8", "w4"}
    assert saved["w8a8"] == json.loads(json.dumps(first["w8a8"]))
    assert saved["w4"] == json.loads(json.dumps(second["w4"]))
    rec = json.load(open(os.path.join(out, "recipe.json")))
    assert set(rec["schemes"]) == set(recipe["schemes"]) | {"w4"}  # earlier schemes kept
    assert json.load(open(os.path.join(out, "w8a8", "recipe.json")))["schemes"]["w8a8"][
        "weights"] == "fixed:8"
    assert json.load(open(os.path.join(out, "w4", "recipe.json")))["schemes"]["w4"][
        "weights"] == "fixed:4"


def test_a_run_in_parallel_into_the_same_folder_keeps_the_others_results(tmp_path, monkeypatch):
    """Two runs into one folder at once (scripts/cifar10_table.sh's two lanes): a scheme the other
    run finishes while this one trains survives this run's later writes of results.json."""
    out = str(tmp_path / "r")
    recipe = recipes.load(recipes.find("digits"), ["train.epochs=1", "train.progress=false",
                                                   "schemes.w8a8.epochs=1",
                                                   "report.stats_batches=1"])
    other = {}
    fit = engine.fit

    def fit_while_the_other_lane_finishes(*a, **kw):
        if kw.get("desc") == "w8a8":  # the other run writes its result between our schemes
            path = os.path.join(out, "results.json")
            saved = json.load(open(path))
            other.update(saved["float"], test_acc=12.5)  # a whole entry, of another scheme
            saved["w1a1"] = other
            with open(path, "w") as f:
                json.dump(saved, f)
        return fit(*a, **kw)

    monkeypatch.setattr(engine, "fit", fit_while_the_other_lane_finishes)
    hwq.train.run(recipe, out, schemes=["float", "w8a8"], log=lambda s: None)
    saved = json.load(open(os.path.join(out, "results.json")))
    assert set(saved) == {"float", "w8a8", "w1a1"} and saved["w1a1"] == other


def test_unreadable_earlier_results_are_refused_before_training(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "results.json").write_text("{half")
    recipe = recipes.load(recipes.find("digits"), ["train.epochs=1", "train.progress=false"])
    with pytest.raises(ValueError, match=r"results\.json.*cannot be merged"):
        hwq.train.run(recipe, str(out), schemes=["float"], log=lambda s: None)
    assert (out / "results.json").read_text() == "{half" and not (out / "float").exists()


# -- the command line: OS errors and bad numbers -------------------------------------------------
def _cli(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def test_cli_os_errors_are_one_line_naming_the_path(tmp_path, capsys):
    missing = str(tmp_path / "no" / "such")
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = [
        (["map", "alexnet", "-o", os.path.join(missing, "r.txt")], missing),
        (["profile", "--workload", "alexnet", "-o", os.path.join(missing, "p.json")], missing),
        (["map", "alexnet", "--config", missing + ".toml"], missing),
        (["summary", "--model", "resnet18", "--plan", missing + ".json"], missing),
        (["map", str(tmp_path)], str(tmp_path)),
        (["map", "alexnet", "-o", str(tmp_path)], str(tmp_path)),
        (["train", "--out", str(a_file), "--set", "train.epochs=1", "--no-progress"], "f.txt"),
        (["profile", "--checkpoint", missing + ".pt", "--model", "resnet18"], missing),
    ]
    for argv, path in cases:
        rc, err = _cli(capsys, *argv)
        assert rc == 2, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert path in err and ".tmp-" not in err, (argv, err)


def test_cli_profile_negative_batches(capsys):
    rc, err = _cli(capsys, "profile", "--checkpoint", "x.pt", "--batches", "-5")
    assert rc == 2 and "--batches -5" in err


def test_cli_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "c.pt"
    bad.write_bytes(b"PK\x03\x04garbage")
    rc, err = _cli(capsys, "profile", "--checkpoint", str(bad), "--model", "resnet18")
    assert rc == 2 and "c.pt" in err and "cannot be read" in err


@pytest.mark.parametrize("kw,match", [
    (dict(target=float("nan")), "target=nan"), (dict(target=101.0), "target=101"),
    (dict(target=-1.0), "target=-1"), (dict(tolerance=float("inf")), "tolerance=inf"),
    (dict(tolerance=float("nan")), "tolerance=nan"), (dict(finetune_epochs=-1), "finetune=-1")])
def test_search_numbers_refused_before_any_work(tmp_path, kw, match):
    from hwq.search import runner
    args = dict(target=None, tolerance=1.0, finetune_epochs=0)
    args.update(kw)
    recipe = recipes.load(recipes.find("digits"))
    with pytest.raises(ValueError, match=match):  # no trained model in tmp_path: checked first
        runner.run_energy(recipe, str(tmp_path), "float", "loom", args["target"],
                          args["tolerance"], [2, 4], args["finetune_epochs"], None)


@pytest.mark.parametrize("argv,match", [
    (["--start", "99"], "start=99"), (["--min-bits", "0"], "min_bits=0"),
    (["--start", "4", "--min-bits", "8"], "min_bits=8"),
    (["--mode", "energy", "--uniform-bits", "0,4"], "uniform_bits=0"),
    (["--mode", "energy", "--target", "nan"], "target=nan")])
def test_cli_search_options_checked_before_loading(tmp_path, capsys, argv, match):
    rc, err = _cli(capsys, "search", "--out", str(tmp_path), *argv)  # nothing trained there
    assert rc == 2 and match in err and "does not exist" not in err


@pytest.mark.parametrize("kw,match", [
    (dict(epochs=0), "epochs=0"), (dict(epochs=-1), "epochs=-1"), (dict(epochs=1.5), "epochs=1.5"),
    (dict(batch_size=0), "batch_size=0"), (dict(batch_size=True), "batch_size=True"),
    (dict(test_batch_size=0), "test_batch_size=0"), (dict(seed=1.5), "seed=1.5"),
    (dict(workers=-1), "workers=-1"), (dict(clip_weights=-1), "clip_weights=-1"),
    (dict(clip_weights=float("nan")), "clip_weights=nan"),
    (dict(label_smoothing=2.0), "label_smoothing=2.0"), (dict(device="bogus"), "device='bogus'")])
def test_fit_arguments_named(tmp_path, kw, match):
    args = dict(epochs=1, batch_size=16)
    args.update(kw)
    with pytest.raises(ValueError, match=match):  # before: [] for epochs <= 0, or a foreign error
        engine.fit(_model(), _data(), _data(32, 1), optim=OPTIM, schedule=SCHEDULE, **args)


def test_fit_with_an_empty_test_set():
    with pytest.raises(ValueError, match="test_set is empty"):  # before: ZeroDivisionError
        engine.fit(_model(), _data(), TensorDataset(torch.zeros(0, 6), torch.zeros(0).long()),
                   epochs=1, batch_size=16, optim=OPTIM, schedule=SCHEDULE)


def test_clip_weights_clips_sign_weight_layers_only():
    """clip_weights acts on layers whose weight quantizer declares bipolar (sign weights), by that
    capability: a 2-bit layer's latent weights beyond 1 stay."""
    model = hwq.quantize(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), weights="binary",
                         acts="fixed:8", layers={"1": {"weights": "fixed:2"}})
    with torch.no_grad():
        for m in model:
            m.weight.fill_(3.0)
    engine.clip_binary_weights(model, 1.0)
    assert torch.all(model[0].weight == 1.0) and torch.all(model[1].weight == 3.0)

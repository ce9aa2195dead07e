"""The training loop: ``fit(model, train_set, test_set, ...)`` and ``evaluate(...)``.

One epoch visits a fixed random order of the training set, drawn from a generator seeded with
(seed, epoch) alone, as DistributedSampler does; the last incomplete global batch is dropped. So the
data order never depends on how many epochs ran before in this process, and a resumed run sees the
same batches as an uninterrupted one. Each of P processes takes every P-th sample of each global
batch; DistributedDataParallel averages the gradients, which equals the gradient of the global batch
(exactly, up to float summation order, for models without BatchNorm; with BatchNorm each process
normalises over its own part of the batch unless train.sync_bn is set on GPUs).

Before the first step, the first global batch is run once through the model in training mode
without a step, on every process: this initialises the quantizers' data-dependent state (LSQ steps,
activation ranges, activation signedness) identically everywhere.

After every epoch a checkpoint (model, optimizer, scheduler, epochs done, random states, metrics) is
written atomically; ``resume=True`` loads it and continues where it stopped. A loss that becomes NaN
or Inf stops training at once with ``TrainingDiverged`` ("loss became nan at epoch E step S"): the
checkpoint keeps the last finished epoch. With ``progress`` a tqdm bar runs when stderr is a
terminal; otherwise (log files, CI) one line per epoch is printed instead.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ..nn import QuantLayer
from . import checkpoint, distributed
from .images import ImageTensors
from .recipe import OPTIMIZERS, SCHEDULES, OptimConfig, ScheduleConfig

FORMAT = "hwq.checkpoint"
VERSION = 1
CLOSE_TIMEOUT_S = 10.0  # the most Logger.close waits for TensorBoard's writer thread


class TrainingDiverged(ValueError):
    """The training loss became NaN or Inf; the checkpoint holds the last finished epoch."""


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """cfg: the [optim] section (name sgd / adam / adamw, lr, momentum, weight_decay, nesterov)."""
    name, lr, wd = cfg.name, float(cfg.lr), float(cfg.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.momentum), weight_decay=wd,
                               nesterov=bool(cfg.nesterov))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optim.name = {name!r} is not accepted: expected one of {list(OPTIMIZERS)}")


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int,
              base_lr: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based), per step, not per epoch.

    warmup: linear from 1/warmup_steps to 1 over warmup_epochs; then "cosine" (to min_lr at the
    last step, Loshchilov & Hutter, SGDR 2017), "step" (times gamma every step_size epochs) or
    "constant"."""
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    name = cfg.name
    if name == "constant":
        return 1.0
    if name == "step":
        return float(cfg.gamma) ** ((step // steps_per_epoch) // cfg.step_size)
    if name == "cosine":
        total = max(1, epochs * steps_per_epoch - warm)
        floor = float(cfg.min_lr) / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warm) / total))
    raise ValueError(f"schedule.name = {name!r} is not accepted: expected one of "
                     f"{list(SCHEDULES)}")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation drawn from (seed, epoch), cut into full
    batches of ``batch_size`` (the remainder is dropped)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def clip_binary_weights(model: nn.Module, c: float) -> None:
    """Clip the latent float weights of binary-weight layers to [-c, c] (BNN practice: beyond it
    the clipped straight-through gradient is zero, so the weight could never come back)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantLayer) and m.weight_quant.config.bipolar:  # sign weights
                m.weight.clamp_(-c, c)


def _batches(dataset: Dataset, batches: list[list[int]], device: torch.device, workers: int,
             generator: torch.Generator | None = None):
    """(x, y) on ``device`` for each list of indices. An ImageTensors data set gives whole batches
    from its uint8 tensor (augmented on the device when ``generator`` is given); any other
    Dataset goes through a DataLoader."""
    if isinstance(dataset, ImageTensors):
        for b in batches:
            yield dataset.batch(b, device, generator)
        return
    for x, y in DataLoader(dataset, batch_sampler=batches, num_workers=workers):
        yield x.to(device), y.to(device)


class _Timed:
    """Iterates over ``it`` and adds up the seconds spent waiting for its items (data loading),
    and the seconds from the first request to the last (the whole loop)."""

    def __init__(self, it):
        self.it, self.data_s, self.start, self.end = it, 0.0, None, None

    def __iter__(self):
        self.start = time.perf_counter()
        while True:
            t = time.perf_counter()
            try:
                item = next(self.it)
            except StopIteration:
                self.end = time.perf_counter()
                return
            self.data_s += time.perf_counter() - t
            yield item

    def total_s(self) -> float:
        return (self.end or time.perf_counter()) - (self.start or time.perf_counter())


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
             workers: int = 0) -> dict[str, float]:
    """Mean cross-entropy loss and top-1 accuracy (%) on ``dataset``; with several processes each
    takes every P-th sample and the sums are added up."""
    rank, world = distributed.rank_world()
    was = model.training
    model.eval()
    idx = list(range(rank, len(dataset), world))
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in _batches(dataset, [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)],
                         device, workers):
        out = model(x)
        sums[0] += F.cross_entropy(out, y, reduction="sum").double()
        sums[1] += (out.argmax(1) == y).sum().double()
        sums[2] += len(y)
    distributed.all_reduce_sum(sums)
    model.train(was)
    loss, correct, n = sums.tolist()
    return {"loss": loss / n, "acc": 100.0 * correct / n}


class Logger:
    """TensorBoard scalars and histograms (process 0 only; nothing when log_dir is None)."""

    def __init__(self, log_dir: str | None, purge_step: int | None = None):
        self.writer = None
        if log_dir is not None and distributed.rank_world()[0] == 0:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir, purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def model(self, model: nn.Module, step: int) -> None:
        """Per-layer bit widths and weight histograms of the quantized layers."""
        if self.writer is None:
            return
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self.writer.add_histogram(f"weights/{name}", m.weight.detach().cpu(), step)
                if isinstance(m, QuantLayer):
                    self.writer.add_scalar(f"bits/{name}/weights", m.w_bits, step)
                    self.writer.add_scalar(f"bits/{name}/acts", m.a_bits, step)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Flush and close the writer, waiting at most ``timeout`` seconds. A Ctrl-C that lands
        inside TensorBoard's queue can leave its lock held, and its close then waits forever for
        its writer thread; closing in a daemon thread bounds that wait (the last events may then
        be lost, with a warning) and lets the process end."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        closer = threading.Thread(target=writer.close, name="hwq-tensorboard-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            warnings.warn(f"the TensorBoard writer of {writer.log_dir!r} did not close within "
                          f"{timeout:g} s (interrupted while writing?): its last events may be "
                          "lost", RuntimeWarning, stacklevel=2)


def _check_training_state(state: dict, path: str, epochs: int) -> tuple[int, list]:
    """(epochs done, metrics) of a training checkpoint, checked before anything is loaded."""
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ValueError(f"checkpoint {path!r} is not a {FORMAT} version {VERSION} file "
                         f"(format {state.get('format')!r}, version {state.get('version')!r})")
    missing = [k for k in ("epoch", "model", "optimizer", "scheduler", "rng", "metrics")
               if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path!r} lacks {missing}: not a complete training checkpoint")
    done, metrics = state["epoch"], state["metrics"]
    if type(done) is not int or done < 1:
        raise ValueError(f"checkpoint {path!r}: epoch = {done!r} is not accepted: expected the "
                         "number of finished epochs, an integer >= 1")
    if not isinstance(metrics, list) or len(metrics) != done:
        n = len(metrics) if isinstance(metrics, list) else repr(metrics)
        raise ValueError(f"checkpoint {path!r}: {n} metrics entries for epoch = {done}: expected "
                         "one per finished epoch")
    if done > epochs:
        raise ValueError(f"checkpoint {path!r} has {done} finished epochs, more than epochs = "
                         f"{epochs}: resume with epochs >= {done}, or start afresh without resume")
    return done, list(metrics)


def _check_same_plan(saved: dict | None, plan: dict, path: str) -> None:
    """Refuse to resume under another schedule than the checkpoint's (epochs, batch, seed,
    optimizer, learning-rate schedule). A checkpoint written before hwq recorded its plan cannot
    be checked: that is said, not refused."""
    if saved is None:
        warnings.warn(f"checkpoint {path!r} does not record the schedule it was trained under "
                      "(written by an older hwq): resuming without checking that epochs, "
                      "optimizer and schedule are the same as this run's", stacklevel=3)
        return

    def flat(d: dict, pre: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
        return out

    old, new = flat(saved), flat(plan)
    diff = [f"{k} = {old.get(k)!r} there, {new.get(k)!r} here"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise ValueError(f"checkpoint {path!r} was trained under another schedule ("
                         + "; ".join(diff) + "): resuming would train its remaining epochs under "
                         "a schedule that no recipe describes. Resume with the settings it was "
                         "trained with, or start afresh (without --resume, or another --out)")


def _check_fit_args(**args) -> None:
    """The plain arguments of fit: integers where counts are meant, finite numbers in range."""
    for name in ("epochs", "batch_size", "test_batch_size"):
        v = args[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} is not accepted: expected an integer >= 1")
    for name in ("seed", "workers"):
        v = args[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}={v!r} is not accepted: expected an integer >= 0")
    c = args["clip_weights"]
    if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float))
                          or not 0 < c < math.inf):
        raise ValueError(f"clip_weights={c!r} is not accepted: expected a finite number > 0, or "
                         "None")
    s = args["label_smoothing"]
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
        raise ValueError(f"label_smoothing={s!r} is not accepted: expected a number in [0, 1)")


def _diverged(loss_value: float, world: int, device: torch.device) -> bool:
    """Whether the loss of this step is NaN or Inf on any process (all stop together: one
    process leaving alone would leave the others waiting in the gradient all-reduce)."""
    bad = not math.isfinite(loss_value)
    if world > 1:
        flag = torch.tensor([float(bad)], dtype=torch.float64, device=device)
        distributed.all_reduce_sum(flag)
        bad = bool(flag.item() > 0)
    return bad


def fit(model: nn.Module, train_set: Dataset, test_set: Dataset, *, epochs: int,
        batch_size: int, optim: OptimConfig | dict, schedule: ScheduleConfig | dict,
        seed: int = 0,
        test_batch_size: int = 256, device: torch.device | str = "cpu",
        checkpoint_path: str | None = None, resume: bool = False,
        clip_weights: float | None = None, label_smoothing: float = 0.0,
        log_dir: str | None = None, progress: bool = False, workers: int = 0,
        sync_bn: bool = False, desc: str = "",
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` epochs and return the per-epoch metrics
    (epoch, lr, train_loss, train_acc, test_loss, test_acc; accuracies in %).

    batch_size is the global batch: with P processes (torchrun) each takes batch_size / P.
    optim / schedule: the recipe's [optim] / [schedule] sections (hwq.train.recipe.OptimConfig,
    ScheduleConfig), or tables of them whose missing keys take the recipe defaults (e.g.
    optim={"name": "adam", "lr": 1e-3}). checkpoint_path: written after
    every epoch; with resume=True it is read first (when it exists) and training continues after
    its last finished epoch. Raises ValueError on bad arguments.
    """
    _check_fit_args(epochs=epochs, batch_size=batch_size, test_batch_size=test_batch_size,
                    seed=seed, workers=workers, clip_weights=clip_weights,
                    label_smoothing=label_smoothing)
    if not isinstance(optim, OptimConfig):
        optim = OptimConfig.from_table(optim)
    if not isinstance(schedule, ScheduleConfig):
        schedule = ScheduleConfig.from_table(schedule)
    rank, world = distributed.rank_world()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not accepted: expected a torch device such as "
                         "'cpu', 'cuda' or 'cuda:1'") from None
    if len(test_set) == 0:
        raise ValueError("test_set is empty: expected at least one sample to evaluate on")
    if batch_size % world:
        raise ValueError(f"data.batch_size = {batch_size} is not accepted with {world} processes: "
                         "expected a multiple of the number of processes (it is the global batch)")
    if len(train_set) < batch_size:
        raise ValueError(f"data.batch_size = {batch_size} is larger than the training set "
                         f"({len(train_set)} samples): expected at most {len(train_set)}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    model.to(device)
    opt = make_optimizer(model.parameters(), optim)
    steps_per_epoch = len(train_set) // batch_size
    base_lr = float(optim.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(schedule, s, steps_per_epoch, epochs, base_lr))

    # What fixes the learning rate of every step: a checkpoint keeps it, and resuming under
    # another (more epochs, another lr) would silently give a run no schedule describes.
    plan = {"epochs": epochs, "batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
            "seed": seed, "optim": optim.to_table(), "schedule": schedule.to_table()}
    start, history = 0, []
    if resume and os.path.exists(checkpoint_path):
        state = checkpoint.load(checkpoint_path)
        start, history = _check_training_state(state, checkpoint_path, epochs)
        checkpoint.load_model_state(model, state["model"], checkpoint_path)
        try:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            checkpoint.set_rng_state(state["rng"])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ValueError(f"checkpoint {checkpoint_path!r}: its optimizer, scheduler or random "
                             f"state does not fit this run ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        _check_same_plan(state.get("plan"), plan, checkpoint_path)
    else:
        first = epoch_batches(len(train_set), batch_size, seed, 0)[0]
        x0 = torch.stack([train_set[i][0] for i in first]).to(device)
        with torch.no_grad():
            model.train()
            model(x0)

    net = model
    if world > 1:
        if sync_bn and device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    logger = Logger(log_dir, purge_step=start * steps_per_epoch if start else None)
    if start == 0:
        logger.model(model, 0)
    # A bar redraws itself with carriage returns: in a log file or CI that is one line per
    # update, so without a terminal one line per epoch is printed instead.
    bar_on = progress and rank == 0 and sys.stderr.isatty()
    try:
        from tqdm import tqdm
        for epoch in range(start, epochs):
            net.train()
            batches = [b[rank::world] for b in epoch_batches(len(train_set), batch_size, seed, epoch)]
            # Augmentation draws depend on (seed, epoch, rank) only: a resumed run repeats them.
            aug = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 64 + rank)
            timed = _Timed(_batches(train_set, batches, device, workers, aug))
            bar = tqdm(timed, total=len(batches), desc=f"{desc} epoch {epoch + 1}/{epochs}",
                       leave=False, disable=not bar_on, dynamic_ncols=True)
            sums = torch.zeros(3, dtype=torch.float64, device=device)
            for i, (x, y) in enumerate(bar):
                out = net(x)
                loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
                loss_value = loss.item()
                if _diverged(loss_value, world, device):
                    kept = (f"; {checkpoint_path!r} keeps epoch {epoch}, the last finished one"
                            if checkpoint_path is not None and epoch > 0 else "")
                    raise TrainingDiverged(
                        f"{desc + ': ' if desc else ''}loss became "
                        f"{'NaN' if math.isnan(loss_value) else loss_value} at epoch {epoch + 1} "
                        f"step {i + 1}: training stopped{kept}. Try a lower optim.lr (now "
                        f"{base_lr:g}) or a warmup")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                lr = opt.param_groups[0]["lr"]
                sched.step()
                if clip_weights is not None:
                    clip_binary_weights(model, clip_weights)
                sums[0] += loss.detach().double() * len(y)
                sums[1] += (out.detach().argmax(1) == y).sum().double()
                sums[2] += len(y)
                step = epoch * steps_per_epoch + i
                logger.scalar("train/loss", loss_value, step)
                logger.scalar("train/lr", lr, step)
                bar.set_postfix(loss=f"{loss_value:.3f}")
            distributed.all_reduce_sum(sums)
            test = evaluate(model, test_set, test_batch_size, device, workers)
            metrics = {"epoch": epoch + 1, "lr": lr, "train_loss": sums[0].item() / sums[2].item(),
                       "train_acc": 100.0 * sums[1].item() / sums[2].item(),
                       "test_loss": test["loss"], "test_acc": test["acc"],
                       "train_s": timed.total_s(), "data_s": timed.data_s}
            history.append(metrics)
            step = (epoch + 1) * steps_per_epoch
            for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
                logger.scalar(k.replace("_", "/", 1), metrics[k], step)
            logger.model(model, step)
            if checkpoint_path is not None and rank == 0:
                checkpoint.save(checkpoint_path, {
                    "format": FORMAT, "version": VERSION, "epoch": epoch + 1,
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": checkpoint.rng_state(),
                    "metrics": history, "plan": plan})
            distributed.barrier()
            if progress and rank == 0 and not bar_on:
                print(f"{desc + ' ' if desc else ''}epoch {epoch + 1}/{epochs}: train loss "
                      f"{metrics['train_loss']:.4f}, train acc {metrics['train_acc']:.2f}%, test "
                      f"acc {metrics['test_acc']:.2f}% ({metrics['train_s']:.0f} s)",
                      file=sys.stderr, flush=True)
            if on_epoch is not None:
                on_epoch(metrics)
    finally:
        logger.close()
    return history

"""NaN and Inf in a deployed model: the per-batch switch and the forward hooks that set it.

A deployed model follows the QAT model in eval mode (README, "NaN and Inf"): +/-Inf saturates to
the end codes, and an output is NaN exactly where the QAT layer's is, i.e. where its receptive
field holds a NaN input. The deployed model checks its own input once (one min/max read of the
batch, ``_before_forward``): only a batch holding NaN or Inf makes every deployed layer check its
input for NaN (``_has_nan``) and take the slow path where it finds one. scripts/bench_deploy_nan.py
measures the cost: on one thread both the input check and a per-layer check are within the
run-to-run noise of a binary ResNet-18 (+-4%); on two threads of a loaded machine every extra
parallel op between the kernels can wait for a time slice, so the per-layer check is kept for the
batches that need it. Not covered: NaN made inside the model from a finite input (a float layer
deploy kept overflowing to Inf, then Inf - Inf).
"""
from __future__ import annotations

import threading

import torch
from torch import nn


class _NanChecks(threading.local):
    """Per thread: one entry per deployed model running now (a deployed model may run inside
    another), True while its batch holds NaN or Inf."""

    def __init__(self):
        self.stack: list[bool] = []

    @property
    def on(self) -> bool:
        return bool(self.stack) and self.stack[-1]


_NAN_CHECKS = _NanChecks()


def _has_nan(x: torch.Tensor) -> bool:
    """Whether the float input ``x`` of a deployed layer holds a NaN; checked only while the
    deployed model runs a batch that held NaN or Inf (amax is NaN exactly when a NaN is present).
    Packed sign bits (int64) from a chained layer never hold NaN: that layer checked its input."""
    return (_NAN_CHECKS.on and x.is_floating_point() and x.numel() > 0
            and bool(torch.isnan(x.amax())))


def _nonfinite(t) -> bool:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return False
    lo, hi = torch.aminmax(t.detach())
    return not bool(torch.isfinite(lo) & torch.isfinite(hi))


def _without_nan(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), torch.zeros((), dtype=x.dtype), x)


def _before_forward(model: nn.Module, args, kwargs) -> None:
    """Forward pre-hook of a deployed model: refuse training mode (it would recalibrate the
    quantizers and batch norms of the layers deploy kept); turn the layers' NaN checks on for a
    batch that holds NaN or Inf."""
    # pushed first: _after_forward pops it however the call ends (always_call), this hook's
    # own error included
    _NAN_CHECKS.stack.append(False)
    if model.training:
        raise ValueError(f"this {type(model).__name__} was made by hwq.deploy and runs in eval "
                         "mode only: call .eval() before running it (train() would recalibrate "
                         "the quantizers and batch norms of the layers it kept)")
    _NAN_CHECKS.stack[-1] = any(_nonfinite(t) for t in (*args, *kwargs.values()))


def _after_forward(model: nn.Module, args, kwargs, output) -> None:
    if _NAN_CHECKS.stack:
        _NAN_CHECKS.stack.pop()


def install_hooks(model: nn.Module) -> None:
    """Make ``model`` refuse training mode and switch its layers' NaN checks per batch."""
    model.register_forward_pre_hook(_before_forward, with_kwargs=True)
    model.register_forward_hook(_after_forward, with_kwargs=True, always_call=True)

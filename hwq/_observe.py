"""Running a model to measure it (shapes, statistics) without changing it."""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from .quant import Quantizer


@contextlib.contextmanager
def observing(model: nn.Module):
    """Eval mode and no_grad inside the block; on exit every quantizer's state (activation ranges,
    learned steps, signedness decided on a first batch) and every module's training flag are put
    back, so hwq.summary and hwq.profile never calibrate anything."""
    quantizers = [m for m in model.modules() if isinstance(m, Quantizer)]
    saved = [copy.deepcopy(q.state_dict()) for q in quantizers]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for q, s in zip(quantizers, saved):
            q.load_state_dict(s)
        for m, t in modes.items():
            m.train(t)

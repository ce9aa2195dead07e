"""Per-layer precision search as Stripes (Judd et al., MICRO 2016) and Proteus (Judd et al., ICS
2016) profile a network: starting from the trained model at ``start`` bits everywhere, lower one
layer's weight or activation precision at a time, keeping a choice only when the accuracy of the
whole network (all earlier choices applied) stays within ``tolerance`` points of the baseline.

Order: layers by decreasing MACs (the biggest savings are tried first), activations before weights
in each layer. For one layer and kind, the lowest passing bit width is found by bisection between
``min_bits`` and the current width, which assumes that accuracy does not rise as that one width
falls; when it does, a lower passing width may be missed, never a failing one taken: every accepted
configuration has been evaluated as a whole, so the returned plan meets the tolerance on the
evaluation data by construction (re-evaluating it gives the same number). The papers search
activations only, with weights at 16 bits; ``kinds`` chooses.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import torch
from torch import nn

from .._table import text_table
from ..plan import Plan
from ..profile import profile as make_profile
from .common import Bits, Evaluate, apply, check_bits, layer_names, to_plan


@dataclasses.dataclass
class LayerwiseResult:
    """bits: the chosen {layer: (w_bits, a_bits)}; accuracy / baseline in %; trace: one dict per
    evaluated configuration (layer, kind, bits, accuracy, accepted, config: the whole
    {layer: (w_bits, a_bits)} evaluated)."""

    bits: Bits
    accuracy: float
    baseline: float
    tolerance: float
    trace: list[dict]

    @property
    def plan(self) -> Plan:
        return to_plan(self.bits)

    def table(self) -> str:
        body = [[n, str(w), str(a)] for n, (w, a) in self.bits.items()]
        return (text_table(["layer", "w_bits", "a_bits"], body)
                + f"\naccuracy {self.accuracy:.2f}% (baseline {self.baseline:.2f}%, tolerance "
                f"{self.tolerance} points, {len(self.trace)} evaluations)")


def check_search_numbers(**values: Any) -> None:
    """target (accuracy in %, or None) in [0, 100]; tolerance (points) finite and >= 0;
    finetune (epochs) an integer >= 0. NaN passes comparisons silently, so it is named here."""
    for name, v in values.items():
        if name == "target" and v is None:
            continue
        if name == "finetune":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"finetune={v!r} is not accepted: expected a number of epochs, "
                                 "an integer >= 0")
            continue
        lo, hi = (0.0, 100.0) if name == "target" else (0.0, math.inf)
        ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
              and lo <= v <= hi)
        if not ok:
            what = "an accuracy in % from 0 to 100" if name == "target" else \
                "a finite number of accuracy points >= 0"
            raise ValueError(f"{name}={v!r} is not accepted: expected {what}")


def layerwise(model: nn.Module, evaluate: Evaluate, calib: list[torch.Tensor],
              tolerance: float = 1.0, start: int = 16, min_bits: int = 2,
              kinds: Iterable[str] = ("acts", "weights")) -> LayerwiseResult:
    """Search per-layer bit widths (see the module docstring).

    model: the trained model (float or quantized; it is not changed).
    evaluate: model -> accuracy in %, on the data the tolerance refers to.
    calib: input batches for the activation ranges (and the MAC count); one batch of a few
        hundred samples is cheaper than several small ones.
    tolerance: accepted accuracy loss in points vs the ``start``-bit baseline.
    """
    check_bits("start", start)
    check_bits("min_bits", min_bits)
    if min_bits > start:
        raise ValueError(f"min_bits={min_bits} is not accepted: expected at most start={start}")
    check_search_numbers(tolerance=tolerance)
    kinds = tuple(kinds)
    if not kinds or any(k not in ("acts", "weights") for k in kinds):
        raise ValueError(f"kinds={kinds!r} is not accepted: expected 'acts' and/or 'weights'")
    names = layer_names(model)
    if not names:
        raise ValueError("model has no Conv2d / Linear layer to search")
    macs = {l.name: l.macs for l in make_profile(model, calib[0])}
    bits: Bits = {n: (start, start) for n in names}
    baseline = evaluate(apply(model, bits, calib))
    accuracy, trace = baseline, []
    for name in sorted(names, key=lambda n: -macs.get(n, 0)):
        for kind in kinds:
            i = 1 if kind == "acts" else 0
            lo, hi = min_bits, bits[name][i]  # hi passes (it is the current configuration)
            while lo < hi:
                mid = (lo + hi) // 2
                trial = dict(bits)
                trial[name] = (mid, bits[name][1]) if i == 0 else (bits[name][0], mid)
                acc = evaluate(apply(model, trial, calib))
                ok = acc >= baseline - tolerance
                trace.append({"layer": name, "kind": kind, "bits": mid, "accuracy": acc,
                              "accepted": ok, "config": dict(trial)})
                if ok:
                    hi, accuracy = mid, acc
                else:
                    lo = mid + 1
            bits[name] = (hi, bits[name][1]) if i == 0 else (bits[name][0], hi)
    return LayerwiseResult(bits, accuracy, baseline, tolerance, trace)

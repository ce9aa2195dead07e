"""Energy-aware precision search in the manner of QAPPA / "Minimum Energy Quantized Neural
Networks" (Moons et al., Asilomar 2017): evaluate candidate configurations for accuracy and, with an
accelerator model (hwq.map), for energy; report the accuracy-energy Pareto front and pick the
configuration of least energy that meets an accuracy target.

Candidates: every uniform (w_bits, a_bits) pair from ``uniform_bits``, and per-layer
configurations: those the layer-wise search (hwq.search.layerwise) accepts on its way down, run
with a tolerance of twice the distance to the target (so that they straddle it), at most
``max_layerwise`` of them, evenly spaced along the way. Each is applied post
training (fixed:b, calibrated) to the trained model and, when ``finetune`` is given, fine-tuned
before its accuracy is measured (the paper's retraining).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .. import hw
from .._io import atomic_write, atomic_write_text
from .._table import text_table
from ..profile import profile as make_profile
from .common import Bits, Evaluate, apply, check_bits, layer_names, to_plan
from .layerwise import check_search_numbers, layerwise


@dataclasses.dataclass
class Candidate:
    """One configuration: name ("w4a8", "layerwise-3"), bits per layer, accuracy (%), energy
    (pJ per image on ``arch``), cycles per image and whether it lies on the Pareto front."""

    name: str
    bits: Bits
    accuracy: float
    energy_pj: float
    cycles: float
    pareto: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "accuracy": self.accuracy, "energy_pj": self.energy_pj,
                "cycles": self.cycles, "pareto": self.pareto,
                "plan": to_plan(self.bits).to_dict()}


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats on both axes (higher accuracy, lower energy), by energy.
    Marks them ``pareto=True``."""
    front = []
    for c in cands:
        c.pareto = not any((o.accuracy >= c.accuracy and o.energy_pj < c.energy_pj)
                           or (o.accuracy > c.accuracy and o.energy_pj <= c.energy_pj)
                           for o in cands)
        if c.pareto:
            front.append(c)
    return sorted(front, key=lambda c: c.energy_pj)


@dataclasses.dataclass
class EnergySearchResult:
    candidates: list[Candidate]
    front: list[Candidate]
    chosen: Candidate | None
    target: float
    baseline: float  # accuracy of the trained model as given (%)
    arch: str

    def table(self) -> str:
        cands = sorted(self.candidates, key=lambda c: c.energy_pj)
        rows = [text_table(
            ["candidate", "accuracy", "energy_uJ", "cycles", "pareto"],
            [[c.name, f"{c.accuracy:.2f}", f"{c.energy_pj / 1e6:.3f}", f"{c.cycles:,.0f}",
              "*" if c.pareto else ""] for c in cands],
            notes=["<- chosen" if c is self.chosen else "" for c in cands])]
        pick = (f"chosen: {self.chosen.name} ({self.chosen.accuracy:.2f}%, "
                f"{self.chosen.energy_pj / 1e6:.3f} uJ)" if self.chosen else
                "chosen: none meets the target")
        rows.append(f"{self.arch}; trained model {self.baseline:.2f}%; target >= "
                    f"{self.target:.2f}%; {pick}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "target": self.target, "baseline": self.baseline,
                "chosen": None if self.chosen is None else self.chosen.name,
                "candidates": [c.to_dict() for c in self.candidates]}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON text; written to ``path`` (atomically) when given."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def plot(self, path: str | os.PathLike) -> None:
        """Accuracy vs energy of every candidate, the front joined by a line (matplotlib)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ValueError("plotting needs matplotlib, which is not installed: "
                             "pip install matplotlib") from None
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([c.energy_pj / 1e6 for c in self.candidates],
                   [c.accuracy for c in self.candidates], s=14, color="0.6", label="candidates")
        ax.plot([c.energy_pj / 1e6 for c in self.front], [c.accuracy for c in self.front],
                "o-", color="C0", label="Pareto front")
        if self.chosen is not None:
            ax.plot(self.chosen.energy_pj / 1e6, self.chosen.accuracy, "*", ms=14, color="C3",
                    label=f"chosen: {self.chosen.name}")
        ax.axhline(self.target, ls="--", color="C3", lw=0.8)
        ax.set_xlabel(f"energy per image on {self.arch} (uJ)")
        ax.set_ylabel("accuracy (%)")
        ax.legend()
        fig.tight_layout()
        try:  # atomic, with the umask's mode, errors naming the user's path
            atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"), mode="wb")
        finally:
            plt.close(fig)


def energy_search(model: nn.Module, evaluate: Evaluate, calib: list[torch.Tensor],
                  arch: str = "loom", target: float | None = None, tolerance: float = 1.0,
                  uniform_bits: Iterable[int] = (2, 3, 4, 6, 8, 16), max_layerwise: int = 8,
                  finetune: Callable[[nn.Module], None] | None = None,
                  arch_config: Any = None, baseline_arch: str = "dadiannao") -> EnergySearchResult:
    """Evaluate the candidates, build the Pareto front, pick the least-energy one meeting
    ``target`` (accuracy in %; default: the trained model's accuracy minus ``tolerance`` points).

    arch / arch_config: the accelerator model and its options (as for hwq.map).
    finetune: optional callable that trains a quantized copy in place before it is evaluated."""
    if arch not in hw.ARCHS:
        raise ValueError(f"arch={arch!r} is not accepted: expected one of {list(hw.ARCHS)}")
    check_search_numbers(target=target, tolerance=tolerance)
    if isinstance(max_layerwise, bool) or not isinstance(max_layerwise, int) or max_layerwise < 0:
        raise ValueError(f"max_layerwise={max_layerwise!r} is not accepted: expected an integer "
                         ">= 0")
    uniform_bits = sorted(set(uniform_bits))
    for b in uniform_bits:
        check_bits("uniform_bits", b)
    names = layer_names(model)
    baseline = evaluate(model)
    if target is None:
        target = baseline - tolerance
    configs: list[tuple[str, Bits]] = [
        (f"w{w}a{a}", {n: (w, a) for n in names}) for w in uniform_bits for a in uniform_bits]
    if max_layerwise > 0:
        found = layerwise(model, evaluate, calib, tolerance=max(0.5, 2 * (baseline - target)))
        steps = [t["config"] for t in found.trace if t["accepted"]]
        if len(steps) > max_layerwise:
            steps = [steps[round(i * (len(steps) - 1) / (max_layerwise - 1))]
                     for i in range(max_layerwise)] if max_layerwise > 1 else steps[-1:]
        seen = {tuple(b.values()) for _, b in configs}
        for k, bits in enumerate(steps):
            if tuple(bits.values()) not in seen:
                seen.add(tuple(bits.values()))
                configs.append((f"layerwise-{k + 1}", bits))
    cands = []
    for name, bits in configs:
        q = apply(model, bits, calib)
        if finetune is not None:
            finetune(q)
            q.eval()
        acc = evaluate(q)
        prof = make_profile(q, batches=calib[:1], name=name)
        rep = hw.map(prof, arch, baseline=baseline_arch, config=arch_config)
        cands.append(Candidate(name, bits, acc, rep.total.energy_pj.total, rep.total.cycles))
    front = pareto_front(cands)
    meeting = [c for c in cands if c.accuracy >= target]
    chosen = min(meeting, key=lambda c: (c.energy_pj, -c.accuracy)) if meeting else None
    return EnergySearchResult(cands, front, chosen, target, baseline, arch)

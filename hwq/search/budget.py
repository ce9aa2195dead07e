"""Mixed precision under a hardware budget (HAWQ-V3, Yao et al., ICML 2021, with hwq's accelerator
models as the budget): choose every layer's (w_bits, a_bits) to minimise the summed sensitivity
(hwq.search.sensitivity) subject to budgets on

* ``energy`` or ``latency`` per image on an accelerator model (hwq.map),
* ``size``: the weights at their bit widths (biases and BatchNorm, kept float, not counted),
* ``bops``: bit operations per image, sum of MACs * w_bits * a_bits (as HAWQ-V3 and Bit-Fusion).

Each cost is a sum over layers of a term that depends only on that layer's own bits (hwq's
accelerator models cost a layer from its shape and precisions; its output is counted at its own
activation precision), so the problem is a multiple-choice knapsack: one binary x[l, k] per layer l
and candidate pair k, sum_k x[l, k] = 1, sum_{l,k} cost_m[l, k] x[l, k] <= budget_m for each budget
m, minimise sum omega[l, k] x[l, k]. It is solved exactly as an integer linear program by HiGHS
(Huangfu & Hall 2018) through scipy.optimize.milp: scipy already comes with scikit-learn, a hwq
dependency, and HiGHS is a branch-and-cut MILP solver, so no extra package and no solver binary
(PuLP would bring CBC, OR-Tools a 30 MB wheel). The relative gap is set to 0 and the objective
scaled so that HiGHS's absolute gap (1e-6) is far below any difference between plans; the budgets
are then checked in plain floating point and the problem solved again, tighter, if a solver
tolerance let one through.

Budgets: ``"energy=0.5x"`` (relative to the uniform 8-bit plan), ``"energy=w4a4"`` (equal to the
uniform W4A4 plan, pinned layers keeping their pins), or absolute: energy in uJ (pJ, nJ, uJ, mJ, J),
latency in ms (ns, us, ms, s), size in MB (B, kB, MB, GB: decimal bytes; or "bits"), bops as a
number (suffix K, M, G, T). Pinned layers (default: the first and the last in execution order)
take one fixed pair (8, 8).

Energy and latency of a design whose cost uses run-time statistics (dynamic precisions: dstripes,
loom_dynamic, pragmatic, tartan ...) are taken from profiles of the uniform plan at each pair; the
statistics of a layer then depend a little on the other layers' bits, so the plan's own mapped cost
(``mapped``) may differ slightly from the allocation's; for static designs they agree exactly.

Import names from this module with ``from hwq.search.budget import ...``: ``hwq.search.budget``
itself is the search function.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import time
import warnings
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .. import hw
from .._io import atomic_write, atomic_write_text
from .._table import text_table
from ..hw.cost import NO_STATS
from ..profile import Profile
from ..profile import profile as make_profile
from .common import Bits, apply, check_bits, spec_with_bits, to_plan
from .sensitivity import METHODS, Sensitivity, sensitivity

Pair = tuple[int, int]  # (w_bits, a_bits)

METRICS = ("energy", "latency", "size", "bops")
# metric -> (unit shown, {unit: factor to the internal unit}); internal: pJ, seconds, bits, BOPs
UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "energy": ("uJ", {"pj": 1.0, "nj": 1e3, "uj": 1e6, "µj": 1e6, "mj": 1e9, "j": 1e12}),
    "latency": ("ms", {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}),
    "size": ("MB", {"bits": 1.0, "b": 8.0, "kb": 8e3, "mb": 8e6, "gb": 8e9}),
    "bops": ("GBOPs", {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}),
}
ARCH_METRICS = ("energy", "latency")
_UNIFORM = re.compile(r"^w(\d+)a(\d+)$")
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(.*)$", re.IGNORECASE)


def shown(metric: str, value: float) -> float:
    """A metric's internal value (pJ, s, bits, BOPs) in its display unit (uJ, ms, MB, GBOPs)."""
    unit, table = UNITS[metric]
    return value / table[unit.lower() if metric != "bops" else "g"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """One budget as written: ``metric``; either ``value`` (absolute, internal unit), ``scale``
    (times the uniform 8-bit plan) or ``uniform`` (the cost of that uniform (w, a) plan)."""

    metric: str
    text: str
    value: float | None = None
    scale: float | None = None
    uniform: Pair | None = None

    @classmethod
    def parse(cls, text: str) -> "Budget":
        if not isinstance(text, str) or "=" not in text:
            raise ValueError(f"budget {text!r} is not accepted: expected METRIC=VALUE with METRIC "
                             f"one of {list(METRICS)}, e.g. energy=0.5x, energy=w4a4, "
                             "latency=0.2ms, size=0.05MB, bops=1.5G")
        metric, _, value = (s.strip() for s in text.partition("="))
        metric = metric.lower()
        if metric not in METRICS:
            raise ValueError(f"budget {text!r}: metric {metric!r} is not accepted: expected one "
                             f"of {list(METRICS)}")
        m = _UNIFORM.match(value.lower())
        if m:
            pair = (int(m.group(1)), int(m.group(2)))
            check_bits(f"budget {text!r} w_bits", pair[0])
            check_bits(f"budget {text!r} a_bits", pair[1])
            return cls(metric, text, uniform=pair)
        m = _NUMBER.match(value)
        unit_shown, table = UNITS[metric]
        if not m:
            raise ValueError(f"budget {text!r}: value {value!r} is not accepted: expected a number "
                             f"with 'x' (times the uniform 8-bit plan), a unit among "
                             f"{[u for u in table if u and u[0] != 'µ']} (default {unit_shown}), "
                             "or a uniform plan such as w4a4")
        number, unit = float(m.group(1)), m.group(2).strip().lower()
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"budget {text!r}: a negative or non-finite budget is not accepted: "
                             "expected a value >= 0")
        if unit == "x":
            return cls(metric, text, scale=number)
        if unit == "" and metric != "bops":
            unit = unit_shown.lower()
        if metric == "bops" and unit.endswith("bops"):
            unit = unit[:-4]
        if unit not in table:
            raise ValueError(f"budget {text!r}: unit {m.group(2)!r} is not accepted for {metric}: "
                             f"expected 'x' or one of {[u for u in table if u and u[0] != 'µ']}")
        return cls(metric, text, value=number * table[unit])


def parse_budgets(budgets: str | Budget | Sequence[str | Budget] | dict[str, Any]) -> list[Budget]:
    """Budgets from "energy=0.5x", "energy=0.5x,size=1MB", a list of such strings, or a dict
    {"energy": "0.5x"}. One budget per metric."""
    if isinstance(budgets, Budget):
        items: list[Any] = [budgets]
    elif isinstance(budgets, str):
        items = [t for t in budgets.split(",") if t.strip()]
    elif isinstance(budgets, dict):
        items = [f"{k}={v}" for k, v in budgets.items()]
    elif isinstance(budgets, (list, tuple)):
        items = [t for b in budgets for t in ([b] if isinstance(b, Budget) else str(b).split(","))
                 if isinstance(t, Budget) or t.strip()]
    else:
        raise ValueError(f"budgets={budgets!r} is not accepted: expected a string such as "
                         "'energy=0.5x', a list of them, or a dict {metric: value}")
    out = [b if isinstance(b, Budget) else Budget.parse(b) for b in items]
    if not out:
        raise ValueError("budgets is empty: give at least one, e.g. 'energy=0.5x'")
    metrics = [b.metric for b in out]
    dup = sorted({m for m in metrics if metrics.count(m) > 1})
    if dup:
        raise ValueError(f"budgets {[b.text for b in out]}: more than one budget for {dup}: "
                         "expected one per metric")
    return out


# -- cost table ----------------------------------------------------------------------------------

def layer_costs(profile: Profile, arch: str | None, arch_config: Any = None,
                baseline: str = "dadiannao") -> dict[str, dict[str, float]]:
    """{layer: {metric: cost}} of ``profile`` at its own bits: size and BOPs from shapes, energy
    (pJ) and latency (s) per image from hwq.map on ``arch`` (omitted when arch is None)."""
    out = {l.name: {"size": float(l.weights * l.w_bits),
                    "bops": float(l.macs * l.w_bits * l.a_bits)} for l in profile.layers}
    if arch is not None:
        rep = hw.map(profile, arch, baseline=baseline, config=arch_config)
        for l in rep.layers:
            out[l.name]["energy"] = l.energy_pj.total
            out[l.name]["latency"] = l.seconds
    return out


def _with_bits(profile: Profile, pair: Pair) -> Profile:
    w, a = pair
    layers = [dataclasses.replace(l, w_bits=w, a_bits=a, w_quant=f"fixed:{w}", a_quant=f"fixed:{a}",
                                  w_float=False, a_float=False, w_pow2=False, w_frac=None, a_frac=None,
                                  stats=None) for l in profile.layers]
    return Profile(layers, name=profile.name, input_shape=profile.input_shape,
                   meta=dict(profile.meta))


def uses_statistics(profile: Profile, arch: str, arch_config: Any = None) -> bool:
    """Whether ``arch`` (with its options) reads run-time statistics: it says so in a note when
    the profile has none."""
    prefix = NO_STATS.split("{")[0]
    rep = hw.map(_with_bits(profile, (8, 8)), arch, config=arch_config)
    return any(prefix in n for n in rep.notes) or any(
        "no run-time statistics" in n for n in rep.notes)


def cost_table(model: nn.Module, calib: list[torch.Tensor], pairs: Iterable[Pair],
               arch: str | None, arch_config: Any = None, baseline: str = "dadiannao",
               weights: Any = "fixed", acts: Any = "fixed"
               ) -> tuple[list[str], dict[str, dict[Pair, dict[str, float]]], bool]:
    """(layer names in execution order, {layer: {pair: {metric: cost}}}, exact) for every pair.
    exact is False when the arch's costs use run-time statistics (see the module docstring)."""
    pairs = sorted(set(pairs))
    static = make_profile(model, calib[0][:1], name="budget")
    names = [l.name for l in static.layers]
    dynamic = arch is not None and uses_statistics(static, arch, arch_config)
    table: dict[str, dict[Pair, dict[str, float]]] = {n: {} for n in names}
    for pair in pairs:
        if dynamic:
            q = apply(model, {n: pair for n in names}, calib, weights, acts)
            prof = make_profile(q, batches=calib[:1], name=f"w{pair[0]}a{pair[1]}")
        else:
            prof = _with_bits(static, pair)
        for n, c in layer_costs(prof, arch, arch_config, baseline).items():
            table[n][pair] = c
    return names, table, not dynamic


# -- the exact allocation ------------------------------------------------------------------------

@dataclasses.dataclass
class Allocation:
    """The solver's answer: ``choice`` {layer: pair}, ``objective`` (summed sensitivity),
    ``totals`` {metric: cost} and what the solve took."""

    choice: dict[str, Pair]
    objective: float
    totals: dict[str, float]
    seconds: float
    solves: int


def allocate(omega: dict[str, dict[Pair, float]], costs: dict[str, dict[Pair, dict[str, float]]],
             limits: dict[str, float], time_limit: float = 300.0) -> Allocation:
    """Exact multiple-choice knapsack (module docstring): for every layer of ``omega`` one of its
    pairs, minimising the summed omega with sum of costs[l][pair][m] <= limits[m] for each m.

    Raises ValueError naming the budget when no choice meets it (the least reachable cost is in the
    message) or when the budgets together exclude every choice."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_array

    names = list(omega)
    if not names:
        raise ValueError("omega is empty: expected at least one layer")
    for m, lim in limits.items():
        if not (isinstance(lim, (int, float)) and math.isfinite(lim) and lim >= 0):
            raise ValueError(f"limit {m}={lim!r} is not accepted: expected a finite value >= 0")
        least = sum(min(costs[n][p][m] for p in omega[n]) for n in names)
        if least > lim:
            raise ValueError(f"budget {m} <= {_fmt(m, lim)} is infeasible: the least {m} any plan "
                             f"reaches with these candidate bits and pinned layers is "
                             f"{_fmt(m, least)}")
    var = [(n, p) for n in names for p in sorted(omega[n])]
    om = [omega[n][p] for n, p in var]
    if any(not math.isfinite(o) for o in om):
        raise ValueError("omega holds a non-finite sensitivity: expected finite numbers")
    span = sum(max(omega[n].values()) - min(omega[n].values()) for n in names)
    scale = 1e6 / span if span > 0 else 1.0  # HiGHS's absolute gap 1e-6 << any real difference
    c = [o * scale for o in om]
    a_eq = lil_array((len(names), len(var)))
    row = {n: i for i, n in enumerate(names)}
    for j, (n, _) in enumerate(var):
        a_eq[row[n], j] = 1.0
    metrics = list(limits)
    start = time.perf_counter()
    rhs = {m: 1.0 for m in metrics}  # each budget row divided by its limit
    for solves in range(1, 6):
        cons = [LinearConstraint(a_eq.tocsr(), 1.0, 1.0)]
        if metrics:
            a_ub = lil_array((len(metrics), len(var)))
            for i, m in enumerate(metrics):
                for j, (n, p) in enumerate(var):
                    v = costs[n][p][m]
                    a_ub[i, j] = v / limits[m] if limits[m] > 0 else v
            cons.append(LinearConstraint(a_ub.tocsr(), -math.inf,
                                         [rhs[m] if limits[m] > 0 else 0.0 for m in metrics]))
        with _quiet_stdout():
            res = milp(c, constraints=cons, integrality=[1] * len(var), bounds=Bounds(0, 1),
                       options={"mip_rel_gap": 0.0, "time_limit": time_limit})
        if res.status == 2:
            raise ValueError(f"budgets {_limits_text(limits)} are infeasible together: each alone "
                             "can be met, but no plan meets all of them")
        if res.x is None or res.status != 0:
            raise ValueError(f"the allocation solver stopped without a proven optimum "
                             f"({res.message}); raise time_limit={time_limit} or use fewer "
                             "candidate bit widths")
        choice = {}
        for n in names:
            best = max((j for j, (m, _) in enumerate(var) if m == n), key=lambda j: res.x[j])
            choice[n] = var[best][1]
        totals = {m: sum(costs[n][choice[n]][m] for n in names) for m in metrics}
        over = {m: totals[m] / limits[m] - 1 for m in metrics if totals[m] > limits[m]}
        if not over:
            objective = sum(omega[n][choice[n]] for n in names)
            return Allocation(choice, objective, totals, time.perf_counter() - start, solves)
        for m, excess in over.items():  # a solver tolerance let a budget slip: tighten, again
            rhs[m] -= 2 * excess + 1e-12
    raise ValueError(f"the allocation solver could not meet budgets {_limits_text(limits)} "
                     "within its tolerances")


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 while HiGHS runs: some HiGHS builds shipped with scipy print a
    debugging line ("HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();")
    from C++ even with disp=False."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (a notebook): leave it
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def _fmt(metric: str, value: float) -> str:
    return f"{shown(metric, value):.6g} {UNITS[metric][0]}"


def _limits_text(limits: dict[str, float]) -> str:
    return ", ".join(f"{m} <= {_fmt(m, v)}" for m, v in limits.items())


class UnresolvedSensitivityWarning(UserWarning):
    """Issued by hwq.search.budget when trace estimates of free layers are not resolved from 0."""


# -- the whole search ------------------------------------------------------------------------------

@dataclasses.dataclass
class BudgetResult:
    """The allocated plan and how it was found.

    bits: {layer: (w_bits, a_bits)}; pinned: the pinned layers; budgets: the budgets as written and
    ``limits`` their absolute values (pJ, s, bits, BOPs); totals: the plan's costs from the cost
    table, every metric known (energy and latency need an arch); uniform8: the uniform 8-bit
    plan's; mapped: the plan's own energy / latency from hwq.map
    of its profile (equal to totals on static designs); objective: summed sensitivity.
    """

    bits: Bits
    pinned: dict[str, Pair]
    budgets: list[Budget]
    limits: dict[str, float]
    totals: dict[str, float]
    uniform8: dict[str, float]
    mapped: dict[str, float]
    objective: float
    sensitivity: Sensitivity
    costs: dict[str, dict[Pair, dict[str, float]]]
    candidates: dict[str, list[Pair]]
    arch: str | None
    exact_costs: bool
    solver_seconds: float
    profile: Profile | None = None
    report: hw.Report | None = None
    weights: Any = "fixed"
    acts: Any = "fixed"

    @property
    def plan(self):
        """The hwq.Plan of ``bits`` with the quantizer templates ``weights`` / ``acts``."""
        return to_plan(self.bits, self.weights, self.acts)

    def omega(self, name: str, pair: Pair) -> float:
        return self.sensitivity[name].omega(*pair)

    def table(self) -> str:
        metrics = [m for m in METRICS if m in self.totals]
        rows = [text_table(
            ["layer", "w_bits", "a_bits", "omega"] + [f"{m}_{UNITS[m][0]}" for m in metrics],
            [[n, str(w), str(a), f"{self.omega(n, (w, a)):.3e}"]
             + [f"{shown(m, self.costs[n][(w, a)][m]):.6g}" for m in metrics]
             for n, (w, a) in self.bits.items()],
            total=["total", "", "", f"{self.objective:.3e}"]
            + [f"{shown(m, self.totals[m]):.6g}" for m in metrics],
            notes=["pinned" if n in self.pinned else "" for n in self.bits])]
        for b in self.budgets:
            m = b.metric
            rows.append(f"budget {b.text}: {m} <= {_fmt(m, self.limits[m])} "
                        f"({self.limits[m] / self.uniform8[m]:.3f}x uniform 8-bit); plan "
                        f"{_fmt(m, self.totals[m])} ({self.totals[m] / self.uniform8[m]:.3f}x)"
                        + (f"; mapped back {_fmt(m, self.mapped[m])}" if m in self.mapped else ""))
        if not self.exact_costs:
            rows.append(f"note: {self.arch} uses run-time statistics: costs from uniform-plan "
                        "profiles, the mapped-back value is the plan's own")
        rows.append(f"sensitivity: {self.sensitivity.cost()}; solver {self.solver_seconds:.2f} s")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        def key(p: Pair) -> str:
            return f"w{p[0]}a{p[1]}"
        return {
            "arch": self.arch, "exact_costs": self.exact_costs,
            "quantizers": {"weights": str(self.weights), "acts": str(self.acts)},
            "budgets": [{"text": b.text, "metric": b.metric, "limit": self.limits[b.metric]}
                        for b in self.budgets],
            "units": {"energy": "pJ", "latency": "s", "size": "bits", "bops": "BOPs"},
            "bits": {n: list(p) for n, p in self.bits.items()},
            "pinned": {n: list(p) for n, p in self.pinned.items()},
            "objective": self.objective, "totals": self.totals, "uniform8": self.uniform8,
            "mapped": self.mapped, "solver_seconds": self.solver_seconds,
            "plan": self.plan.to_dict(), "sensitivity": self.sensitivity.to_dict(),
            "layers": {n: {key(p): dict(self.costs[n][p], omega=self.omega(n, p))
                           for p in self.candidates[n]} for n in self.bits},
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON text; written to ``path`` (atomically) when given."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def plot(self, path: str | os.PathLike, metric: str | None = None) -> None:
        """Per layer: sensitivity (omega) against cost (``metric``, default the first budget's) of
        every candidate pair, the chosen one starred (PNG, matplotlib)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ValueError("plotting needs matplotlib, which is not installed: "
                             "pip install matplotlib") from None
        metric = metric or self.budgets[0].metric
        names = list(self.bits)
        cols = min(6, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
        for ax, n in zip(axes.flat, names):
            cands = self.candidates[n]
            xs = [shown(metric, self.costs[n][p][metric]) for p in cands]
            ys = [self.omega(n, p) for p in cands]
            ax.scatter(xs, ys, s=10, color="0.5")
            w, a = self.bits[n]
            ax.plot(shown(metric, self.costs[n][(w, a)][metric]), self.omega(n, (w, a)), "*",
                    ms=11, color="C3")
            ax.set_title(f"{n}: w{w}a{a}" + (" (pinned)" if n in self.pinned else ""),
                         fontsize=7)
            ax.tick_params(labelsize=6)
            if len(set(ys)) > 1 and min(ys) > 0:
                ax.set_yscale("log")
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        fig.supxlabel(f"{metric} per image ({UNITS[metric][0]}) of the layer at each (w, a)"
                      + (f" on {self.arch}" if metric in ARCH_METRICS else ""), fontsize=8)
        fig.supylabel(f"sensitivity omega ({self.sensitivity.method})", fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
        plt.close(fig)

    def write(self, folder: str | os.PathLike, stem: str = "budget") -> dict[str, str]:
        """Write ``<stem>.plan.json``, ``.profile.json``, ``.report.json`` (with an arch),
        ``.json`` (this result) and ``.png`` (the plot, when matplotlib is installed) into
        ``folder``; returns {what: path}."""
        os.makedirs(folder, exist_ok=True)
        paths = {"plan": os.path.join(folder, f"{stem}.plan.json"),
                 "result": os.path.join(folder, f"{stem}.json")}
        self.plan.to_json(paths["plan"])
        self.to_json(paths["result"])
        if self.profile is not None:
            paths["profile"] = os.path.join(folder, f"{stem}.profile.json")
            self.profile.to_json(paths["profile"])
        if self.report is not None:
            paths["report"] = os.path.join(folder, f"{stem}.report.json")
            self.report.to_json(paths["report"])
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            paths["plot"] = "(not written: matplotlib is not installed; pip install matplotlib)"
        else:
            paths["plot"] = os.path.join(folder, f"{stem}.png")
            self.plot(paths["plot"])
        return paths


def _pins(pinned: Any, names: list[str], pin_bits: Pair) -> dict[str, Pair]:
    if pinned is None:
        return {}
    if pinned == "ends":
        return {n: pin_bits for n in dict.fromkeys([names[0], names[-1]])}
    if isinstance(pinned, str):
        pinned = [p.strip() for p in pinned.split(",") if p.strip()]
    if isinstance(pinned, dict):
        out = {}
        for n, p in pinned.items():
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise ValueError(f"pinned[{n!r}] = {p!r} is not accepted: expected (w_bits, "
                                 "a_bits)")
            check_bits(f"pinned[{n!r}] w_bits", p[0])
            check_bits(f"pinned[{n!r}] a_bits", p[1])
            out[n] = (p[0], p[1])
    elif isinstance(pinned, (list, tuple)):
        out = {n: pin_bits for n in pinned}
    else:
        raise ValueError(f"pinned={pinned!r} is not accepted: expected 'ends', None, a list of "
                         "layer names or a dict {name: (w_bits, a_bits)}")
    unknown = [n for n in out if n not in names]
    if unknown:
        raise ValueError(f"pinned layer(s) {unknown} are not accepted: expected names among "
                         f"{names}")
    return out


def budget(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
           budgets: Any, arch: str | None = "loom", arch_config: Any = None,
           baseline: str = "dadiannao", w_bits: Sequence[int] = (2, 3, 4, 6, 8),
           a_bits: Sequence[int] | None = None, pinned: Any = "ends", pin_bits: Pair = (8, 8),
           method: str = "hutchinson", iters: int = 16, calib: list[torch.Tensor] | None = None,
           loss: Any = None, seed: int = 0, sens: Sensitivity | None = None,
           out: str | os.PathLike | None = None, stem: str = "budget", weights: Any = "fixed",
           acts: Any = "fixed") -> BudgetResult:
    """Allocate (w_bits, a_bits) per layer under ``budgets`` (module docstring).

    model: a trained float or QAT model (not changed).
    batches: labelled (inputs, targets) batches for the sensitivities (a few hundred samples).
    budgets: "energy=0.5x", "energy=w4a4", "latency=0.3ms,size=0.1MB", a list or a dict.
    arch / arch_config / baseline: the accelerator for energy and latency (as for hwq.map); the
        plan's report is made on it. None: size and BOPs budgets only, no report.
    w_bits / a_bits: candidate bit widths (a_bits defaults to w_bits); every pair is a candidate.
    pinned: "ends" (first and last layer in execution order), None, a list of names (at
        ``pin_bits``) or {name: (w_bits, a_bits)}.
    method / iters / loss / seed: of hwq.search.sensitivity; ``sens`` reuses one already computed.
    calib: input batches for the activation ranges (default: the first batch's inputs).
    out: a folder to write the plan, profile, report, result and plot into (``stem``.*).
    weights / acts: the quantizers of the plan, as templates given bits per layer ("fixed" by
        default, "lsq", {"name": "lsq", "per_channel": True}, "pact"...); the sensitivities'
        perturbations use the same.
    """
    blist = parse_budgets(budgets)
    if arch is not None and arch not in hw.ARCHS:
        raise ValueError(f"arch={arch!r} is not accepted: expected one of {list(hw.ARCHS)}")
    need_arch = [b.text for b in blist if b.metric in ARCH_METRICS]
    if need_arch and arch is None:
        raise ValueError(f"budgets {need_arch} need an accelerator: arch=None is not accepted "
                         f"for them; expected one of {list(hw.ARCHS)}")
    w_bits = tuple(sorted(set(w_bits)))
    a_bits = w_bits if a_bits is None else tuple(sorted(set(a_bits)))
    if not w_bits or not a_bits:
        raise ValueError("w_bits and a_bits need at least one candidate bit width each")
    for b in w_bits:
        check_bits("w_bits", b)
        spec_with_bits(weights, b, "weight")  # a template that cannot take b fails here
    for b in a_bits:
        check_bits("a_bits", b)
        spec_with_bits(acts, b, "act")
    check_bits("pin_bits w_bits", pin_bits[0])
    check_bits("pin_bits a_bits", pin_bits[1])
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not accepted: expected one of {list(METHODS)}")
    batches = list(batches)
    if calib is None:
        if not batches or not isinstance(batches[0], (tuple, list)):
            raise ValueError("batches is empty or not (inputs, targets) pairs: expected labelled "
                             "batches")
        calib = [batches[0][0]]
    cand_pairs = [(w, a) for w in w_bits for a in a_bits]

    # the costs first: a bad budget fails before the sensitivities are paid for
    static = make_profile(model, calib[0][:1], name="budget")
    names = [l.name for l in static.layers]
    pins = _pins(pinned, names, tuple(pin_bits))
    refs = {b.uniform for b in blist if b.uniform is not None}
    pairs = set(cand_pairs) | set(pins.values()) | refs | {(8, 8)}
    names, costs, exact = cost_table(model, calib, pairs, arch, arch_config, baseline, weights,
                                     acts)

    def plan_total(m: str, pair: Pair) -> float:
        return sum(costs[n][pins.get(n, pair)][m] for n in names)
    available = [m for m in METRICS if m in costs[names[0]][(8, 8)]]
    uniform8 = {m: sum(costs[n][(8, 8)][m] for n in names) for m in available}
    limits = {}
    for b in blist:
        if b.value is not None:
            limits[b.metric] = b.value
        elif b.scale is not None:
            limits[b.metric] = b.scale * uniform8[b.metric]
        else:
            limits[b.metric] = plan_total(b.metric, b.uniform)

    candidates = {n: [pins[n]] if n in pins else cand_pairs for n in names}
    for b in blist:  # infeasible budgets are named as written, before any solve
        m = b.metric
        least = sum(min(costs[n][p][m] for p in candidates[n]) for n in names)
        if least > limits[m]:
            raise ValueError(
                f"budget {b.text!r} is infeasible: {m} <= {_fmt(m, limits[m])} "
                f"({limits[m] / uniform8[m]:.3f}x the uniform 8-bit plan), but the least {m} any "
                f"plan reaches with bits w{list(w_bits)} a{list(a_bits)} and pinned layers "
                f"{list(pins)} is {_fmt(m, least)} ({least / uniform8[m]:.3f}x)")
    if sens is None:
        sens = sensitivity(model, batches, bits=sorted(set(w_bits) | set(a_bits) | {
            x for p in pins.values() for x in p}), method=method, iters=iters, loss=loss,
            seed=seed, weights=weights, acts=acts)
    wanted = {"weights": str(weights), "acts": str(acts)}
    if sens.quantizers != wanted:
        raise ValueError(f"sens was computed with quantizers {sens.quantizers}, this plan uses "
                         f"{wanted}: expected the same (the perturbations depend on them)")
    missing = [n for n in names if n not in sens.names]
    if missing:
        raise ValueError(f"sens has no entry for layers {missing}: expected the sensitivities "
                         "of this model")
    for n in names:
        for w, a in candidates[n]:
            if w not in sens[n].w_perturb or a not in sens[n].a_perturb:
                raise ValueError(f"sens was computed for bits {list(sens.bits)}: it lacks "
                                 f"w{w}a{a} of layer {n!r}")
    noisy = [u for u in sens.unresolved() if u.rsplit(".", 1)[0] not in pins]
    if noisy:
        what, fix = (("measured loss rises at the fewest bits", "more samples resolve them")
                     if sens.method == "loss" else
                     (f"{sens.method} trace estimates",
                      "more iters or samples, or method='fisher', resolve them"))
        warnings.warn(f"hwq.search.budget: the {what} of {noisy} lie within "
                      "2 standard errors of 0, so their sensitivities are mostly noise (a negative "
                      f"one counts as 0 and makes low bits look free there); {fix}",
                      UnresolvedSensitivityWarning, stacklevel=2)
    omega = {n: {p: sens[n].omega(*p) for p in candidates[n]} for n in names}
    alloc = allocate(omega, {n: {p: costs[n][p] for p in candidates[n]} for n in names}, limits)

    bits = {n: alloc.choice[n] for n in names}
    totals = {m: sum(costs[n][bits[n]][m] for n in names) for m in available}
    q = apply(model, bits, calib, weights, acts)
    prof = make_profile(q, batches=calib[:1], name=stem)
    report = None
    mapped: dict[str, float] = {}
    if arch is not None:
        report = hw.map(prof, arch, baseline=baseline, config=arch_config)
        mapped = {"energy": report.total.energy_pj.total, "latency": report.total.seconds}
    res = BudgetResult(bits, pins, blist, limits, totals, uniform8, mapped, alloc.objective,
                       sens, costs, candidates, arch, exact, alloc.seconds, prof, report,
                       weights, acts)
    if out is not None:
        res.write(out, stem)
    return res

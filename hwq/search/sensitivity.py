"""Per-layer quantization sensitivity: a curvature estimate times the quantization perturbation.

For layer l and bit width b (HAWQ-V2, Dong et al., NeurIPS 2020; HAWQ-V3, Yao et al., ICML 2021):

    Omega_w(l, b) = (Tr(H_W) / n_W) * ||Q_b(W) - W||^2        weights
    Omega_a(l, b) = (Tr(H_a) / n_a) * E_x ||Q_b(a) - a||^2    input activations (HAWQ-V2, sec. 3.3)

With the loss near a minimum, the second-order term of its Taylor expansion makes
Omega ~ 2 x (the rise of the mean loss) when only that tensor is quantized; the sum over layers is
the objective the allocation (hwq.search.budget) minimises. ``Q_b`` is the quantizer the plan will
be applied with (hwq.search.apply), fresh and calibrated on the tensor itself: by default
``fixed:b`` (weights: range max|W|; activations: the batch max|x|); with ``lsq`` its initial
step.

Three methods: two estimate the curvature, the third measures Omega itself.

* ``"hutchinson"``: Tr(H) = E_v[v^T H v] with Rademacher v (Hutchinson 1990; the estimator of
  HAWQ-V2 / PyHessian, Yao et al. 2020). One Hessian-vector product (a double backward through the
  graph of the first backward) gives one estimate for every layer's weight and activation block at
  once. ``iters`` estimates per batch; the standard error over all estimates is reported.
* ``"fisher"``: the empirical Fisher trace, Tr(F) = mean_i ||grad l_i||^2 over samples i (as FIT,
  Zandonati et al. 2022), one forward and one backward per batch: per-sample weight gradients of
  Conv2d / Linear come from their inputs and output gradients (the outer-product identity used by
  Goodfellow 2015 and Opacus), per-sample activation gradients directly, the model being in eval
  mode (no sample sees another).

* ``"loss"``: no curvature model. Omega is measured as what it estimates, twice the rise of the
  mean loss over the batches when only that tensor is quantized with Q_b (one layer's weights, or
  one layer's input through a forward pre-hook on that layer alone), everything else float: one
  forward pass of the batches per (layer, role, bit width), and no backward. On the float CIFAR-10
  ResNet-20 at 4 bits the two trace methods put the summed activation Omega 9-12x under this
  measured rise (15-19x at 3 bits), while Hutchinson's weight Omega matched it; the isotropic model
  Tr(H)/n x ||Q(a) - a||^2 leaves out the first-order term that activations, whose per-sample
  gradients are not zero and whose clipping error correlates with them, do not cancel
  (docs/training.md, "Budgeted mixed precision"). The per-batch spread of each rise gives its
  standard error.

Normalisation: H is the Hessian of the batch-mean loss. For weights n_W is the number of weights.
For activations H is block diagonal over samples; ``a_trace`` is the mean over samples of
Tr(H_i) / n_a with n_a the elements of one sample's input and H_i the Hessian of that sample's loss,
and ``a_perturb`` the mean over samples of ||Q_b(a_i) - a_i||^2, so that Omega_a has the scale of
Omega_w. A negative trace estimate (non-convex point, or noise) is kept in ``w_trace`` / ``a_trace``
and counted as 0 in Omega (a perturbation cannot be assumed to lower the loss); ``table()`` marks
it.

The model is evaluated in eval mode on a float view: a QAT model's quantizers are replaced by the
float passthrough on a copy, so the curvature is that of its latent float weights, the W of
||Q_b(W) - W||.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import quant
from .._table import text_table
from ..nn import QuantLayer
from .common import check_bits, layer_names, spec_with_bits

METHODS = ("hutchinson", "fisher", "loss")


@dataclasses.dataclass
class LayerSensitivity:
    """One conv / FC layer. ``weights``: number of weights; ``act_size``: input elements per sample.
    ``w_trace`` / ``a_trace``: curvature per element as in the module docstring (loss units per
    value^2), with standard errors. ``w_perturb[b]`` = ||Q_b(W) - W||^2; ``a_perturb[b]`` = mean
    over samples of ||Q_b(a) - a||^2. ``w_rise[b]`` / ``a_rise[b]`` (method "loss" only, else
    None): twice the measured rise of the mean loss, with ``w_rise_se`` / ``a_rise_se``; the
    traces are then NaN (no curvature model)."""

    name: str
    weights: int
    act_size: int
    w_trace: float
    a_trace: float
    w_trace_se: float
    a_trace_se: float
    w_perturb: dict[int, float]
    a_perturb: dict[int, float]
    w_rise: dict[int, float] | None = None
    a_rise: dict[int, float] | None = None
    w_rise_se: dict[int, float] | None = None
    a_rise_se: dict[int, float] | None = None

    def omega_w(self, bits: int) -> float:
        if self.w_rise is not None:  # measured; a fall of the loss counts as 0, as a trace < 0
            return max(self.w_rise[bits], 0.0)
        return max(self.w_trace, 0.0) * self.w_perturb[bits]

    def omega_a(self, bits: int) -> float:
        if self.a_rise is not None:
            return max(self.a_rise[bits], 0.0)
        return max(self.a_trace, 0.0) * self.a_perturb[bits]

    def omega(self, w_bits: int, a_bits: int) -> float:
        """Sensitivity of the layer at (w_bits, a_bits): Omega_w + Omega_a."""
        return self.omega_w(w_bits) + self.omega_a(a_bits)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in _PER_BITS:
            if d[k] is not None:
                d[k] = {str(b): v for b, v in d[k].items()}
        return d


_PER_BITS = ("w_perturb", "a_perturb", "w_rise", "a_rise", "w_rise_se", "a_rise_se")


@dataclasses.dataclass
class Sensitivity:
    """Per-layer sensitivities and what they cost: ``samples`` images in ``batches`` batches,
    ``forward`` / ``backward`` passes, ``hvp`` Hessian-vector products (each a double backward,
    about two backward passes), ``seconds`` of wall time."""

    method: str
    bits: tuple[int, ...]
    layers: list[LayerSensitivity]
    samples: int
    batches: int
    iters: int
    forward: int
    backward: int
    hvp: int
    seconds: float
    quantizers: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"weights": "fixed", "acts": "fixed"})
    """The templates of Q_b (weights, acts)."""

    def __getitem__(self, name: str) -> LayerSensitivity:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")

    @property
    def names(self) -> list[str]:
        return [l.name for l in self.layers]

    def unresolved(self, z: float = 2.0) -> list[str]:
        """"layer.weights" / "layer.acts" whose trace estimate (method "loss": loss rise at the
        fewest bits) lies within ``z`` standard errors of 0: its sensitivity is mostly estimator
        noise (more samples or iters, or the Fisher, resolve it). A single estimate (no standard
        error) counts as resolved."""
        out = []
        b = min(self.bits)  # method "loss": the rise at the fewest bits, the largest one
        for l in self.layers:
            for kind, t, se in (("weights", l.w_trace, l.w_trace_se),
                                ("acts", l.a_trace, l.a_trace_se)):
                if l.w_rise is not None:
                    t, se = (l.w_rise[b], l.w_rise_se[b]) if kind == "weights" else \
                        (l.a_rise[b], l.a_rise_se[b])
                if math.isfinite(se) and abs(t) < z * se:
                    out.append(f"{l.name}.{kind}")
        return out

    def cost(self) -> str:
        """What the estimate cost, in passes and seconds."""
        hv = f", {self.hvp} Hessian-vector products ({self.iters} per batch)" if self.hvp else ""
        return (f"{self.method} on {self.samples} samples in {self.batches} batch(es): "
                f"{self.forward} forward, {self.backward} backward{hv}; {self.seconds:.2f} s")

    def table(self) -> str:
        b = self.bits
        rows = [text_table(
            ["layer", "w_trace", "+-", "a_trace", "+-"] + [f"Ow{x}" for x in b]
            + [f"Oa{x}" for x in b],
            [[l.name, f"{l.w_trace:.3e}", f"{l.w_trace_se:.1e}", f"{l.a_trace:.3e}",
              f"{l.a_trace_se:.1e}"] + [f"{l.omega_w(x):.2e}" for x in b]
             + [f"{l.omega_a(x):.2e}" for x in b] for l in self.layers],
            notes=["(negative trace counted as 0)" if min(l.w_trace, l.a_trace) < 0 else ""
                   for l in self.layers])]
        noisy = self.unresolved()
        if noisy:
            fix = "more samples" if self.method == "loss" else "raise iters or use fisher"
            rows.append(f"within 2 standard errors of 0 (noise; {fix}): {', '.join(noisy)}")
        rows.append(self.cost())
        return "\n".join(rows)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sensitivity":
        """The inverse of to_dict (e.g. the "sensitivity" entry of a budget result JSON), to
        allocate again under other budgets without measuring again."""
        try:
            layers = [LayerSensitivity(**{**l, **{
                k: {int(b): float(v) for b, v in l[k].items()}
                for k in _PER_BITS if l.get(k) is not None}}) for l in d["layers"]]
            return cls(d["method"], tuple(d["bits"]), layers, d["samples"], d["batches"],
                       d["iters"], d["forward"], d["backward"], d["hvp"], d["seconds"],
                       d.get("quantizers", {"weights": "fixed", "acts": "fixed"}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"a sensitivity record is not accepted: {type(e).__name__}: {e}; "
                             "expected what Sensitivity.to_dict writes") from None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "bits": list(self.bits), "samples": self.samples,
                "batches": self.batches, "iters": self.iters, "forward": self.forward,
                "backward": self.backward, "hvp": self.hvp, "seconds": self.seconds,
                "quantizers": self.quantizers,
                "layers": [l.to_dict() for l in self.layers]}


def float_view(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose hwq quantizers are all the float passthrough."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, QuantLayer):
            mod.set_quantizers(None, None)
    return m.eval()


def _labelled(batches: Iterable[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i, b in enumerate(batches):
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(
                isinstance(t, torch.Tensor) for t in b)):
            raise ValueError(f"batches[{i}] = {type(b).__name__} is not accepted: expected an "
                             "(inputs, targets) pair of tensors")
        out.append((b[0], b[1]))
    if not out:
        raise ValueError("batches is empty: expected at least one (inputs, targets) pair")
    return out


@torch.no_grad()
def _quantized(t: torch.Tensor, bits: int, role: str, template: Any = "fixed") -> torch.Tensor:
    """Q_b(t) with a fresh quantizer of ``template`` at ``bits`` bits, in training mode as
    calibration runs it (fixed:b activations: range = max|t| of ``t``; a learned step, as lsq's,
    at its initial value from ``t``)."""
    cfg = spec_with_bits(template, bits, role)
    channels = t.shape[0] if role == "weight" else None
    q = quant.get(cfg, role=role, channels=channels).to(device=t.device, dtype=t.dtype)
    q.train()
    return q(t)


def _perturb(t: torch.Tensor, bits: int, role: str, template: Any = "fixed") -> float:
    """||Q_b(t) - t||^2 (``_quantized``)."""
    return float(((_quantized(t, bits, role, template) - t) ** 2).sum())


@torch.no_grad()
def _loss_rises(net: nn.Module, watched: dict[str, nn.Module], data, base: list[float],
                bits: tuple[int, ...], w_template: Any, a_template: Any, loss_fn) -> dict:
    """Method "loss": {(name, role, b): (2 x mean rise of the loss, its standard error)}, each from
    one forward pass of ``data`` with only that tensor quantized. ``base``: the float model's mean
    loss per batch."""
    sizes = torch.tensor([float(x.shape[0]) for x, _ in data], dtype=torch.float64)
    dev = next(iter(watched.values())).weight.device

    def rise(rises: list[float]) -> tuple[float, float]:
        d = 2 * (torch.tensor(rises, dtype=torch.float64) - torch.tensor(base, dtype=torch.float64))
        se = float(d.std() / math.sqrt(len(d))) if len(d) > 1 else math.nan
        return float((d * sizes).sum() / sizes.sum()), se

    def losses() -> list[float]:
        return [float(loss_fn(net(x.to(dev)), y.to(dev))) for x, y in data]

    out = {}
    for name, m in watched.items():
        w = m.weight.data
        kept = w.clone()
        for b in bits:
            w.copy_(_quantized(kept, b, "weight", w_template))
            out[name, "weight", b] = rise(losses())
        w.copy_(kept)
        for b in bits:
            handle = m.register_forward_pre_hook(
                lambda mod, inp, b=b: (_quantized(inp[0], b, "act", a_template),) + tuple(inp[1:]))
            try:
                out[name, "act", b] = rise(losses())
            finally:
                handle.remove()
    return out


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if m.padding_mode != "zeros":
        raise ValueError(f"layer with padding_mode={m.padding_mode!r} is not accepted by the "
                         "fisher method: expected 'zeros' (use method='hutchinson')")
    if m.padding == "valid":
        return (0, 0)
    if m.padding == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(t % 2 for t in total):
            raise ValueError("a Conv2d with padding='same' and an even kernel pads unevenly, which "
                             "the fisher method does not model: use method='hutchinson'")
        return tuple(t // 2 for t in total)
    return tuple(m.padding)


def _per_sample_grad_sq(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """||dl_i/dW||^2 per sample i for a Conv2d / Linear with input ``x`` and output gradient ``g``
    (of the summed loss): the weight gradient of sample i is g_i x_i^T summed over positions."""
    b = x.shape[0]
    if isinstance(m, nn.Linear):
        if x.dim() == 2:
            return (g ** 2).sum(1) * (x ** 2).sum(1)
        gw = torch.einsum("bto,bti->boi", g.reshape(b, -1, g.shape[-1]),
                          x.reshape(b, -1, x.shape[-1]))
        return (gw ** 2).sum((1, 2))
    u = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=_conv_padding(m), stride=m.stride)
    groups = m.groups
    u = u.reshape(b, groups, u.shape[1] // groups, u.shape[2])
    gg = g.reshape(b, groups, g.shape[1] // groups, -1)
    gw = torch.einsum("bgkp,bgcp->bgkc", gg, u)
    return (gw ** 2).sum((1, 2, 3))


class _Watch:
    """Hooks that give each watched layer an input of its own (a view: when one tensor feeds two
    layers, as a residual block's input feeds its first conv and its shortcut, each layer's act
    quantizer perturbs only that layer's copy, so the derivative is taken per layer) and keep it,
    and, for the Fisher, the gradient of the layer's output."""

    def __init__(self, modules: dict[str, nn.Module], output_grads: bool):
        self.inputs: dict[str, torch.Tensor] = {}
        self.out_grads: dict[str, torch.Tensor] = {}
        self.handles = []
        for name, m in modules.items():
            self.handles.append(m.register_forward_pre_hook(self._pre(name)))
            if output_grads:
                self.handles.append(m.register_forward_hook(self._post(name)))

    def _pre(self, name: str):
        def hook(mod, inp):
            if name in self.inputs:
                raise ValueError(f"layer {name!r} runs more than once per forward pass (a shared "
                                 "module): its sensitivity per use is not defined; give each use "
                                 "its own module")
            a = inp[0].view_as(inp[0])
            self.inputs[name] = a
            return (a,) + tuple(inp[1:])
        return hook

    def _post(self, name: str):
        def hook(mod, inp, out):
            out.register_hook(lambda g: self.out_grads.__setitem__(name, g))
        return hook

    def clear(self) -> None:
        self.inputs, self.out_grads = {}, {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def sensitivity(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                bits: Sequence[int] = (2, 3, 4, 6, 8), method: str = "hutchinson",
                iters: int = 16, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                | None = None, seed: int = 0, weights: Any = "fixed", acts: Any = "fixed"
                ) -> Sensitivity:
    """Sensitivities of every Conv2d / Linear layer of ``model`` for the ``bits`` candidates.

    batches: (inputs, targets) pairs, a few of them (HAWQ uses a few hundred to a few thousand
        samples); everything runs on the model's device.
    method: "hutchinson" (``iters`` Hessian-vector products per batch), "fisher" (one forward and
        one backward per batch) or "loss" (the loss rise measured: one forward per batch, layer,
        role and bit width, no backward).
    loss: (outputs, targets) -> mean loss (default cross-entropy).
    seed: of the Rademacher vectors.
    weights / acts: the quantizers Q_b of the perturbation, as templates ("fixed", "lsq", a dict
        without bits...; hwq.search.common.spec_with_bits): those the plan will be applied with.
    """
    w_template, a_template = weights, acts  # the names weights / acts are used for tensors below
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not accepted: expected one of {list(METHODS)}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters={iters!r} is not accepted: expected a positive integer")
    bits = tuple(sorted(set(bits)))
    if not bits:
        raise ValueError("bits is empty: expected candidate bit widths such as (2, 4, 8)")
    for b in bits:
        check_bits("bits", b)
        spec_with_bits(w_template, b, "weight"), spec_with_bits(a_template, b, "act")  # early
    data = _labelled(batches)
    loss_fn = loss or F.cross_entropy
    net = float_view(model)
    names = layer_names(net)
    if not names:
        raise ValueError("model has no Conv2d / Linear layer to take sensitivities of")
    modules = dict(net.named_modules())
    watched = {n: modules[n] for n in names}
    weight = {n: watched[n].weight for n in names}
    params = [p for p in net.parameters()]
    gen = torch.Generator(device="cpu").manual_seed(seed)

    w_est: dict[str, list[float]] = {n: [] for n in names}
    a_est: dict[str, list[float]] = {n: [] for n in names}
    a_perturb = {n: {b: 0.0 for b in bits} for n in names}
    act_size: dict[str, int] = {}
    n_samples = forward = backward = hvp = 0
    start = time.perf_counter()
    watch = _Watch(watched, output_grads=method == "fisher")
    saved_grad = [p.requires_grad for p in params]
    base: list[float] = []  # method "loss": the float model's mean loss per batch
    rises: dict = {}
    try:
        for p in params:
            p.requires_grad_(False)
        for n in names:
            weight[n].requires_grad_(True)
        for x, y in data:
            dev = weight[names[0]].device
            x = x.to(dev).detach().requires_grad_(method != "loss")  # the first layer's input
            y = y.to(dev)
            watch.clear()
            with torch.set_grad_enabled(method != "loss"):
                out = net(x)
            forward += 1
            missing = [n for n in names if n not in watch.inputs]
            if missing:
                raise ValueError(f"layers {missing} did not run in the forward pass: their "
                                 "sensitivity cannot be measured")
            acts = [watch.inputs[n] for n in names]
            bsz = x.shape[0]
            n_samples += bsz
            for n, a in zip(names, acts):
                act_size[n] = a[0].numel()
                for b in bits:  # one quantizer per batch: its range is this batch's max|a|
                    a_perturb[n][b] += _perturb(a.detach(), b, "act", a_template)
            targets = [weight[n] for n in names] + acts
            if method == "hutchinson":
                g = torch.autograd.grad(loss_fn(out, y), targets, create_graph=True)
                backward += 1
                for _ in range(iters):
                    vs = [torch.randint(0, 2, t.shape, generator=gen).to(t) * 2 - 1
                          for t in targets]
                    hv = torch.autograd.grad(g, targets, grad_outputs=vs, retain_graph=True)
                    hvp += 1
                    for i, n in enumerate(names):
                        w_est[n].append(float((vs[i] * hv[i]).sum()) / weight[n].numel())
                        j = len(names) + i
                        # Tr(H_batch) / n_a = mean over samples of Tr(H_i) / n_a (docstring)
                        a_est[n].append(float((vs[j] * hv[j]).sum()) / act_size[n])
                del g
            elif method == "loss":
                base.append(float(loss_fn(out, y)))
            else:
                total = loss_fn(out, y) * bsz  # the summed loss: per-sample gradients of l_i
                ga = torch.autograd.grad(total, acts)
                backward += 1
                for i, n in enumerate(names):
                    sq = _per_sample_grad_sq(watched[n], acts[i].detach(),
                                             watch.out_grads[n].detach())
                    w_est[n].extend((sq / weight[n].numel()).tolist())
                    a_est[n].extend(((ga[i].detach() ** 2).flatten(1).sum(1)
                                     / act_size[n]).tolist())
            watch.clear()
            del out, acts, targets
        watch.remove()
        if method == "loss":
            rises = _loss_rises(net, watched, data, base, bits, w_template, a_template, loss_fn)
            forward += len(data) * 2 * len(names) * len(bits)
    finally:
        watch.remove()
        for p, r in zip(params, saved_grad):
            p.requires_grad_(r)

    def mean_se(v: list[float]) -> tuple[float, float]:
        t = torch.tensor(v, dtype=torch.float64)
        se = float(t.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan
        return float(t.mean()), se

    layers = []
    for n in names:
        wp = {b: _perturb(weight[n].detach(), b, "weight", w_template) for b in bits}
        ap = {b: a_perturb[n][b] / n_samples for b in bits}
        if method == "loss":
            per = {role: ({b: rises[n, role, b][0] for b in bits},
                          {b: rises[n, role, b][1] for b in bits}) for role in ("weight", "act")}
            layers.append(LayerSensitivity(
                n, weight[n].numel(), act_size[n], math.nan, math.nan, math.nan, math.nan, wp, ap,
                w_rise=per["weight"][0], a_rise=per["act"][0], w_rise_se=per["weight"][1],
                a_rise_se=per["act"][1]))
            continue
        wt, wse = mean_se(w_est[n])
        at, ase = mean_se(a_est[n])
        layers.append(LayerSensitivity(n, weight[n].numel(), act_size[n], wt, at, wse, ase,
                                       wp, ap))
    return Sensitivity(method, bits, layers, n_samples, len(data),
                       iters if method == "hutchinson" else 0, forward, backward, hvp,
                       time.perf_counter() - start,
                       {"weights": str(w_template), "acts": str(a_template)})

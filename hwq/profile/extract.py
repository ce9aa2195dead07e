"""hwq.profile(model, example_input, batches=None): a Profile of a model's conv and FC layers.

The model is run once on ``example_input`` (shapes, MACs), then on each batch of ``batches`` with
forward pre-hooks that convert each layer's real input and weight to integer codes and accumulate
run-time statistics (hwq.profile.stats). Everything runs in eval mode under no_grad; quantizer state
(activation ranges, learned steps, signedness decisions) is saved before and restored after, and
training flags are restored, so profiling never changes the model.

Codes: a QuantConv2d / QuantLinear uses its own quantizers (``quantize_int``: the profiler asks each
quantizer whether it has integer codes, ``config.integer_codes``, and refuses one that has neither
those nor is the float passthrough, naming it); a float quantizer or a plain nn.Conv2d / nn.Linear
gets 16-bit signed dynamic fixed point (one power-of-two step per tensor and batch, so that max|x|
fits in 15 magnitude bits: the DaDianNao baseline precision) and is marked float in the profile.

Only nn.Conv2d and nn.Linear (and their hwq twins) are profiled; other compute layers (Conv1d/3d,
transposed convs, attention, RNNs) are listed in ``profile.meta["skipped"]`` and a warning names them.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import torch
from torch import nn

from .._observe import observing
from ..convert import COMPUTE_TYPES
from ..nn import QuantLayer
from ..quant import Quantizer
from ..quant.base import pow2_scale_for
from .layer import BASELINE_BITS, LayerProfile
from .profile import Profile
from .stats import LayerStats


def baseline_codes(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """16-bit signed dynamic fixed point of a float tensor: (codes, fraction bits)."""
    m = x.detach().abs().amax().to(torch.float32)
    if not bool(torch.isfinite(m)):
        raise ValueError("hwq.profile: a float layer's tensor contains NaN or Inf; finite values "
                         "are required for its 16-bit fixed-point statistics")
    step = pow2_scale_for(m, BASELINE_BITS - 1)
    codes = torch.round(x.detach().to(torch.float32) / step).clamp_(-2 ** 15, 2 ** 15 - 1)
    return codes, -int(math.log2(float(step)))


def _frac(scale: torch.Tensor) -> int | None:
    """Fraction bits when ``scale`` is one power of two, else None."""
    s = scale.detach().flatten()
    if s.numel() == 0 or not bool((s == s[0]).all()):
        return None
    m, e = math.frexp(float(s[0]))
    return -(e - 1) if m == 0.5 else None


def _check_profilable(q: Quantizer, where: str) -> None:
    """A quantizer's bits count as integer bits only if it has integer codes (or is the float
    passthrough, profiled as the 16-bit baseline); refuse any other by name."""
    if not q.is_float and not q.config.integer_codes:
        raise ValueError(f"hwq.profile: {where} quantizer '{q.name}' ({type(q).__name__}) has no "
                         f"integer codes (its config {type(q.config).__name__} does not declare "
                         "integer_codes), so its bit widths and bit statistics cannot be profiled; "
                         "implement quantize_int and set integer_codes = True in the config")


def _codes(q: Quantizer | None, x: torch.Tensor) -> tuple[torch.Tensor, int | None, bool]:
    """(integer codes, fraction bits or None, is_float) of ``x`` under quantizer ``q``."""
    if q is None or q.is_float:
        codes, frac = baseline_codes(x)
        return codes, frac, True
    codes, scale = q.quantize_int(x)
    return codes, _frac(scale), False


def _is_profiled(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Linear))


def _static(name: str, m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> LayerProfile:
    kind = "conv" if isinstance(m, nn.Conv2d) else "fc"
    in_shape, out_shape = tuple(inp.shape[1:]), tuple(out.shape[1:])
    if kind == "conv":
        # Shapes and MACs come from the real run; padding='same' is recorded as its per-side size.
        if m.padding == "same":
            pad = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
        else:
            pad = (0, 0) if m.padding == "valid" else m.padding
        geo = dict(kernel=tuple(m.kernel_size), stride=tuple(m.stride), padding=tuple(pad),
                   dilation=tuple(m.dilation), groups=m.groups)
    else:
        geo = {}
    if isinstance(m, QuantLayer):
        wq, aq = m.weight_quant, m.act_quant
        _check_profilable(wq, f"layer {name!r} weight")
        _check_profilable(aq, f"layer {name!r} activation")
        w_float, a_float = wq.is_float, aq.is_float
        w_pow2 = not w_float and wq.config.power_of_two
        w_name, a_name = m.w_quant, m.a_quant
        w_bits = BASELINE_BITS if w_float else m.w_bits
        a_bits = BASELINE_BITS if a_float else m.a_bits
    else:
        w_float = a_float = True
        w_pow2 = False
        w_name = a_name = "float"
        w_bits = a_bits = BASELINE_BITS
    layer = LayerProfile(name=name, kind=kind, in_shape=in_shape, out_shape=out_shape, **geo,
                         macs=0, weights=m.weight.numel(), w_bits=w_bits, a_bits=a_bits,
                         w_quant=w_name, a_quant=a_name, w_float=w_float, a_float=a_float,
                         w_pow2=w_pow2)
    layer.macs = layer.expected_macs()
    return layer


def profile(model: nn.Module, example_input: Any = None, batches: Iterable[Any] | None = None,
            name: str | None = None) -> Profile:
    """Profile ``model``'s conv and FC layers in execution order.

    example_input: what the model is called with (a tensor, or a tuple of positional arguments);
        it sets the shapes and MACs (per sample: the first dim of the input is the batch). May be
        None when ``batches`` is given: the first batch then sets the shapes (one pass less).
    batches: optional iterable of inputs in the same form; each layer's run-time statistics are
        accumulated over all of them (hwq.profile.stats). Without it ``layer.stats`` is None.
    name: the profile's name (default: the model's class name).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model={type(model).__name__} is not accepted: expected an nn.Module")
    if example_input is None and batches is None:
        raise ValueError("give example_input (shapes only), batches (shapes and run-time "
                         "statistics), or both")
    if batches is not None and (isinstance(batches, torch.Tensor)
                                or not isinstance(batches, Iterable)):
        # a tensor iterates over its samples: each would be profiled as an unbatched input
        raise ValueError(f"batches is a {type(batches).__name__}: expected an iterable of input "
                         "batches, e.g. [x1, x2] or a generator of tensors")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name={name!r} is not accepted: expected a string or None")

    def call(inp):
        try:
            return model(*inp) if isinstance(inp, tuple) else model(inp)
        except (RuntimeError, IndexError) as e:  # shape mismatches: say which input it was
            shapes = [tuple(t.shape) for t in (inp if isinstance(inp, tuple) else (inp,))
                      if isinstance(t, torch.Tensor)]
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ValueError(f"the model cannot run an input of shape(s) {shapes}: "
                             f"{type(e).__name__}: {first}") from e

    named = [(n, m) for n, m in model.named_modules() if _is_profiled(m)]
    skipped = [n for n, m in model.named_modules()
               if isinstance(m, COMPUTE_TYPES) and not _is_profiled(m)
               and not any(n.startswith(p + ".") for p, _ in named)]
    layers: dict[str, LayerProfile] = {}
    order: list[str] = []
    stats: dict[str, LayerStats] = {}
    fracs: dict[str, set] = {}
    phase = {"stats": False}

    def hook(mod, args, out, name):
        if not args or not isinstance(args[0], torch.Tensor):
            return
        x = args[0]
        if name not in layers:
            if not isinstance(out, torch.Tensor):
                return
            layers[name] = _static(name, mod, x, out)
            order.append(name)
        if not phase["stats"]:
            return
        layer = layers[name]
        s = stats.setdefault(name, LayerStats())
        aq = mod.act_quant if isinstance(mod, QuantLayer) else None
        codes, frac, _ = _codes(aq, x)
        s.add_activations(codes, layer.kind, f"layer {name!r} input")
        fracs.setdefault(name, set()).add(frac)  # one fraction width for all batches, or None
        layer.a_frac = frac if len(fracs[name]) == 1 else None
        if s.w_values == 0:
            wq = mod.weight_quant if isinstance(mod, QuantLayer) else None
            wcodes, wfrac, _ = _codes(wq, mod.weight)
            s.set_weights(wcodes, f"layer {name!r} weight")
            layer.w_frac = wfrac

    handles = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n))
               for n, m in named]
    n_batches = 0
    try:
        with observing(model):
            if example_input is not None:
                call(example_input)
            if batches is not None:
                phase["stats"] = True
                for b in batches:
                    if example_input is None and n_batches == 0:
                        example_input = b  # its shapes were recorded in this same pass
                    call(b)
                    n_batches += 1
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(f"model {type(model).__name__}: no nn.Conv2d or nn.Linear layer ran; "
                         "nothing to profile")
    if batches is not None and n_batches == 0:
        raise ValueError("batches= is empty: give at least one input batch, or None for a profile "
                         "without run-time statistics")
    if skipped:
        warnings.warn(f"hwq.profile: compute layers that are not Conv2d/Linear are not profiled: "
                      f"{skipped}", stacklevel=2)
    out = []
    for n in order:
        layer = layers[n]
        layer.stats = stats.get(n) if batches is not None else None
        out.append(layer)
    first = example_input[0] if isinstance(example_input, tuple) else example_input
    shape = tuple(first.shape[1:]) if isinstance(first, torch.Tensor) else None
    meta: dict[str, Any] = {"source": type(model).__name__, "batches": n_batches}
    if skipped:
        meta["skipped"] = skipped
    result = Profile(out, name=name or type(model).__name__, input_shape=shape, meta=meta)
    result.validate()
    return result

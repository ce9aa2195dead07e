"""hwq.summary: one row per compute layer with its quantizers, how it runs (float, fake-quant, or
the packed kernel hwq.deploy chose), bit widths, parameters, MACs, bit operations and weight memory
in bits, with totals (Larq's model summary, with bits).

MACs need layer output shapes: give ``example_input`` (or ``input_size``) and the model is run
once, in eval mode under no_grad, with the quantizers' state (ranges, learned steps) saved before and
restored after, so a summary never calibrates anything. Without an input, Linear MACs are counted
from the layer alone and Conv MACs are left blank.
BOPs = MACs * w_bits * a_bits (the bit-operation count of Baskin et al. / HAWQ-V3).
Weight memory = weights * w_bits + biases * 32 (biases stay float); scales are not counted.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ._observe import observing
from ._table import text_table
from .convert import COMPUTE_TYPES
from .nn import QuantAct, QuantLayer

FLOAT_BITS = 32


@dataclasses.dataclass
class LayerRow:
    name: str
    type: str
    w_quant: str
    a_quant: str
    w_bits: int | None
    a_bits: int | None
    params: int
    macs: int | None  # per sample
    weight_bits: int
    impl: str = ""  # how it runs: "float", "fake-quant", or a deployed kernel ("binary", ...)

    @property
    def bops(self) -> int | None:
        if self.macs is None or self.w_bits is None or self.a_bits is None:
            return None
        return self.macs * self.w_bits * self.a_bits


@dataclasses.dataclass
class Summary:
    rows: list[LayerRow]
    macs_known: bool

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs or 0 for r in self.rows)

    @property
    def bops(self) -> int:
        return sum(r.bops or 0 for r in self.rows)

    @property
    def weight_bits(self) -> int:
        return sum(r.weight_bits for r in self.rows)

    @property
    def float_weight_bits(self) -> int:
        return sum(r.params * FLOAT_BITS for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [dict(dataclasses.asdict(r), bops=r.bops) for r in self.rows],
                "total": {"params": self.params, "macs": self.macs, "bops": self.bops,
                          "weight_bits": self.weight_bits,
                          "float_weight_bits": self.float_weight_bits}}

    def __str__(self) -> str:
        def num(v):
            return "-" if v is None else f"{v:,}"

        head = ["layer", "type", "weights", "acts", "runs as", "w_bits", "a_bits", "params", "MACs",
                "BOPs", "weight bits"]
        body = [[r.name, r.type, r.w_quant, r.a_quant, r.impl, num(r.w_bits), num(r.a_bits),
                 num(r.params), num(r.macs), num(r.bops), num(r.weight_bits)] for r in self.rows]
        total = ["total", "", "", "", "", "", "", num(self.params),
                 num(self.macs) if self.macs_known else num(self.macs) + "+",
                 num(self.bops), num(self.weight_bits)]
        out = [text_table(head, body, total=total, left=5)]  # the 5 text columns left-aligned
        kib, fkib = self.weight_bits / 8192, self.float_weight_bits / 8192
        ratio = self.float_weight_bits / self.weight_bits if self.weight_bits else math.nan
        out.append(f"weight memory {kib:,.1f} KiB (float32 {fkib:,.1f} KiB, {ratio:.2f}x smaller); "
                   f"MACs and BOPs per sample"
                   + ("" if self.macs_known else "; conv MACs need example_input or input_size"))
        return "\n".join(out)


def _is_deployed(m: nn.Module) -> bool:
    """A layer of hwq.deploy (PackedConv2d, Int8Conv2d, ...): packed weights and a kernel name."""
    from .deploy import DeployedLayer  # deploy imports the kernels; summary need not, until here
    return isinstance(m, DeployedLayer)


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor, batch: int) -> int | None:
    if _is_deployed(module):  # runs as a (grouped) convolution; a linear layer as 1x1
        return (out.numel() // batch * module.in_channels // module.groups
                * math.prod(module.kernel_size))
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inp.numel() // batch * module.out_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() // batch * module.in_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() // batch * module.in_features
    return None  # attention, RNNs, bilinear: not counted


def _run_shapes(model: nn.Module, rows: dict[str, nn.Module], example: torch.Tensor
                ) -> dict[str, int]:
    batch = example.shape[0] if example.dim() > 0 else 1
    macs: dict[str, int] = {}
    handles = []
    for name, m in rows.items():
        def hook(mod, args, out, name=name):
            if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                v = _macs(mod, args[0], out, batch)
                if v is not None:
                    macs[name] = macs.get(name, 0) + v
        handles.append(m.register_forward_hook(hook))
    try:
        with observing(model):
            model(example)
    finally:
        for h in handles:
            h.remove()
    return macs


def summary(model: nn.Module, example_input: torch.Tensor | None = None,
            input_size: Sequence[int] | None = None,
            print_fn: Callable[[str], Any] | None = print) -> Summary:
    """Print (with ``print_fn``; None prints nothing) and return the per-layer Summary of ``model``.

    example_input: a batch the model accepts; or input_size: its shape (a random batch is made).
    MACs are per sample (divided by the batch size, the first dim of the input).
    """
    if example_input is not None and input_size is not None:
        raise ValueError("give example_input or input_size, not both")
    if input_size is not None:
        if not (isinstance(input_size, (tuple, list)) and input_size
                and all(isinstance(d, int) and d > 0 for d in input_size)):
            raise ValueError(f"input_size={input_size!r} is not accepted: expected a tuple of "
                             "positive ints such as (1, 3, 224, 224)")
        p = next(model.parameters(), None)
        g = torch.Generator().manual_seed(0)
        example_input = torch.randn(tuple(input_size), generator=g).to(
            device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else None)
    rows_m = {n: m for n, m in model.named_modules()
              if isinstance(m, (QuantLayer, QuantAct) + COMPUTE_TYPES) or _is_deployed(m)}
    try:
        macs = _run_shapes(model, rows_m, example_input) if example_input is not None else {}
    except RuntimeError as e:  # torch's shape errors name no argument of summary
        what = (f"input_size={tuple(input_size)!r}" if input_size is not None else
                f"example_input of shape {tuple(getattr(example_input, 'shape', ()))}")
        raise ValueError(f"{what} is not accepted: the model cannot run on it "
                         f"({str(e).splitlines()[0][:200]}); expected the input shape the model "
                         "takes, batch first, e.g. (1, 3, 224, 224)") from None

    rows = []
    for name, m in rows_m.items():
        params = sum(p.numel() for p in m.parameters(recurse=False))
        bias = getattr(m, "bias", None)
        nbias = bias.numel() if isinstance(bias, torch.Tensor) else 0
        if _is_deployed(m):  # weights live in packed buffers, not parameters
            nbias = m.out_channels
            params = (m.out_channels * m.in_channels // m.groups * math.prod(m.kernel_size)
                      + nbias)
            wq, aq, wb, ab = f"{m.w_bits}-bit codes", m.act_quant.name, m.w_bits, m.a_bits
            impl = m.impl
        elif isinstance(m, QuantLayer):
            wq, aq, wb, ab, impl = m.w_quant, m.a_quant, m.w_bits, m.a_bits, "fake-quant"
        elif isinstance(m, QuantAct):
            wq, aq, wb, ab, impl = "-", m.a_quant, None, m.a_bits, "fake-quant"
        else:
            wq, aq, wb, ab, impl = "float", "float", FLOAT_BITS, FLOAT_BITS, "float"
        wbits = (params - nbias) * (wb or FLOAT_BITS) + nbias * FLOAT_BITS
        if name in macs:
            mac = macs[name]
        elif isinstance(m, nn.Linear) and example_input is None:
            mac = m.in_features * m.out_features
        else:
            mac = None
        rows.append(LayerRow(name, type(m).__name__, wq, aq, wb, ab, params, mac, wbits, impl))
    known = all(r.macs is not None for r in rows if not isinstance(rows_m[r.name], QuantAct))
    result = Summary(rows, macs_known=known)
    if print_fn is not None:
        print_fn(str(result))
    return result

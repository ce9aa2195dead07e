"""Run-time statistics of one layer, taken on its fixed-point integer codes.

The bit-serial accelerators of the Toronto line spend time per *bit* of the values they process, so
what they gain depends on the data:

* Dynamic Stripes (Delmas Lascorz et al., "Dynamic Stripes", arXiv 1706.00504) processes a group of
  activations in as many cycles as the group's largest value needs: the position of the highest set
  bit of its magnitude, plus one for the sign when a value is negative (DNNsim's DynamicStripes
  model does exactly this, sign-magnitude codes).
* Bit-pragmatic (Albericio et al., MICRO 2017) processes only the essential (non-zero) bits of each
  activation, so a lane's time is the popcount of its magnitude and a group waits for its slowest
  lane.
* Loom (Sharify et al., DAC 2018) is bit-serial in the weights too.

Groups. A *group* is 16 values that enter one inner-product unit together: 16 consecutive input
channels at one pixel (a "brick"; for an FC layer, 16 consecutive input features). A *pallet* is 16
groups that one tile processes in lockstep: the bricks at 16 neighbouring pixels along the width
(16 windows of a stride-1 convolution at one kernel offset). Pallets are taken on aligned 16-pixel
blocks of the input tensor, not on the exact windows of the convolution (which overlap and shift with
the kernel offset): each block is a sample of the same data, which keeps the statistics one pass over
the input. For an FC layer a pallet is 16 tokens (rows) of a 3-D input; with a 2-D input (one window)
a pallet is one group. Zero padding added to fill the last group is zero and changes no maximum.

Weight groups are 16 consecutive input channels of one filter at one kernel offset.

Histograms are lists of counts indexed by bits (index 0: an all-zero group).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

GROUP = 16
"""Values per group (one brick of 16 input channels: DaDianNao's 16 lanes, Chen et al. MICRO 2014)."""
PALLET = 16
"""Groups per pallet (Stripes' 16 windows processed concurrently, Judd et al. MICRO 2016)."""
MAX_CODE = 2 ** 16 - 1
"""Largest magnitude the tables cover: 16-bit codes (hwq's fixed quantizer goes up to 16 bits)."""

_bitlen_table: torch.Tensor | None = None
_popcount_table: torch.Tensor | None = None


def _tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Lookup tables (uint8) of bit length and popcount for 0..MAX_CODE: one gather per value."""
    global _bitlen_table, _popcount_table
    if _bitlen_table is None:
        v = torch.arange(MAX_CODE + 1, dtype=torch.int32)
        bl = torch.zeros_like(v)
        pc = torch.zeros_like(v)
        for b in range(16):
            bit = (v >> b) & 1
            pc += bit
            bl = torch.where(bit > 0, torch.full_like(v, b + 1), bl)
        _bitlen_table, _popcount_table = bl.to(torch.uint8), pc.to(torch.uint8)
    return _bitlen_table, _popcount_table


def _magnitudes(codes: torch.Tensor, what: str) -> tuple[torch.Tensor, bool]:
    """(|codes| as int32, whether any code is negative); refuses codes beyond 16 bits."""
    if codes.numel() == 0:
        return codes.to(torch.int32), False
    lo, hi = (float(v) for v in torch.aminmax(codes.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):  # int(nan) would say nothing useful
        raise ValueError(f"{what}: the codes hold {'NaN' if lo != lo or hi != hi else 'Inf'} "
                         "(the input does): run-time statistics need finite inputs")
    lo, hi = int(lo), int(hi)
    top = max(-lo, hi)
    if top > MAX_CODE:
        raise ValueError(f"{what}: integer code of magnitude {top} is not accepted: run-time "
                         f"statistics cover codes of at most 16 bits (|code| <= {MAX_CODE})")
    mag = codes.detach().to(torch.int32).contiguous()
    if lo < 0:
        mag.abs_()
    return mag, lo < 0


def value_bits(codes: torch.Tensor, what: str = "codes") -> tuple[torch.Tensor, torch.Tensor]:
    """Per value: (precision it needs, essential bits), both uint8 tensors shaped like ``codes``.

    precision = bit length of |code| + 1 when the code is negative (sign-magnitude, as DNNsim);
    essential bits = popcount(|code|). ``codes``: integer-valued tensor, |code| <= 65535.
    """
    mag, negative = _magnitudes(codes, what)
    bitlen, popcount = _tables()
    prec = lookup(bitlen, mag)
    if negative:
        prec += (codes < 0).to(torch.uint8)
    return prec, lookup(popcount, mag)


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] (index_select is several times faster than advanced indexing on CPU)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def _sum(t: torch.Tensor) -> int:
    """Exact sum of a small-valued uint8 tensor (int32 accumulation when it cannot overflow)."""
    wide = t.numel() * 255 >= 2 ** 31
    return int(t.sum(dtype=torch.int64 if wide else torch.int32))


def _pad_dim(t: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    extra = (-t.shape[dim]) % multiple
    if extra == 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


def act_groups(v: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Max of ``v`` (per-value bits, uint8) over each group and over each pallet of an input.

    conv input (N, C, H, W): group = 16 channels at one pixel, pallet = 16 groups along W.
    fc input (N, ..., F): group = 16 features, pallet = 16 rows of the middle dims (tokens).
    """
    if kind == "conv":
        n, c, h, w = v.shape
        g = _pad_dim(v, 1, GROUP).view(n, -1, GROUP, h, w).amax(dim=2)  # (N, C/16, H, W)
        p = _pad_dim(g, 3, PALLET)
        p = p.view(n, p.shape[1], h, -1, PALLET).amax(dim=-1)
        return g, p
    n, f = v.shape[0], v.shape[-1]
    v = v.reshape(n, -1, f)  # (N, tokens, F)
    g = _pad_dim(v, 2, GROUP).view(n, v.shape[1], -1, GROUP).amax(dim=-1)  # (N, T, F/16)
    p = _pad_dim(g, 1, PALLET)
    p = p.view(n, -1, PALLET, p.shape[2]).amax(dim=2)
    return g, p


def weight_groups(v: torch.Tensor) -> torch.Tensor:
    """Max of ``v`` over groups of 16 input channels of one filter at one kernel offset.
    Weight (K, C, R, S) or (K, F)."""
    if v.dim() == 4:
        v = v.permute(0, 2, 3, 1)  # (K, R, S, C): channels last
    g = _pad_dim(v, v.dim() - 1, GROUP)
    return g.reshape(*g.shape[:-1], -1, GROUP).amax(dim=-1)


def histogram(v: torch.Tensor) -> list[int]:
    """Counts of each value 0..max of a uint8 tensor, trailing zeros trimmed."""
    counts = torch.bincount(v.flatten().to(torch.int64), minlength=1).tolist()
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return counts


def add_hist(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)]


def hist_mean(hist: list[int], floor: int = 0) -> float:
    """Mean of the histogram's bit counts, each raised to at least ``floor`` (a step takes at least
    ``floor`` cycles). NaN for an empty histogram."""
    total = sum(hist)
    if total == 0:
        return float("nan")
    return sum(max(b, floor) * c for b, c in enumerate(hist)) / total


@dataclasses.dataclass
class LayerStats:
    """Run-time statistics of one layer (see the module docstring for groups and pallets).

    Activation fields (a_*) are taken on the layer's input over every batch; weight fields (w_*) on
    its weight once. Counts are numbers of values or groups; histograms are indexed by bits.
    """

    samples: int = 0
    """Input samples (batch elements) seen."""
    a_values: int = 0
    a_zeros: int = 0
    a_essential: int = 0
    """Sum over activations of their essential bits (popcount of the magnitude)."""
    a_group_prec: list[int] = dataclasses.field(default_factory=list)
    """Histogram: precision a group of 16 activations needs (Dynamic Stripes, column)."""
    a_pallet_prec: list[int] = dataclasses.field(default_factory=list)
    """Histogram: precision a pallet of 16 x 16 activations needs (Dynamic Stripes, lockstep)."""
    a_group_ess: list[int] = dataclasses.field(default_factory=list)
    """Histogram: largest essential-bit count in a group of 16 (Pragmatic, one column)."""
    a_pallet_ess: list[int] = dataclasses.field(default_factory=list)
    """Histogram: largest essential-bit count in a pallet (Pragmatic, lockstep columns)."""
    w_values: int = 0
    w_zeros: int = 0
    w_essential: int = 0
    w_group_prec: list[int] = dataclasses.field(default_factory=list)
    """Histogram: precision a group of 16 weights needs (Loom with dynamic weight precision)."""

    # -- derived figures -------------------------------------------------------------------
    @property
    def a_zero_frac(self) -> float:
        return self.a_zeros / self.a_values if self.a_values else float("nan")

    @property
    def w_zero_frac(self) -> float:
        return self.w_zeros / self.w_values if self.w_values else float("nan")

    @property
    def a_essential_mean(self) -> float:
        """Mean essential bits per activation (Bit-pragmatic's ideal work per activation)."""
        return self.a_essential / self.a_values if self.a_values else float("nan")

    @property
    def w_essential_mean(self) -> float:
        return self.w_essential / self.w_values if self.w_values else float("nan")

    @property
    def a_group_prec_mean(self) -> float:
        return hist_mean(self.a_group_prec)

    @property
    def a_pallet_prec_mean(self) -> float:
        return hist_mean(self.a_pallet_prec)

    @property
    def w_group_prec_mean(self) -> float:
        return hist_mean(self.w_group_prec)

    # -- accumulation ----------------------------------------------------------------------
    def add_activations(self, codes: torch.Tensor, kind: str, what: str) -> None:
        """Accumulate the statistics of one batch of input codes (N, C, H, W) or (N, ..., F)."""
        mag, negative = _magnitudes(codes, what)
        bitlen, popcount = _tables()
        ess = lookup(popcount, mag)
        if negative:  # the sign bit counts per value: group max of (bit length + sign)
            prec = lookup(bitlen, mag) + (codes < 0).to(torch.uint8)
            gp, pp = act_groups(prec, kind)
        else:  # bit length is monotone: take it of the group's largest magnitude only
            gm, pm = act_groups(mag, kind)
            gp, pp = lookup(bitlen, gm.contiguous()), lookup(bitlen, pm.contiguous())
        ge, pe = act_groups(ess, kind)
        self.samples += codes.shape[0]
        self.a_values += codes.numel()
        self.a_zeros += codes.numel() - int(torch.count_nonzero(ess))
        self.a_essential += _sum(ess)
        self.a_group_prec = add_hist(self.a_group_prec, histogram(gp))
        self.a_pallet_prec = add_hist(self.a_pallet_prec, histogram(pp))
        self.a_group_ess = add_hist(self.a_group_ess, histogram(ge))
        self.a_pallet_ess = add_hist(self.a_pallet_ess, histogram(pe))

    def set_weights(self, codes: torch.Tensor, what: str) -> None:
        """Statistics of the weight codes (K, C, R, S) or (K, F)."""
        prec, ess = value_bits(codes, what)
        self.w_values = codes.numel()
        self.w_zeros = int((codes == 0).sum())
        self.w_essential = _sum(ess)
        self.w_group_prec = histogram(weight_groups(prec))

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COUNT_FIELDS = ("samples", "a_values", "a_zeros", "a_essential", "w_values", "w_zeros",
                "w_essential")
HIST_FIELDS = ("a_group_prec", "a_pallet_prec", "a_group_ess", "a_pallet_ess", "w_group_prec")

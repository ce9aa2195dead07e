"""Seeded random conv/linear cases shared by the kernel tests.

Shapes cover the issue's ranges: channels 1..300 (rarely a multiple of 64), kernels 1/3/5/7,
stride 1/2, padding 0..3, dilation 1/2, groups, batch 1..8, spatial 1..33; bit widths cycle
through every (a_bits, w_bits) pair 1..8. The work per case is capped (shrinking batch, then
spatial size, then output channels) so that thousands of cases run in seconds on 2 cores.
"""
from __future__ import annotations

import dataclasses
import random

import torch


@dataclasses.dataclass
class Case:
    n: int
    cin: int
    cout: int
    h: int
    w: int
    k: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    a_bits: int
    w_bits: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in
                     zip((self.h, self.w), self.padding, self.dilation, self.k, self.stride))

    @property
    def macs(self) -> int:
        oh, ow = self.out_hw
        return self.n * oh * ow * self.cout * (self.cin // self.groups) * self.k[0] * self.k[1]

    @property
    def cost(self) -> int:
        """Work of the slower of reference and kernel: the reference does one dense MAC per plane
        pair, the kernels work on whole 64-bit words and 32-channel tiles."""
        oh, ow = self.out_hw
        cg, og = self.cin // self.groups, self.cout // self.groups
        kernel = (self.n * oh * ow * self.groups * -(-og // 32) * 32 * -(-cg // 64) * 64
                  * self.k[0] * self.k[1]) // 64
        return max(self.macs * self.a_bits * self.w_bits, kernel)

    def conv_kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


def _fits(c: Case) -> bool:
    return all(s + 2 * p >= d * (k - 1) + 1 for s, p, d, k in
               zip((c.h, c.w), c.padding, c.dilation, c.k))


def draw_conv_case(rng: random.Random, i: int, max_cost: float = 400_000,
                   edge_channels: tuple[int, ...] = (), depthwise: float = 0.0) -> Case:
    """Case number ``i`` (its bit widths: a_bits = 1 + i % 8, w_bits = 1 + (i // 8) % 8) drawn
    from ``rng``; drawn again until it fits and costs at most ``max_cost``.

    Options for scripts/gpu_check.py (off by default; the defaults keep the draws of the CPU tests
    unchanged): ``edge_channels``: channels per group drawn from this list with probability 0.4
    (tile boundaries such as 31, 32, 33); ``depthwise``: probability of a depthwise-like case
    (2..32 groups of 1..3 channels)."""
    while True:
        groups = rng.choice([1, 1, 1, 1, 2, 3, 4])
        cg = max(1, rng.randint(1, 300) // groups)
        og = max(1, rng.randint(1, 300) // groups)
        if edge_channels and rng.random() < 0.4:
            cg = rng.choice(edge_channels)
        if edge_channels and rng.random() < 0.4:
            og = rng.choice(edge_channels)
        if depthwise and rng.random() < depthwise:
            groups, cg, og = rng.randint(2, 32), rng.randint(1, 3), rng.randint(1, 3)
        k = rng.choice([1, 3, 5, 7])
        k2 = k if rng.random() < 0.8 else rng.choice([1, 3, 5, 7])
        c = Case(n=rng.randint(1, 8), cin=cg * groups, cout=og * groups,
                 h=rng.randint(1, 33), w=rng.randint(1, 33), k=(k, k2),
                 stride=(rng.choice([1, 2]),) * 2, padding=(rng.randint(0, 3), rng.randint(0, 3)),
                 dilation=(rng.choice([1, 2]),) * 2, groups=groups,
                 a_bits=1 + i % 8, w_bits=1 + (i // 8) % 8)
        if not _fits(c):
            continue
        # Shrink a random dimension at a time, so that large channel counts, large images and
        # large batches all survive in some cases.
        while c.cost > max_cost:
            options = []
            if c.n > 1:
                options.append("n")
            if c.h > 1 or c.w > 1:
                options.append("hw")
            if c.cout > c.groups:
                options.append("cout")
            if c.cin > c.groups:
                options.append("cin")
            if not options:
                break
            dim = rng.choice(options)
            if dim == "n":
                c.n = max(1, c.n // 2)
            elif dim == "hw":
                trial = dataclasses.replace(c, h=max(1, c.h * 2 // 3), w=max(1, c.w * 2 // 3))
                if not _fits(trial):
                    break
                c.h, c.w = trial.h, trial.w
            elif dim == "cout":
                c.cout = max(1, c.cout // c.groups // 2) * c.groups
            else:
                c.cin = max(1, c.cin // c.groups // 2) * c.groups
        if c.cost <= max_cost:
            return c


def conv_cases(count: int, seed: int, max_cost: int = 400_000) -> list[Case]:
    rng = random.Random(seed)
    return [draw_conv_case(rng, i, max_cost) for i in range(count)]


def linear_cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [Case(n=rng.randint(0 if i % 50 == 0 else 1, 16), cin=rng.randint(1, 600),
                 cout=rng.randint(1, 300), h=1, w=1, k=(1, 1), stride=(1, 1), padding=(0, 0),
                 dilation=(1, 1), groups=1, a_bits=1 + i % 8, w_bits=1 + (i // 8) % 8)
            for i in range(count)]


def binary_tensors(c: Case, gen: torch.Generator):
    x = torch.randint(0, 2, (c.n, c.cin, c.h, c.w), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (c.cout, c.cin // c.groups) + c.k, generator=gen).float() * 2 - 1
    return x, w


def bitserial_tensors(c: Case, gen: torch.Generator):
    x = torch.randint(0, 2 ** c.a_bits, (c.n, c.cin, c.h, c.w), generator=gen).float()
    half = 2 ** (c.w_bits - 1)
    w = torch.randint(-half, half, (c.cout, c.cin // c.groups) + c.k, generator=gen).float()
    return x, w

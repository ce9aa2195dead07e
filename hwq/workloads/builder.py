"""A small shape tracker that writes a network definition as a list of LayerProfile (no weights).

    net = Net((3, 227, 227))
    net.conv("conv1", 96, 11, stride=4)      # records the layer, moves the shape on
    net.pool(3, 2, ceil=True)                # shape only (Caffe pools round up)
    b = net.fork()                           # a branch from the current shape
    net.concat(b1, b2, ...)                  # channels of the branches, side by side

Output sizes: conv floor((H + 2p - k) / s) + 1 (Caffe and PyTorch); pooling floor or, with
ceil=True, Caffe's ceil((H + 2p - k) / s) + 1.
"""
from __future__ import annotations

import math

from ..profile import LayerProfile, Profile


class Net:
    """The current activation shape (C, H, W) or (F,) and the layers recorded so far (shared by forks)."""

    def __init__(self, shape: tuple[int, ...], layers: list[LayerProfile] | None = None):
        self.shape = tuple(shape)
        self.layers = [] if layers is None else layers

    def fork(self) -> "Net":
        """A branch starting at the current shape; its layers go to the same list."""
        return Net(self.shape, self.layers)

    def conv(self, name: str, out: int, kernel: int | tuple[int, int], stride: int = 1,
             pad: int | tuple[int, int] = 0, groups: int = 1) -> "Net":
        c, h, w = self.shape
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        ho, wo = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
        layer = LayerProfile(name=name, kind="conv", in_shape=(c, h, w), out_shape=(out, ho, wo),
                             kernel=(kh, kw), stride=(stride, stride), padding=(ph, pw),
                             groups=groups)
        self._add(layer)
        self.shape = (out, ho, wo)
        return self

    def fc(self, name: str, out: int) -> "Net":
        f = math.prod(self.shape)  # flattens a (C, H, W) input
        self._add(LayerProfile(name=name, kind="fc", in_shape=(f,), out_shape=(out,)))
        self.shape = (out,)
        return self

    def pool(self, kernel: int, stride: int, pad: int = 0, ceil: bool = False) -> "Net":
        c, h, w = self.shape
        rnd = math.ceil if ceil else math.floor
        self.shape = (c, rnd((h + 2 * pad - kernel) / stride) + 1,
                      rnd((w + 2 * pad - kernel) / stride) + 1)
        return self

    def global_pool(self) -> "Net":
        self.shape = (self.shape[0], 1, 1)
        return self

    def concat(self, *branches: "Net") -> "Net":
        """Channel concatenation of branches that end at the same H x W."""
        hw = {b.shape[1:] for b in branches}
        if len(hw) != 1:
            raise ValueError(f"concat: branches end at different sizes {sorted(hw)}")
        self.shape = (sum(b.shape[0] for b in branches),) + branches[0].shape[1:]
        return self

    def _add(self, layer: LayerProfile) -> None:
        layer.macs = layer.expected_macs()
        layer.weights = layer.expected_weights()
        self.layers.append(layer)

    def profile(self, name: str, input_shape: tuple[int, ...], source: str) -> Profile:
        p = Profile(list(self.layers), name=name, input_shape=tuple(input_shape),
                    meta={"source": source, "workload": name})
        p.validate()
        return p

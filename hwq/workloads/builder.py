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


def single(kind: str = "conv", c: int = 32, k: int = 64, hw: int = 16, kernel: int = 3,
           stride: int = 1, pad: int = 1, groups: int = 1, w_bits: int = 16, a_bits: int = 16,
           fc_in: int | None = None, name: str = "L") -> Profile:
    """A one-layer Profile, handy to explore a design: a conv of ``c`` -> ``k`` channels on an
    ``hw`` x ``hw`` input, or (kind="fc") an FC layer of ``fc_in`` -> ``k`` features."""
    if kind not in ("conv", "fc"):
        raise ValueError(f"kind={kind!r} is not accepted: expected 'conv' or 'fc'")
    if kind == "fc" and fc_in is None:
        raise ValueError("kind='fc' needs fc_in, the number of input features")
    net = Net((c, hw, hw) if kind == "conv" else (fc_in,))
    if kind == "conv":
        net.conv(name, k, kernel, stride=stride, pad=pad, groups=groups)
    else:
        net.fc(name, k)
    p = Profile(net.layers, name=f"single {kind}")
    p[0].w_bits, p[0].a_bits = w_bits, a_bits
    p[0].w_quant, p[0].a_quant = f"fixed:{w_bits}", f"fixed:{a_bits}"
    p.validate()
    return p

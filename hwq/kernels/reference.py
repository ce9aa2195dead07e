"""Pure-torch reference implementations of the packed ops: the tests' oracle and the fallback when the
C++ extension ``hwq._C`` is missing.

They compute with the same bit arithmetic as the kernels (docs/kernels.md):
  binary     x.w = K_valid - 2 * popcount(x XOR w) over the taps inside the image, with bit 1 = -1;
  bit-serial x.w = sum_ij c_ij * popcount(x_i AND w_j), c_ij = 2^(i+j), negated for the sign plane
             j = w_bits - 1 of the two's-complement weight;
but the popcounts are sums of 0/1 planes over F.unfold columns (float64 matmuls, exact below 2^53)
instead of packed words, so they share no code with the C++ kernels. Zero padding means the value 0:
an out-of-image tap contributes nothing (binary: it is left out of both K_valid and the popcount).

The packing functions produce exactly the layouts the C++ kernels read (see ``pack_activations_ref``
and ``pack_weights_ref``), so the extension's packers are tested against them bit for bit.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

WORD = 64           # bits per packed word (an int64 holding 64 channels)
PANEL = 8           # output channels per weight panel (one AVX-512 vector of words)
PANEL_PAD = 4       # panels are padded to a multiple of 4 (32 output channels): every ISA's tile


def words(channels: int) -> int:
    """64-bit words needed for ``channels`` bits."""
    return (channels + WORD - 1) // WORD


def padded_panels(out_channels: int) -> int:
    """Weight panels per group: ceil(out_channels / 8), rounded up to a multiple of PANEL_PAD."""
    p = (out_channels + PANEL - 1) // PANEL
    return (p + PANEL_PAD - 1) // PANEL_PAD * PANEL_PAD


def _bit_planes(v: torch.Tensor, bits: int | None) -> torch.Tensor:
    """0/1 planes of v on a new dim 0: one plane (v < 0) for binary (bits None), else the low ``bits``
    bits of the two's complement of the integer v, least significant first."""
    if bits is None:
        return (v < 0).to(torch.int64).unsqueeze(0)
    iv = v.to(torch.int64)
    return torch.stack([(iv >> i) & 1 for i in range(bits)])


def _pack_last(bits01: torch.Tensor) -> torch.Tensor:
    """Pack a 0/1 int64 tensor along its last dim into int64 words, bit c % 64 of word c // 64,
    zero-padded to a whole word."""
    c = bits01.shape[-1]
    nw = words(c)
    b = F.pad(bits01, (0, nw * WORD - c)).reshape(*bits01.shape[:-1], nw, 2, 32)
    # Two 32-bit halves summed separately, then joined: a sum of distinct powers of two is their OR,
    # and no half can overflow int64.
    half = (b << torch.arange(32, dtype=torch.int64)).sum(-1)
    return (half[..., 1] << 32) | half[..., 0]


def _unpack_last(packed: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of _pack_last: 0/1 int64, last dim ``channels``."""
    shifts = torch.arange(WORD, dtype=torch.int64)
    b = (packed.unsqueeze(-1) >> shifts) & 1
    return b.reshape(*packed.shape[:-1], -1)[..., :channels]


def pack_activations_ref(x: torch.Tensor, bits: int | None, groups: int = 1) -> torch.Tensor:
    """Pack an (N, C, H, W) activation to int64 (N, H, W, groups, planes, ceil(C/groups/64)).

    bits None: binary, one plane, bit 1 where x < 0 (so +1 and 0 give bit 0: sign(0) = +1).
    bits b: the low b bits of the integer x (unsigned codes), plane i holding bit i.
    Each group's channels start a new word; the bits past the group's channels are 0.
    """
    n, c, h, w = x.shape
    planes = _bit_planes(x, bits)                                  # (P, N, C, H, W)
    p = planes.shape[0]
    planes = planes.reshape(p, n, groups, c // groups, h, w).permute(1, 4, 5, 2, 0, 3)
    return _pack_last(planes.contiguous())                          # (N, H, W, G, P, Cwg)


def pack_weights_ref(w: torch.Tensor, bits: int | None, groups: int = 1) -> torch.Tensor:
    """Pack an (O, C/groups, KH, KW) weight to int64 (groups, planes, panels, KH*KW*Cwg, 8).

    bits None: binary, bit 1 where w < 0; bits b: the low b bits of the two's complement of w.
    Word k = (kh * KW + kw) * Cwg + cw of a row holds channels 64*cw .. 64*cw+63 of tap (kh, kw);
    output channel o of the group sits in panel o // 8, lane o % 8; panels are padded with zero
    weights to ``padded_panels(O / groups)``.
    """
    o, cg, kh, kw = w.shape
    og = o // groups
    planes = _bit_planes(w, bits)                                   # (P, O, Cg, KH, KW)
    p = planes.shape[0]
    packed = _pack_last(planes.permute(0, 1, 3, 4, 2).contiguous())  # (P, O, KH, KW, Cwg)
    k = kh * kw * packed.shape[-1]
    packed = packed.reshape(p, groups, og, k)
    npan = padded_panels(og)
    packed = F.pad(packed, (0, 0, 0, npan * PANEL - og))             # zero output channels
    packed = packed.reshape(p, groups, npan, PANEL, k).permute(1, 0, 2, 4, 3)
    return packed.contiguous()                                      # (G, P, NP, K, 8)


def unpack_activations_ref(packed: torch.Tensor, channels: int, bits: int | None) -> torch.Tensor:
    """Values (float32, NCHW) from packed activations: +/-1 for binary, unsigned integers otherwise."""
    n, h, w, g, p, _ = packed.shape
    b = _unpack_last(packed, channels // g)                         # (N, H, W, G, P, Cg)
    if bits is None:
        v = 1 - 2 * b[..., 0, :]
    else:
        v = sum(b[..., i, :] << i for i in range(p))
    return v.reshape(n, h, w, channels).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def unpack_weights_ref(packed: torch.Tensor, out_channels: int, in_channels_per_group: int,
                       kernel_size: tuple[int, int], bits: int | None) -> torch.Tensor:
    """Values (float32, (O, C/groups, KH, KW)) from packed weights: +/-1 or signed integers."""
    g, p, npan, k, _ = packed.shape
    kh, kw = kernel_size
    og = out_channels // g
    rows = packed.permute(0, 2, 4, 1, 3).reshape(g, npan * PANEL, p, k)[:, :og]
    b = _unpack_last(rows.reshape(g, og, p, kh, kw, -1), in_channels_per_group)
    if bits is None:
        v = 1 - 2 * b[:, :, 0]
    else:
        v = sum(b[:, :, i] << i for i in range(p - 1)) - (b[:, :, p - 1] << (p - 1))
    # (G, Og, KH, KW, Cg) -> (O, Cg, KH, KW)
    return v.reshape(out_channels, kh, kw, -1).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _plane_sums(xplanes, wplanes, coef, stride, padding, dilation, groups, binary):
    """Shared core: per group, unfold the 0/1 activation planes and contract them with the 0/1
    weight planes. Returns int64 (N, O, OH, OW)."""
    _, n, c, h, w = xplanes.shape
    _, o, cg, kh, kw = wplanes.shape
    og = o // groups
    kw_ = dict(kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    # valid[t, l] = 1 where tap t of output position l falls inside the image.
    valid = F.unfold(torch.ones(1, 1, h, w, dtype=torch.float64), **kw_)[0]   # (T, L)
    pa, pw = xplanes.shape[0], wplanes.shape[0]
    out = torch.zeros(n, o, oh * ow, dtype=torch.int64)
    if out.numel() == 0:
        return out.reshape(n, o, oh, ow)
    for g in range(groups):
        xs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        # All plane pairs in one matmul: AND counts[n, j, o, i, l] = sum_k w_j[o, k] x_i[n, k, l].
        cols = F.unfold(xplanes[:, :, xs].reshape(pa * n, cg, h, w).to(torch.float64), **kw_)
        cols = cols.reshape(pa, n, cg * kh * kw, -1).permute(1, 2, 0, 3).reshape(n, cg * kh * kw, -1)
        wrows = wplanes[:, os_].reshape(pw * og, -1).to(torch.float64)
        and_count = (wrows @ cols).reshape(n, pw, og, pa, -1)
        if binary:
            # popcount(x XOR w) over valid taps = sum x + sum w - 2 sum x*w.
            x_count = cols.sum(1, keepdim=True)                                  # (N, 1, L)
            w_count = wplanes[0, os_].sum(1).reshape(og, -1).to(torch.float64) @ valid  # (Og, L)
            xor_count = x_count + w_count - 2 * and_count[:, 0, :, 0]
            acc = cg * valid.sum(0) - 2 * xor_count
        else:
            c = torch.tensor(coef, dtype=torch.float64)                          # (Pa, Pw)
            acc = torch.einsum("njoil,ij->nol", and_count, c)
        out[:, os_] = acc.round().to(torch.int64)
    return out.reshape(n, o, oh, ow)


def binary_conv2d_ref(x: torch.Tensor, w: torch.Tensor, stride=1, padding=0, dilation=1,
                      groups: int = 1) -> torch.Tensor:
    """Exact int64 sums of conv2d(x, w) for +/-1 valued x (N, C, H, W) and w (O, C/groups, KH, KW),
    computed as K_valid - 2 * popcount(x XOR w) on sign bits; zero padding contributes 0."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    return _plane_sums(_bit_planes(x, None), _bit_planes(w, None), None, s, p, d, groups, True)


def bitserial_coefficients(a_bits: int, w_bits: int) -> list[list[int]]:
    """c_ij = 2^(i+j) for activation plane i and weight plane j; the weight's top plane is its
    two's-complement sign plane and carries -2^(w_bits-1) (so w_bits = 1 means values {0, -1})."""
    return [[(-1 if j == w_bits - 1 else 1) << (i + j) for j in range(w_bits)] for i in range(a_bits)]


def bitserial_conv2d_ref(x: torch.Tensor, w: torch.Tensor, a_bits: int, w_bits: int, stride=1,
                         padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """Exact int64 sums of conv2d(x, w) for unsigned a_bits-bit integer x and signed two's-complement
    w_bits-bit integer w, as sum_ij c_ij popcount(x_i AND w_j); zero padding contributes 0."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    coef = bitserial_coefficients(a_bits, w_bits)
    return _plane_sums(_bit_planes(x, a_bits), _bit_planes(w, w_bits), coef, s, p, d, groups, False)


def binary_linear_ref(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact int64 sums of linear(x, w) for +/-1 valued x (..., C) and w (O, C)."""
    lead = x.shape[:-1]
    y = binary_conv2d_ref(x.reshape(-1, x.shape[-1], 1, 1), w[:, :, None, None])
    return y.reshape(*lead, w.shape[0])


def bitserial_linear_ref(x: torch.Tensor, w: torch.Tensor, a_bits: int, w_bits: int) -> torch.Tensor:
    """Exact int64 sums of linear(x, w) for unsigned a_bits-bit x (..., C) and signed w_bits-bit w."""
    lead = x.shape[:-1]
    y = bitserial_conv2d_ref(x.reshape(-1, x.shape[-1], 1, 1), w[:, :, None, None], a_bits, w_bits)
    return y.reshape(*lead, w.shape[0])

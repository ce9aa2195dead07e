"""The CUDA conv kernels' index arithmetic and data flow, checked on the CPU.

csrc/cuda/emulate.cpp runs the sm_80 kernel (conv.cu) block by block and thread by thread with the
kernel's own index functions (csrc/cuda/conv_index.h): the per-thread cp.async loader mapping (every
tile word copied by exactly one thread), the stage ring, every warp's ldmatrix addresses, ldmatrix
and mma.m16n8k256 .and.popc emulated from the PTX definitions, and the full epilogue of all three
output modes. Here its outputs must equal the pure-torch reference bit for bit on randomized shapes,
for both tile configurations. csrc/cuda/emulate_sm90.cpp does the same for the sm_90a wgmma kernel
(conv_sm90.cu): its 16-byte cp.async loader (every word once), the stage ring against the wgmma
wait accounting, the shared-memory matrix descriptors decoded as the PTX ISA defines them, the wgmma
accumulator fragments, one accumulator set per bit-serial coefficient, and the staged coalesced
epilogue; both tile layouts (64-byte swizzle and none), 16- and 8-byte activation copies. It cannot
show races or hardware behaviour: scripts/gpu_check.sh does.
Needs a host C++ compiler (g++), else skipped.
"""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess

import pytest
import torch

from hwq.kernels import reference as ref
from hwq.kernels.cuda import CUDA_DIR

CXX = shutil.which("g++") or shutil.which("c++")
CONFIGS = [(128, 128, 2, 4), (128, 256, 2, 4)]  # (BM, BN, warps_m, warps_n) as conv.cu's kConfigs


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if CXX is None:
        pytest.skip("no host C++ compiler")
    so = str(tmp_path_factory.mktemp("emu") / "emulate.so")
    # -ffp-contract=off: the float epilogue rounds after the multiply and after the add (no FMA).
    subprocess.run([CXX, "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC", "-I", CUDA_DIR,
                    os.path.join(CUDA_DIR, "emulate.cpp"),
                    os.path.join(CUDA_DIR, "emulate_sm90.cpp"), "-o", so],
                   check=True, timeout=240)
    lib = ctypes.CDLL(so)
    lib.hwq_emulate_conv.restype = ctypes.c_int
    lib.hwq_emulate_conv_sm90.restype = ctypes.c_int
    return lib


ERRORS = {1: "bad tile configuration", 2: "a tile word copied by no thread or by several",
          3: "pipeline: stage overwritten before it was read, or read before it was loaded",
          4: "an output element written twice", 5: "bad out_mode",
          6: "packed-sign word out of bounds",
          7: "a wgmma descriptor reads outside its operand tile"}


def emulate(lib, x, w, binary, a_bits, w_bits, stride, pad, dil, groups, config, mode=0,
            scale=None, bias=None):
    """The emulated kernel's output, shaped as conv2d_packed's (mode 2: packed sign words).
    config: (BM, BN, warps_m, warps_n) of the sm_80 kernel, or ("sm90", layout, vec16)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = ref.pack_activations_ref(x, None if binary else a_bits, groups).contiguous()
    wp = ref.pack_weights_ref(w, None if binary else w_bits, groups).contiguous()
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    if mode == 2:
        out = torch.zeros((n, oh, ow, 1, 1, (o + 63) // 64), dtype=torch.int64)
    else:  # poison: an element the kernel never writes shows up
        out = torch.full((n, oh, ow, o), -0x55555556, dtype=torch.int32)
        if mode == 1:
            out = out.view(torch.float32)
    sc = None if scale is None else scale.contiguous()
    bi = None if bias is None else bias.contiguous()
    i64, i32 = ctypes.c_int64, ctypes.c_int
    if config[0] == "sm90":
        rc = lib.hwq_emulate_conv_sm90(
            ctypes.c_void_p(xp.data_ptr()), ctypes.c_void_p(wp.data_ptr()), i64(n), i64(h), i64(wd),
            i64(c), i64(o), i64(groups), i32(kh), i32(kw), i32(stride[0]), i32(stride[1]),
            i32(pad[0]), i32(pad[1]), i32(dil[0]), i32(dil[1]), i32(1 if binary else a_bits),
            i32(1 if binary else w_bits), i32(int(binary)), i32(config[1]), i32(config[2]),
            ctypes.c_void_p(None if sc is None else sc.data_ptr()),
            ctypes.c_void_p(None if bi is None else bi.data_ptr()), i32(mode),
            ctypes.c_void_p(out.data_ptr()))
        assert rc == 0, f"emulator: {ERRORS.get(rc, rc)}"
        return out if mode == 2 else out.permute(0, 3, 1, 2)
    bm, bn, wm, wn = config
    rc = lib.hwq_emulate_conv(
        ctypes.c_void_p(xp.data_ptr()), ctypes.c_void_p(wp.data_ptr()), i64(n), i64(h), i64(wd),
        i64(c), i64(o), i64(groups), i32(kh), i32(kw), i32(stride[0]), i32(stride[1]), i32(pad[0]),
        i32(pad[1]), i32(dil[0]), i32(dil[1]), i32(1 if binary else a_bits),
        i32(1 if binary else w_bits), i32(int(binary)), i32(bm), i32(bn), i32(wm), i32(wn),
        ctypes.c_void_p(None if sc is None else sc.data_ptr()),
        ctypes.c_void_p(None if bi is None else bi.data_ptr()), i32(mode),
        ctypes.c_void_p(out.data_ptr()))
    assert rc == 0, f"emulator: {ERRORS.get(rc, rc)}"
    return out if mode == 2 else out.permute(0, 3, 1, 2)


def expected(want, mode, scale, bias):
    """The reference int sums through the epilogue of `mode`, as scripts/gpu_check.py checks."""
    if mode == 0:
        return want
    yf = want.to(torch.int32).to(torch.float32) * scale.view(1, -1, 1, 1)
    yf = yf + bias.view(1, -1, 1, 1)
    return yf if mode == 1 else ref.pack_activations_ref(yf, None, 1)


def same(got, want, mode):
    if mode == 0:
        return torch.equal(got.to(torch.int64), want)
    if mode == 1:
        return torch.equal(got.contiguous().view(torch.int32), want.contiguous().view(torch.int32))
    return got.shape == want.shape and torch.equal(got, want)


def draw(rng: random.Random, i: int):
    binary = i % 3 == 0
    pairs = [(a, b) for a in range(1, 9) for b in range(1, 9)]
    a_bits, w_bits = (1, 1) if binary else pairs[(i * 7) % 64]
    # Emulation cost ~ blocks * iterations (128 x 128 tiles): keep each case well under a second.
    return (binary, a_bits, w_bits) + _geometry(
        rng, cg_choices=[1, 5, 63, 64, 65, 130, 200], og_choices=[1, 7, 8, 9, 33, 130], max_pad=3,
        fits=lambda blocks, chunks: blocks(128) * a_bits * w_bits * chunks <= 160)


def _geometry(rng: random.Random, cg_choices, og_choices, max_pad, fits):
    """(groups, cg, og, kh, kw, stride, pad, dil, n, h, w) of a random conv whose emulation is
    cheap: fits(blocks, chunks) with blocks(og_tile) the thread blocks of an og_tile-wide output
    tile and chunks the reduction's 8-word chunks."""
    while True:
        groups = rng.choice([1, 1, 1, 2, 3])
        cg = rng.choice(cg_choices + [rng.randint(1, 260)])
        og = rng.choice(og_choices + [rng.randint(1, 140)])
        k = rng.choice([1, 3, 3, 5])
        kh, kw = (k, k) if rng.random() < 0.85 else (k, rng.choice([1, 2]))
        stride = (rng.choice([1, 2]), rng.choice([1, 2]))
        pad = (rng.randint(0, max_pad), rng.randint(0, max_pad))
        dil = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
        n, h, w = rng.randint(1, 3), rng.randint(1, 12), rng.randint(1, 12)
        if h + 2 * pad[0] < dil[0] * (kh - 1) + 1 or w + 2 * pad[1] < dil[1] * (kw - 1) + 1:
            continue
        oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        chunks = -(-(kh * kw * -(-cg // 64)) // 8)
        if fits(lambda og_tile: groups * -(-n * oh * ow // 128) * -(-og // og_tile), chunks):
            return groups, cg, og, kh, kw, stride, pad, dil, n, h, w


def values(shape, bits, signed, gen):
    if bits is None:
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    return torch.randint(lo, hi, shape, generator=gen).float()


@pytest.mark.parametrize("config", CONFIGS, ids=["128x128", "128x256"])
def test_emulated_kernel_matches_reference(emulator, config):
    rng, gen = random.Random(5 + config[1]), torch.Generator().manual_seed(config[1])
    for i in range(60):
        binary, a_bits, w_bits, groups, cg, og, kh, kw, stride, pad, dil, n, h, w = draw(rng, i)
        x = values((n, cg * groups, h, w), None if binary else a_bits, False, gen)
        wt = values((og * groups, cg, kh, kw), None if binary else w_bits, True, gen)
        mode = (i // 3) % 3  # every mode with binary and bit-serial alike
        scale = bias = None
        if mode:
            scale = (torch.rand(og * groups, generator=gen) * 2 - 1) * 0.37
            bias = torch.randn(og * groups, generator=gen) * 3
        got = emulate(emulator, x, wt, binary, a_bits, w_bits, stride, pad, dil, groups, config,
                      mode, scale, bias)
        if binary:
            want = ref.binary_conv2d_ref(x, wt, stride, pad, dil, groups)
        else:
            want = ref.bitserial_conv2d_ref(x, wt, a_bits, w_bits, stride, pad, dil, groups)
        assert same(got, expected(want, mode, scale, bias), mode), (
            f"case {i}: mode={mode} binary={binary} a={a_bits} w={w_bits} groups={groups} cg={cg} "
            f"og={og} k=({kh},{kw}) stride={stride} pad={pad} dil={dil} n={n} hw=({h},{w})")


def test_emulated_multi_block_shape(emulator):
    """Several row and column blocks (every warp column of a block busy), several K chunks and a
    row tail: 300 pixels x 300 channels; binary 260 channels in all three output modes."""
    gen = torch.Generator().manual_seed(3)
    x = values((3, 130, 10, 10), 2, False, gen)
    w = values((300, 130, 1, 1), 2, True, gen)
    for config in CONFIGS:
        got = emulate(emulator, x, w, False, 2, 2, (1, 1), (0, 0), (1, 1), 1, config)
        assert torch.equal(got.to(torch.int64), ref.bitserial_conv2d_ref(x, w, 2, 2))
    xb, wb = values((2, 300, 6, 6), None, False, gen), values((260, 300, 3, 3), None, True, gen)
    want = ref.binary_conv2d_ref(xb, wb, 1, 1)
    scale = (torch.rand(260, generator=gen) * 2 - 1) * 0.37
    bias = torch.randn(260, generator=gen) * 3
    for config in CONFIGS:
        for mode in (0, 1, 2):
            s, b = (scale, bias) if mode else (None, None)
            got = emulate(emulator, xb, wb, True, 1, 1, (1, 1), (1, 1), (1, 1), 1, config, mode, s, b)
            assert same(got, expected(want, mode, s, b), mode), (config, mode)


def test_emulated_gpu_failure_shape(emulator):
    """The shape of the first GPU run's first failure (c=1000, o=700 1x1, wrong from channel 32 /
    64 on: the B tile loader filled only a quarter of the tile), on fewer rows."""
    gen = torch.Generator().manual_seed(7)
    xb, wb = values((40, 1000, 1, 1), None, False, gen), values((700, 1000, 1, 1), None, True, gen)
    want = ref.binary_conv2d_ref(xb, wb)
    for config in CONFIGS:
        got = emulate(emulator, xb, wb, True, 1, 1, (1, 1), (0, 0), (1, 1), 1, config)
        assert torch.equal(got.to(torch.int64), want), config


# ---- the sm_90a wgmma kernel (conv_sm90.cu) ----------------------------------------------------

# (a_bits, w_bits) the wgmma kernel takes (<= 4 plane pairs); None = binary.
SM90_PRODUCTS = [None, (1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (1, 4), (4, 1)]
SM90_LAYOUTS = [(0, 1), (1, 1), (0, 0)]  # (layout, vec16): swizzled, unswizzled, 8-byte A copies


def draw_sm90(rng: random.Random, product):
    binary = product is None
    a_bits, w_bits = (1, 1) if binary else product
    return (binary, a_bits, w_bits) + _geometry(  # the wgmma kernel's output tiles are 64 wide
        rng, cg_choices=[1, 63, 64, 65, 128, 129, 200], og_choices=[1, 7, 8, 9, 33, 65, 130],
        max_pad=2, fits=lambda blocks, chunks: blocks(64) * chunks * a_bits * w_bits <= 60)


@pytest.mark.parametrize("layout", SM90_LAYOUTS, ids=["swizzle64", "noswizzle", "swizzle64-8B"])
def test_emulated_wgmma_kernel_matches_reference(emulator, layout):
    """Every product the wgmma kernel takes, all three output modes, randomized shapes."""
    rng, gen = random.Random(11 + 3 * layout[0] + layout[1]), torch.Generator().manual_seed(17)
    for i in range(3 * len(SM90_PRODUCTS)):
        product = SM90_PRODUCTS[i % len(SM90_PRODUCTS)]
        binary, a_bits, w_bits, groups, cg, og, kh, kw, stride, pad, dil, n, h, w = draw_sm90(
            rng, product)
        x = values((n, cg * groups, h, w), None if binary else a_bits, False, gen)
        wt = values((og * groups, cg, kh, kw), None if binary else w_bits, True, gen)
        mode = (i // len(SM90_PRODUCTS)) % 3
        scale = bias = None
        if mode:
            scale = (torch.rand(og * groups, generator=gen) * 2 - 1) * 0.37
            bias = torch.randn(og * groups, generator=gen) * 3
        got = emulate(emulator, x, wt, binary, a_bits, w_bits, stride, pad, dil, groups,
                      ("sm90",) + layout, mode, scale, bias)
        if binary:
            want = ref.binary_conv2d_ref(x, wt, stride, pad, dil, groups)
        else:
            want = ref.bitserial_conv2d_ref(x, wt, a_bits, w_bits, stride, pad, dil, groups)
        assert same(got, expected(want, mode, scale, bias), mode), (
            f"case {i}: mode={mode} binary={binary} a={a_bits} w={w_bits} groups={groups} cg={cg} "
            f"og={og} k=({kh},{kw}) stride={stride} pad={pad} dil={dil} n={n} hw=({h},{w})")


def test_emulated_wgmma_multi_block(emulator):
    """Several row and column blocks, several K chunks through the 6-stage ring (K = 9 * 4 words =
    5 chunks; 1x1 with 1000 channels = 2 chunks), a row tail, W2A2 with its 4 accumulator sets, and
    a binary layer wider than one 256-column block in all three output modes."""
    gen = torch.Generator().manual_seed(23)
    x = values((2, 256, 9, 9), 2, False, gen)
    w = values((70, 256, 3, 3), 2, True, gen)
    want = ref.bitserial_conv2d_ref(x, w, 2, 2, 1, 1)
    for layout in SM90_LAYOUTS[:2]:
        got = emulate(emulator, x, w, False, 2, 2, (1, 1), (1, 1), (1, 1), 1, ("sm90",) + layout)
        assert torch.equal(got.to(torch.int64), want), layout
    xb, wb = values((300, 1000, 1, 1), None, False, gen), values((300, 1000, 1, 1), None, True, gen)
    want = ref.binary_conv2d_ref(xb, wb)
    scale = (torch.rand(300, generator=gen) * 2 - 1) * 0.37
    bias = torch.randn(300, generator=gen) * 3
    for mode in (0, 1, 2):
        s, b = (scale, bias) if mode else (None, None)
        got = emulate(emulator, xb, wb, True, 1, 1, (1, 1), (0, 0), (1, 1), 1, ("sm90", 0, 1),
                      mode, s, b)
        assert same(got, expected(want, mode, s, b), mode), mode


def test_emulated_wgmma_refuses_what_it_cannot_take(emulator):
    """More than 4 plane pairs (W3A2) belong to the sm_80 kernel: the emulated plan says so."""
    gen = torch.Generator().manual_seed(1)
    x, w = values((1, 8, 4, 4), 2, False, gen), values((8, 8, 1, 1), 3, True, gen)
    with pytest.raises(AssertionError, match="bad tile configuration"):
        emulate(emulator, x, w, False, 2, 3, (1, 1), (0, 0), (1, 1), 1, ("sm90", 0, 1))

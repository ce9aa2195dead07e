"""The CUDA conv kernel's index arithmetic and data flow, checked on the CPU.

csrc/cuda/emulate.cpp runs the kernel block by block and lane by lane with the kernel's own index
functions (csrc/cuda/conv_index.h) and emulates ldmatrix and mma.m16n8k256 .and.popc from the PTX
definitions; here its int32 sums must equal the pure-torch reference bit for bit on randomized shapes,
for both tile configurations. It cannot show races or hardware behaviour: scripts/gpu_check.sh does.
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
    subprocess.run([CXX, "-O2", "-std=c++17", "-shared", "-fPIC", "-I", CUDA_DIR,
                    os.path.join(CUDA_DIR, "emulate.cpp"), "-o", so], check=True, timeout=120)
    lib = ctypes.CDLL(so)
    lib.hwq_emulate_conv.restype = ctypes.c_int
    return lib


def emulate(lib, x, w, binary, a_bits, w_bits, stride, pad, dil, groups, config):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = ref.pack_activations_ref(x, None if binary else a_bits, groups).contiguous()
    wp = ref.pack_weights_ref(w, None if binary else w_bits, groups).contiguous()
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = torch.full((n, oh, ow, o), -0x55555556, dtype=torch.int32)  # poison
    i64, i32 = ctypes.c_int64, ctypes.c_int
    bm, bn, wm, wn = config
    rc = lib.hwq_emulate_conv(
        ctypes.c_void_p(xp.data_ptr()), ctypes.c_void_p(wp.data_ptr()), i64(n), i64(h), i64(wd),
        i64(c), i64(o), i64(groups), i32(kh), i32(kw), i32(stride[0]), i32(stride[1]), i32(pad[0]),
        i32(pad[1]), i32(dil[0]), i32(dil[1]), i32(1 if binary else a_bits),
        i32(1 if binary else w_bits), i32(int(binary)), i32(bm), i32(bn), i32(wm), i32(wn),
        ctypes.c_void_p(out.data_ptr()))
    assert rc == 0
    return out.permute(0, 3, 1, 2)


def draw(rng: random.Random, i: int):
    binary = i % 3 == 0
    pairs = [(a, b) for a in range(1, 9) for b in range(1, 9)]
    a_bits, w_bits = (1, 1) if binary else pairs[(i * 7) % 64]
    while True:
        groups = rng.choice([1, 1, 1, 2, 3])
        cg = rng.choice([1, 5, 63, 64, 65, 130, 200, rng.randint(1, 260)])
        og = rng.choice([1, 7, 8, 9, 33, 130, rng.randint(1, 140)])
        k = rng.choice([1, 3, 3, 5])
        kh, kw = (k, k) if rng.random() < 0.85 else (k, rng.choice([1, 2]))
        stride = (rng.choice([1, 2]), rng.choice([1, 2]))
        pad = (rng.randint(0, 3), rng.randint(0, 3))
        dil = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
        n, h, w = rng.randint(1, 3), rng.randint(1, 12), rng.randint(1, 12)
        if h + 2 * pad[0] < dil[0] * (kh - 1) + 1 or w + 2 * pad[1] < dil[1] * (kw - 1) + 1:
            continue
        oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        # Emulation cost ~ blocks * iterations: keep each case well under a second.
        blocks = groups * -(-n * oh * ow // 128) * -(-og // 128)
        iters = a_bits * w_bits * -(-(kh * kw * -(-cg // 64)) // 8)
        if blocks * iters <= 160:
            return binary, a_bits, w_bits, groups, cg, og, kh, kw, stride, pad, dil, n, h, w


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
        got = emulate(emulator, x, wt, binary, a_bits, w_bits, stride, pad, dil, groups, config)
        if binary:
            want = ref.binary_conv2d_ref(x, wt, stride, pad, dil, groups)
        else:
            want = ref.bitserial_conv2d_ref(x, wt, a_bits, w_bits, stride, pad, dil, groups)
        assert torch.equal(got.to(torch.int64), want), (
            f"case {i}: binary={binary} a={a_bits} w={w_bits} groups={groups} cg={cg} og={og} "
            f"k=({kh},{kw}) stride={stride} pad={pad} dil={dil} n={n} hw=({h},{w})")


def test_emulated_multi_block_shape(emulator):
    """Several row and column blocks, several K chunks and a row tail: 300 pixels x 300 channels."""
    gen = torch.Generator().manual_seed(3)
    x = values((3, 130, 10, 10), 2, False, gen)
    w = values((300, 130, 1, 1), 2, True, gen)
    for config in CONFIGS:
        got = emulate(emulator, x, w, False, 2, 2, (1, 1), (0, 0), (1, 1), 1, config)
        assert torch.equal(got.to(torch.int64), ref.bitserial_conv2d_ref(x, w, 2, 2))
    xb, wb = values((2, 300, 6, 6), None, False, gen), values((260, 300, 3, 3), None, True, gen)
    got = emulate(emulator, xb, wb, True, 1, 1, (1, 1), (1, 1), (1, 1), 1, CONFIGS[1])
    assert torch.equal(got.to(torch.int64), ref.binary_conv2d_ref(xb, wb, 1, 1))

"""CUDA kernels on a GPU: torch.ops.hwq.* on CUDA tensors equal the reference bit for bit (a short
version of scripts/gpu_check.sh's checks, sharing its case generators). Skipped without CUDA."""
from __future__ import annotations

import random

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def gpu_check(load_script):
    mod = load_script("gpu_check")
    try:
        mod.cuda_mod.load(jit=False)
    except ImportError:  # not installed with HWQ_CUDA=1: build just in time
        mod.cuda_mod.load(jit=True, build_directory=mod.BUILD)
    return mod


def test_fixed_cases(gpu_check):
    gen = torch.Generator().manual_seed(0)
    for p in gpu_check.FIXED_CASES:  # both kernels (auto = wgmma where it runs)
        assert gpu_check.run_conv_case(p, gen, paths=(0, -1)) is None, p


def test_random_conv_cases(gpu_check):
    rng, gen = random.Random(1), torch.Generator().manual_seed(1)
    for i in range(90):
        p = gpu_check.draw_conv_case(rng, i)
        assert gpu_check.run_conv_case(p, gen, paths=(0, -1)) is None, p


def test_random_pack_cases(gpu_check):
    rng, gen = random.Random(2), torch.Generator().manual_seed(2)
    for _ in range(40):
        case = gpu_check.draw_pack_case(rng, gen)
        assert gpu_check.run_pack_case(case) is None


def test_bad_inputs_raise(gpu_check):
    assert gpu_check.run_error_checks() == []


def test_relu_out_mode_is_refused_on_cuda(gpu_check):
    # out_mode 3 (float then ReLU) exists on the CPU only; the CUDA op says so instead of
    # returning something else.
    x = torch.ones(1, 64, 4, 4, device="cuda")
    xp = torch.ops.hwq.pack_activations(x, 1, True, 1)
    wp = torch.ops.hwq.pack_weights(torch.ones(8, 64, 3, 3, device="cuda"), 1, True, 1)
    with pytest.raises(RuntimeError, match=r"out_mode=3 \(float then ReLU\) is not implemented by "
                                           r"the CUDA kernels yet"):
        torch.ops.hwq.conv2d_packed(xp, wp, 64, 8, [3, 3], 1, 1, True, [1, 1], [1, 1], [1, 1], 1,
                                    None, None, 3)

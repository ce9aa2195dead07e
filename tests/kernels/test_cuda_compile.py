"""CUDA kernels without a GPU: the .cu files compile for sm_80 and sm_90a (nvcc -c, compile only), and
the op schemas hwq/kernels/cuda.py defines (for machines without hwq._C) match csrc/hwq_ops.cpp.
Skipped where no CUDA toolkit is found. The GPU checks themselves are scripts/gpu_check.sh and
tests/kernels/test_cuda_ops.py (skipped without a GPU).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from hwq.kernels import cuda as hcuda

HOME = hcuda.find_cuda_home()
NVCC = os.path.join(HOME, "bin", "nvcc") if HOME else None
needs_nvcc = pytest.mark.skipif(NVCC is None or not os.path.exists(NVCC or ""),
                                reason="no CUDA toolkit (include/cuda_runtime.h) found")


def _compile(src: str, arch: str, out_dir: str) -> subprocess.CompletedProcess:
    out = os.path.join(out_dir, f"{os.path.basename(src)}.{arch}.o")
    # -Xptxas -O1: this test is about whether the code compiles for the target (PTX features such as
    # mma .and.popc, cp.async, ldmatrix); ptxas at -O3 would triple its time for no extra coverage.
    cmd = [NVCC, "-c", "-std=c++17", "-O3", "-Xptxas", "-O1", *hcuda.gencode_flags((arch,)),
           "-Werror", "all-warnings", "-I", hcuda.CUDA_DIR, src, "-o", out]
    # 15 minutes: wall time on a busy 2-core machine (a free one needs well under a minute each)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@needs_nvcc
def test_cu_files_compile_for_sm80_and_sm90a():
    jobs = [(src, arch) for src in hcuda.KERNEL_SOURCES for arch in hcuda.DEFAULT_ARCHS]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda j: _compile(j[0], j[1], tmp), jobs))
    failed = [(j, r.stderr[-3000:]) for j, r in zip(jobs, results) if r.returncode != 0]
    assert not failed, "nvcc failed:\n" + "\n".join(f"{j}: {err}" for j, err in failed)


def test_python_schemas_match_the_cpp_library():
    import hwq.kernels  # noqa: F401  (imports hwq._C when built)
    if not hasattr(torch.ops.hwq, "conv2d_packed"):
        pytest.skip("hwq._C not built")
    for name, schema in hcuda.SCHEMAS.items():
        op = getattr(torch.ops.hwq, name).default
        assert str(op._schema) == "hwq::" + schema


def test_gencode_flags_and_bad_arch():
    assert hcuda.gencode_flags(("80", "90a")) == ["-gencode=arch=compute_80,code=sm_80",
                                                  "-gencode=arch=compute_90a,code=sm_90a"]
    with pytest.raises(ValueError, match="arch 'sm_90'"):
        hcuda.gencode_flags(("sm_90",))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_loads_on_a_gpu_machine():
    hcuda.load(jit=True)
    assert hcuda.is_loaded()


def _binding_compile_cmd(out: str) -> list[str] | None:
    """g++ command compiling the CUDA binding (csrc/cuda/hwq_cuda.cpp, the real CUDA build, not the
    host-check one) with every warning an error, or None where a header folder is missing."""
    from torch.utils import cpp_extension
    import sysconfig
    cuda_inc = os.path.join(HOME, "include") if HOME else None
    py_inc = sysconfig.get_paths()["include"]
    if not (cuda_inc and os.path.isfile(os.path.join(py_inc, "Python.h"))):
        return None
    incs = [f"-isystem{p}" for p in cpp_extension.include_paths() + [cuda_inc, py_inc]]
    # -O2: gcc finds infinite recursion (-Winfinite-recursion, in -Wall) only when optimizing.
    # c++20: the newest torch headers need it (torch 2.11's also compile with it).
    return ["g++", "-std=c++20", "-O2", "-c", "-Wall", "-Wextra", "-Werror", *incs,
            f"-I{hcuda.CUDA_DIR}", os.path.join(hcuda.CUDA_DIR, "hwq_cuda.cpp"), "-o", out]


@needs_nvcc
def test_cuda_binding_compiles_without_warnings():
    """The binding's host code compiles warning-free: its first H200 run hung because the stream
    getter called itself (`current_stream() { return current_stream(); }`), which -Wall -O2
    reports as infinite recursion."""
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = _binding_compile_cmd(os.path.join(tmp, "hwq_cuda.o"))
        if cmd is None:
            pytest.skip("no Python.h or CUDA headers to compile the binding against")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, "g++ failed on csrc/cuda/hwq_cuda.cpp:\n" + r.stderr[-4000:]

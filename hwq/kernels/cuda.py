"""The CUDA kernels (csrc/cuda/): building or loading them, and choosing their tile configuration.

Loading registers CUDA implementations of torch.ops.hwq.pack_activations / pack_weights /
conv2d_packed: the same ops, packed layouts and results as the CPU kernels, on CUDA tensors
(docs/cuda.md). They are built by `HWQ_CUDA=1 pip install --no-build-isolation -e .` as hwq._C_cuda,
or just in time by ``load(jit=True)`` (torch.utils.cpp_extension, about a minute).

This module imports nothing from hwq at import time (only torch), so scripts/gpu_check.py can load it
by path on a machine where hwq is not installed.
"""
from __future__ import annotations

import glob
import os
import shutil

import torch

# The schemas of TORCH_LIBRARY(hwq) in csrc/hwq_ops.cpp (tests/kernels/test_cuda_compile.py checks
# that they match when hwq._C is built). Defined from Python only where hwq._C is missing.
SCHEMAS = {
    "pack_activations": "pack_activations(Tensor x, int bits, bool binary, int groups) -> Tensor",
    "pack_weights": "pack_weights(Tensor w, int bits, bool binary, int groups) -> Tensor",
    "conv2d_packed": (
        "conv2d_packed(Tensor x, Tensor w, int in_channels, int out_channels, int[2] kernel_size, "
        "int a_bits, int w_bits, bool binary, int[2] stride, int[2] padding, int[2] dilation, "
        "int groups, Tensor? scale, Tensor? bias, int out_mode) -> Tensor"),
}

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_DIR = os.path.join(REPO, "csrc", "cuda")
# conv.cu: the sm_80 mma.sync kernel and the dispatcher; conv_sm90.cu: the sm_90a wgmma kernel.
KERNEL_SOURCES = [os.path.join(CUDA_DIR, f) for f in ("conv.cu", "conv_sm90.cu", "pack.cu")]
SOURCES = [os.path.join(CUDA_DIR, "hwq_cuda.cpp")] + KERNEL_SOURCES

# sm_80: mma.sync b1 AND (Ampere and later); sm_90a: Hopper's own target (wgmma needs the "a").
DEFAULT_ARCHS = ("80", "90a")

_library = None  # the torch.library.Library that defines the schemas, when hwq._C is missing
LOADED_FROM: str | None = None


def gencode_flags(archs=DEFAULT_ARCHS) -> list[str]:
    """nvcc -gencode flags for compute capabilities like "80" or "90a" (machine code, no PTX)."""
    flags = []
    for a in archs:
        if not (isinstance(a, str) and a.rstrip("a").isdigit()):
            raise ValueError(f"arch {a!r} is not accepted: expected strings like '80' or '90a'")
        flags.append(f"-gencode=arch=compute_{a},code=sm_{a}")
    return flags


def find_cuda_home() -> str | None:
    """The CUDA toolkit folder (holding include/cuda_runtime.h), or None.

    CUDA_HOME / CUDA_PATH first; then the folder above the real nvcc (the `nvcc` on PATH may be a
    wrapper script, whose folder holds no headers: its `exec` line is followed); then
    /usr/local/cuda*.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        try:
            with open(real, "rb") as f:
                head = f.read(4096)
            if head.startswith(b"#!"):
                for line in head.decode(errors="replace").splitlines():
                    parts = line.split()
                    if parts and parts[0] == "exec" and len(parts) > 1 and parts[1].endswith("nvcc"):
                        candidates.append(os.path.dirname(os.path.dirname(parts[1])))
        except OSError:
            pass
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "include", "cuda_runtime.h")):
            return c
    return None


def include_dirs() -> list[str]:
    """Header folders of the binding: csrc/cuda, and the CUDA headers pip's CUDA wheels ship (which
    ATen/cuda/*.h include, e.g. cusparse.h, and a bare toolkit may lack)."""
    dirs = [CUDA_DIR]
    wheel_inc = os.path.join(os.path.dirname(torch.__path__[0]), "nvidia", "cu13", "include")
    if os.path.isdir(wheel_inc):
        dirs.append(wheel_inc)
    return dirs


def _define_schemas() -> None:
    """Make torch.ops.hwq.* exist: import hwq._C (schemas + CPU kernels) or define the schemas."""
    global _library
    if hasattr(torch.ops.hwq, "conv2d_packed"):
        return
    try:
        import hwq._C  # noqa: F401
    except Exception:  # not built (or no hwq package on this machine): schemas only
        pass
    if hasattr(torch.ops.hwq, "conv2d_packed"):
        return
    _library = torch.library.Library("hwq", "DEF")
    for schema in SCHEMAS.values():
        _library.define(schema)


def is_loaded() -> bool:
    """Whether torch.ops.hwq.conv2d_packed has a CUDA kernel in this process."""
    return (hasattr(torch.ops.hwq, "conv2d_packed")
            and torch._C._dispatch_has_kernel_for_dispatch_key("hwq::conv2d_packed", "CUDA"))


def load(jit: bool = False, build_directory: str | None = None, archs=DEFAULT_ARCHS,
         verbose: bool = False) -> str:
    """Register the CUDA kernels; returns where they came from ("hwq._C_cuda" or the JIT .so path).

    jit False: import the built hwq._C_cuda (HWQ_CUDA=1 pip install ...), else raise ImportError.
    jit True: build csrc/cuda/* with torch.utils.cpp_extension.load (-O3, -gencode per ``archs``)
    into ``build_directory`` (torch's default cache when None) and load it; needs nvcc.
    """
    global LOADED_FROM
    _define_schemas()
    if is_loaded():
        return LOADED_FROM or "already registered"
    if not jit:
        import hwq._C_cuda  # noqa: F401  (ImportError when not built with HWQ_CUDA=1)
        LOADED_FROM = "hwq._C_cuda"
        return LOADED_FROM
    from torch.utils import cpp_extension
    home = find_cuda_home()
    if home is None:
        raise RuntimeError("no CUDA toolkit found (no include/cuda_runtime.h under CUDA_HOME, "
                           "CUDA_PATH, nvcc's folder or /usr/local/cuda*): set CUDA_HOME")
    os.environ["CUDA_HOME"] = home
    cpp_extension.CUDA_HOME = home  # torch reads it once at import; a wrapper nvcc misleads it
    includes = include_dirs()
    if build_directory:
        os.makedirs(build_directory, exist_ok=True)
    cpp_extension.load(
        name="hwq_C_cuda", sources=SOURCES, extra_include_paths=includes,
        extra_cflags=["-O3", "-g0"],
        extra_cuda_cflags=["-O3"] + gencode_flags(archs),
        build_directory=build_directory, is_python_module=False, verbose=verbose)
    LOADED_FROM = os.path.join(build_directory or "torch extensions cache", "hwq_C_cuda.so")
    return LOADED_FROM


def set_config(config: int) -> None:
    """Tile configuration of conv2d_packed on CUDA from now on: -1 = per-shape choice (default),
    else an index into config_names(). Every configuration returns the same numbers."""
    torch.ops.hwq_cuda.set_config(config)


def get_config() -> int:
    return int(torch.ops.hwq_cuda.get_config())


def config_names() -> list[str]:
    """Names "BMxBN/WMxWN": block tile and warp tile, in output pixels x output channels (of the
    sm_80 mma.sync kernel; the wgmma kernel picks its tile from the product)."""
    return list(torch.ops.hwq_cuda.config_names())


def set_path(path: int) -> None:
    """Kernel of conv2d_packed on CUDA from now on: -1 = the sm_90a wgmma kernel where it can run
    (an sm_90a build on a compute capability 9.0 GPU, out_mode 0..2, a_bits * w_bits <= 4) and the
    sm_80 mma.sync kernel elsewhere (default); 0 = always mma.sync; 1 = wgmma (an error where it
    cannot run); 2 = wgmma with unswizzled shared-memory tiles (a check of the tile layout).
    Every path returns the same numbers."""
    torch.ops.hwq_cuda.set_path(path)


def get_path() -> int:
    return int(torch.ops.hwq_cuda.get_path())


def path_names() -> list[str]:
    """Names of paths 0, 1, 2: "mma.sync", "wgmma", "wgmma-noswizzle"."""
    return list(torch.ops.hwq_cuda.path_names())

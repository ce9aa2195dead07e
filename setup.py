"""Builds the C++ extension hwq._C; everything else about the package is in setup.cfg.

Install with `pip install --no-build-isolation -e .` after torch (scripts/setup_env.sh): the build
imports the installed torch for its headers and flags. No -march=native: the kernels pick AVX-512
VPOPCNTDQ / AVX-512BW / AVX2 / scalar code at run time (csrc/isa.h), so one build runs on any x86-64.
"""
import glob
import os

from setuptools import setup

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError as err:  # pragma: no cover - torch is installed before hwq (setup_env.sh)
    raise SystemExit(
        f"building hwq needs torch installed first ({err}): run `pip install torch` and then "
        "`pip install --no-build-isolation -e .`") from err

here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(os.path.relpath(p, here) for p in glob.glob(os.path.join(here, "csrc", "*.cpp")))

extensions = [CppExtension(
    "hwq._C", sources,
    # -g0: Python's default -g makes the .so 50x larger and the build slower.
    # -ffp-contract=off: a*b+c is never fused into an FMA, so the per-ISA copies of the float
    # epilogues (and the torch reference) round alike.
    extra_compile_args=["-O3", "-g0", "-fopenmp", "-ffp-contract=off"],
    extra_link_args=["-fopenmp"])]


def cuda_extension():
    """hwq._C_cuda (csrc/cuda, docs/cuda.md), only with HWQ_CUDA=1; an error if no toolkit is found.
    The toolkit lookup lives in hwq/kernels/cuda.py, loaded by path (it imports only torch)."""
    import importlib.util

    from torch.utils import cpp_extension
    spec = importlib.util.spec_from_file_location("hwq_cuda_build", os.path.join(
        here, "hwq", "kernels", "cuda.py"))
    hcuda = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hcuda)
    home = hcuda.find_cuda_home()
    if home is None:
        raise SystemExit("HWQ_CUDA=1 but no CUDA toolkit was found (include/cuda_runtime.h under "
                         "CUDA_HOME, nvcc's folder or /usr/local/cuda*): set CUDA_HOME")
    os.environ["CUDA_HOME"] = home
    cpp_extension.CUDA_HOME = home  # torch guessed it at import; a wrapper nvcc misleads it
    archs = os.environ.get("HWQ_CUDA_ARCHS", "80,90a").split(",")
    return cpp_extension.CUDAExtension(
        "hwq._C_cuda", [os.path.relpath(p, here) for p in hcuda.SOURCES],
        include_dirs=hcuda.include_dirs(),
        extra_compile_args={"cxx": ["-O3", "-g0"], "nvcc": ["-O3"] + hcuda.gencode_flags(archs)})


if os.environ.get("HWQ_CUDA") == "1":  # the CPU build is unchanged by default
    extensions.append(cuda_extension())

setup(
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
)

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

setup(
    ext_modules=[CppExtension(
        "hwq._C", sources,
        # -g0: Python's default -g makes the .so 50x larger and the build slower.
        # -ffp-contract=off: a*b+c is never fused into an FMA, so the per-ISA copies of the float
        # epilogues (and the torch reference) round alike.
        extra_compile_args=["-O3", "-g0", "-fopenmp", "-ffp-contract=off"],
        extra_link_args=["-fopenmp"])],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
)

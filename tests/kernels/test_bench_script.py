"""scripts/bench_kernels.py's measuring helpers (not its timings, which tests never assert): the
fp32 ceiling is the faster of torch.mm and oneDNN's GEMM and says which it used; minor page
faults are counted per call."""
import importlib.util
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_kernels", os.path.join(ROOT, "scripts", "bench_kernels.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fp32_ceiling_names_its_gemm_and_is_the_faster():
    b = _bench()
    c = b.ceilings(repeats=1)
    assert c["fp32"] > 0 and c["clock"] > 0 and c["binary"] > 0
    # a oneDNN ceiling is only taken when it beat torch.mm, whose rate it then quotes
    assert c["fp32_how"].startswith("torch.mm") or (
        c["fp32_how"].startswith("oneDNN fp32 GEMM") and "torch.mm:" in c["fp32_how"])


def test_minor_faults_counts_fresh_pages():
    b = _bench()
    size = 64 * 2 ** 20  # above glibc's largest mmap threshold: mapped afresh, faulted page by page

    def touch():
        torch.ones(size // 4)

    faults = b.minor_faults({"touch": touch, "nothing": lambda: None})
    assert set(faults) == {"touch", "nothing"}
    assert all(isinstance(v, int) and v >= 0 for v in faults.values())
    assert faults["touch"] > faults["nothing"]

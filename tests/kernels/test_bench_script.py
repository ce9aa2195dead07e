"""scripts/bench_kernels.py's measuring helpers (not its timings, which tests never assert): the
fp32 ceiling is the faster of torch.mm and oneDNN's GEMM and says which it used; minor page
faults are counted per call."""


def test_fp32_ceiling_names_its_gemm_and_is_the_faster(load_script):
    b = load_script("bench_kernels")
    c = b.ceilings(repeats=1)
    assert c["fp32"] > 0 and c["clock"] > 0 and c["binary"] > 0
    # a oneDNN ceiling is only taken when it beat torch.mm, whose rate it then quotes
    assert c["fp32_how"].startswith("torch.mm") or (
        c["fp32_how"].startswith("oneDNN fp32 GEMM") and "torch.mm:" in c["fp32_how"])


def test_minor_faults_counts_fresh_pages(load_script):
    """A fresh anonymous mapping, written page by page, faults whatever allocator the process
    uses (a torch tensor need not: jemalloc, or glibc under MALLOC_MMAP_MAX_=0, reuses its heap).
    Where the kernel counts no faults at all, the helper must say so with {} rather than 0."""
    import mmap
    b = load_script("bench_kernels")
    size = 8 * 2 ** 20

    def touch():
        buf = mmap.mmap(-1, size)
        buf.write(b"\1" * size)
        buf.close()

    faults = b.minor_faults({"touch": touch, "nothing": lambda: None})
    if not b.faults_counted():
        assert faults == {}
        return
    assert set(faults) == {"touch", "nothing"}
    assert all(isinstance(v, int) and v >= 0 for v in faults.values())
    # at least one fault per 2 MiB huge page, however the kernel backs the mapping
    assert faults["touch"] >= size // 2 ** 21
    assert faults["touch"] > faults["nothing"]

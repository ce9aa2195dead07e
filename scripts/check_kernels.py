"""Device check without pytest: every kernel path (ISA) of hwq._C bit-exact against the pure-torch
reference on seeded random conv/linear cases (the shapes of tests/kernels), for machines whose CPU
has a path this one lacks (e.g. AVX-512 VPOPCNTDQ). Prints one line per path; exits 1 on a mismatch.

    python scripts/check_kernels.py [--cases 500]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import hwq.kernels as K  # noqa: E402
from hwq.kernels import reference as R  # noqa: E402
from kernels.cases import binary_tensors, bitserial_tensors, conv_cases  # noqa: E402


def _float_epilogues_match(binary, c, x, w, ref) -> bool:
    """conv2d_packed's float outputs (scale/bias, + ReLU, + residual + ReLU through
    conv2d_packed_add) against torch's float32 arithmetic on the reference sums: the same multiply
    then add, so equal bit for bit (the SIMD paths write these with non-temporal stores)."""
    gen = torch.Generator().manual_seed(ref.numel())
    o = ref.shape[1]
    scale, bias = torch.randn(o, generator=gen), torch.randn(o, generator=gen)
    want = ref.float() * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    residual = torch.randn(ref.shape, generator=gen)
    kw = c.conv_kwargs()
    px = K.pack_activations(x, None if binary else c.a_bits, kw["groups"])
    pw = K.pack_weights(w, None if binary else c.w_bits, kw["groups"])
    pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
    args = (px.data, pw.data, x.shape[1], o, list(w.shape[2:]), 1 if binary else c.a_bits,
            1 if binary else c.w_bits, binary, pair(kw["stride"]), pair(kw["padding"]),
            pair(kw["dilation"]), kw["groups"], scale, bias)
    got = torch.ops.hwq.conv2d_packed(*args, K.OutMode.FLOAT)
    relu = torch.ops.hwq.conv2d_packed(*args, K.OutMode.FLOAT_RELU)
    added = torch.ops.hwq.conv2d_packed_add(*args, residual, True)
    return (torch.equal(got, want) and torch.equal(relu, torch.relu(want))
            and torch.equal(added, torch.relu(want + residual)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    print("available paths:", K.available_isas(), "default:", K.current_isa())
    gen = torch.Generator().manual_seed(0)
    data = []
    for binary, cases in ((True, conv_cases(args.cases, seed=21)),
                          (False, conv_cases(args.cases, seed=22, max_cost=1_000_000))):
        for c in cases:
            x, w = (binary_tensors if binary else bitserial_tensors)(c, gen)
            ref = (R.binary_conv2d_ref(x, w, **c.conv_kwargs()) if binary else
                   R.bitserial_conv2d_ref(x, w, c.a_bits, c.w_bits, **c.conv_kwargs()))
            data.append((binary, c, x, w, ref))
    bad = 0
    for isa in K.available_isas():
        t0 = time.perf_counter()
        n_bad = 0
        with K.use_isa(isa):
            for binary, c, x, w, ref in data:
                y = (K.binary_conv2d(x, w, **c.conv_kwargs()) if binary else
                     K.bitserial_conv2d(x, w, c.a_bits, c.w_bits, **c.conv_kwargs()))
                if not torch.equal(y.long(), ref):
                    n_bad += 1
                    if n_bad <= 3:
                        print("  MISMATCH", isa, "binary" if binary else "bitserial", c)
                if not _float_epilogues_match(binary, c, x, w, ref):
                    n_bad += 1
                    if n_bad <= 3:
                        print("  MISMATCH", isa, "float epilogue", c)
            xs = torch.randn(2, 200, 5, 7).to(memory_format=torch.channels_last)
            if not torch.equal(K.pack_activations(xs).data, R.pack_activations_ref(xs, None)):
                n_bad += 1
                print("  MISMATCH", isa, "sign packing")
        print(f"{isa:<18} {len(data)} conv cases (int32 sums and float epilogues) + sign packing: "
              f"{'OK' if n_bad == 0 else f'{n_bad} MISMATCHES'} ({time.perf_counter() - t0:.1f} s)")
        bad += n_bad
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

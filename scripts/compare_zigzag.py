"""hwq's weight-stationary systolic array against ZigZag (KU Leuven's design-space exploration
framework, ``pip install zigzag-dse``) on the same design and the same layers: a table per layer
and the network totals (hwq.hw.zigzag writes ZigZag's workload, hardware and mapping files).

    .venv/bin/python scripts/compare_zigzag.py [--workload resnet50] [--rows 32] [--cols 32]
                                               [--bits 8] [--layers N] [--workdir DIR]

Columns: MACs; cycles: hwq (SCALE-Sim's formula), hwq's streaming part (less (2R + C - 2) fill
and drain per fold), ZigZag's compute cycles (ideal temporal cycles plus stalls, latency_total0)
and its total (plus loading, offloading and drain, latency_total2); energy in uJ: hwq's on-chip
and off-chip, ZigZag's buffer (reads into the array, outputs and partial sums, fills from DRAM)
and DRAM; the ratio of the totals (MAC energy included, equal in both). docs/mapper.md explains
where and why they differ.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hwq import workloads  # noqa: E402
from hwq._table import text_table  # noqa: E402
from hwq.hw import zigzag  # noqa: E402
from hwq.hw.systolic import SystolicConfig  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="resnet50", choices=workloads.NAMES)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--bits", type=int, default=8, help="w_bits = a_bits of every layer")
    ap.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    ap.add_argument("--workdir", default=None, help="keep ZigZag's inputs and outputs here")
    a = ap.parse_args(argv)
    p = workloads.build(a.workload, w_bits=a.bits, a_bits=a.bits)
    if a.layers:
        p.layers = p.layers[:a.layers]
    cfg = SystolicConfig(rows=a.rows, cols=a.cols, dataflow="ws", bits=a.bits, storage_bits=a.bits)
    with tempfile.TemporaryDirectory() as tmp:
        rows = zigzag.compare(p, cfg, workdir=a.workdir or tmp)
    uj = 1e-6
    body = []
    for r in rows:
        body.append([r.name, f"{r.macs:,}", f"{r.hwq_cycles:,.0f}", f"{r.hwq_stream_cycles:,}",
                     f"{r.zz_latency0:,.0f}", f"{r.zz_latency2:,.0f}",
                     f"{r.hwq_cycles / r.zz_latency2:.3f}",
                     f"{r.hwq_onchip_pj * uj:.2f}", f"{r.zz_buffer_pj * uj:.2f}",
                     f"{r.hwq_offchip_pj * uj:.1f}", f"{r.zz_dram_pj * uj:.1f}",
                     f"{r.hwq_energy_pj / r.zz_energy_pj:.3f}"])
    t = {f: sum(getattr(r, f) for r in rows) for f in
         ("macs", "hwq_cycles", "hwq_stream_cycles", "zz_latency0", "zz_latency2",
          "hwq_onchip_pj", "zz_buffer_pj", "hwq_offchip_pj", "zz_dram_pj", "hwq_energy_pj",
          "zz_energy_pj", "hwq_read_bits", "zz_read_bits", "zz_read_pj", "zz_output_pj",
          "zz_fill_pj", "hwq_compute_pj", "zz_mac_pj")}
    total = ["total", f"{t['macs']:,}", f"{t['hwq_cycles']:,.0f}", f"{t['hwq_stream_cycles']:,}",
             f"{t['zz_latency0']:,.0f}", f"{t['zz_latency2']:,.0f}",
             f"{t['hwq_cycles'] / t['zz_latency2']:.3f}",
             f"{t['hwq_onchip_pj'] * uj:.2f}", f"{t['zz_buffer_pj'] * uj:.2f}",
             f"{t['hwq_offchip_pj'] * uj:.1f}", f"{t['zz_dram_pj'] * uj:.1f}",
             f"{t['hwq_energy_pj'] / t['zz_energy_pj']:.3f}"]
    head = ["layer", "MACs", "hwq cyc", "hwq stream", "zz cyc0", "zz cyc2", "hwq/zz",
            "hwq on uJ", "zz buf uJ", "hwq off uJ", "zz DRAM uJ", "E hwq/zz"]
    print(f"{p.name} at {a.bits} bits on a {a.rows} x {a.cols} weight-stationary systolic array")
    print(text_table(head, body, total=total))
    perfect = [r for r in rows if r.perfect]
    print(f"\nlayers that fill the array (1 x 1, C % rows = K % cols = 0): {len(perfect)} of "
          f"{len(rows)}; hwq streaming cycles = ZigZag compute cycles on "
          f"{sum(r.hwq_stream_cycles == r.zz_latency0 for r in perfect)} of them")
    print(f"weight and input reads into the array: hwq {t['hwq_read_bits'] / 8e6:.3f} MB, "
          f"ZigZag {t['zz_read_bits'] / 8e6:.3f} MB "
          f"({t['hwq_read_bits'] / t['zz_read_bits'] - 1:+.4%})")
    print(f"ZigZag's buffer energy: reads {t['zz_read_pj'] * uj:.1f} uJ, outputs and partial "
          f"sums {t['zz_output_pj'] * uj:.1f} uJ, fills from DRAM {t['zz_fill_pj'] * uj:.1f} uJ;"
          f" hwq's on-chip {t['hwq_onchip_pj'] * uj:.1f} uJ")
    print(f"MAC energy: hwq {t['hwq_compute_pj'] * uj:.1f} uJ, ZigZag {t['zz_mac_pj'] * uj:.1f} uJ;"
          f" DRAM: hwq {t['hwq_offchip_pj'] * uj:.1f} uJ, ZigZag {t['zz_dram_pj'] * uj:.1f} uJ "
          f"({t['hwq_offchip_pj'] / t['zz_dram_pj'] - 1:+.3%})")


if __name__ == "__main__":
    main()

"""FINN against BNN-PYNQ's published foldings, Loom's fragmentation, areas and the pipeline
timing of the report."""
import math

import pytest

import hwq
from hwq.workloads.builder import single
from hwq.workloads.finn_bench import EXT_LATENCY, FOLDING


@pytest.mark.parametrize("name", ["finn_cnv", "finn_lfc"])
def test_finn_reproduces_bnn_pynq_config_headers(name):
    # Xilinx/BNN-PYNQ cnvW1A1 / lfcW1A1 hw/config.h: each layer's PE, SIMD and "Ext Latency"
    r = hwq.map(hwq.workloads.build(name), "finn", folding=FOLDING[name])
    assert {l.name: l.cycles for l in r.layers} == EXT_LATENCY[name]
    slowest = max(EXT_LATENCY[name].values())
    # a pipeline: one image per slowest-layer interval at 100 MHz, latency = the sum of layers
    assert r.total.fps == pytest.approx(100e6 / slowest)
    assert r.total.latency_s == pytest.approx(sum(EXT_LATENCY[name].values()) / 100e6)
    assert r.total.seconds == pytest.approx(1 / r.total.fps)


def test_finn_cnv_frame_rate():
    # CNV's slowest layers (fc0 and fc1) take 32,768 cycles each: 3,052 images/s at 100 MHz
    r = hwq.map(hwq.workloads.build("finn_cnv"), "finn", folding=FOLDING["finn_cnv"])
    assert round(r.total.fps) == 3052
    # the BNN-PYNQ overlay's 26,072 LUTs are the area calibration point
    from hwq.hw.finn import MM2_PER_LUT
    assert r.total.area_mm2 == pytest.approx(26072 * MM2_PER_LUT, rel=1e-9)


def test_sequential_designs_sum_their_layers():
    p = hwq.workloads.build("alexnet")
    r = hwq.map(p, "stripes")
    assert r.total.seconds == pytest.approx(sum(l.seconds for l in r.layers))
    assert r.total.latency_s == pytest.approx(r.total.seconds)
    assert r.total.fps == pytest.approx(1 / r.total.seconds)
    b = hwq.map(hwq.workloads.build("bf_lenet5"), "bitfusion")
    # an image waits for its batch of 16
    assert b.total.latency_s == pytest.approx(16 * b.total.seconds)


@pytest.mark.parametrize("hw", [7, 14, 15])
def test_loom_pays_stripes_fragmentation(hw):
    # at 16-bit weights Loom is exactly Stripes (Ox*Oy = 49, 196, 225 leave the last group of
    # 16 windows partly idle on both)
    p = single(c=64, k=256, hw=hw, a_bits=9, w_bits=16)
    s = hwq.map(p, "stripes").layers[0].cycles
    assert hwq.map(p, "loom").layers[0].cycles == s
    p[0].w_bits = 8
    assert hwq.map(p, "loom").layers[0].cycles == pytest.approx(s / 2)


def test_every_design_has_an_area():
    p = hwq.workloads.build("alexnet")
    for arch in hwq.hw.ARCHS:
        a = hwq.map(p, arch).total.area_mm2
        assert math.isfinite(a) and a > 0, arch
    # published areas at the defaults
    assert hwq.hw.get("dadiannao").default_config().area_mm2() == pytest.approx(67.73)
    assert hwq.hw.get("stripes").default_config().area_mm2() == pytest.approx(67.73 * 1.32)
    assert hwq.hw.get("diannao").default_config().area_mm2() == pytest.approx(3.02)
    assert hwq.hw.get("systolic_ws").default_config().replace(
        rows=256, cols=256).area_mm2() == pytest.approx(331)


@pytest.mark.parametrize("bad", [{"freq_hz": math.inf}, {"freq_hz": math.nan},
                                 {"energy": {"dram_pj_per_64b": math.inf}}])
def test_non_finite_options_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        hwq.map(hwq.workloads.build("alexnet"), "stripes", **bad)

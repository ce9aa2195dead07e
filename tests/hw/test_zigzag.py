"""hwq's weight-stationary systolic array against ZigZag (KU Leuven; ``pip install zigzag-dse``),
run in the test on ZigZag's description of the same array (hwq.hw.zigzag) and five ResNet-50
layers: a 1 x 1 layer that fills the array, a 3 x 3 layer, a 3 x 3 stride-2 layer, a 1 x 1
stride-2 downsampling shortcut and the FC layer (K = 1000, not a multiple of the columns). The two models share the array, the loop order and the MAC energy;
what each derives from them is compared where they should agree:

* MACs: both count K * C * OY * OX * FY * FX from the layer's shape;
* cycles: ZigZag's compute cycles (ideal temporal cycles plus stalls) are the windows streamed
  once per fold. hwq's SCALE-Sim formula is that plus (2R + C - 2) cycles of fill and drain per
  fold, exactly; the 3 x 3 layer has R * S * ceil(C / rows) folds of the reduction in ZigZag
  (only C is unrolled on the rows) and ceil(C * R * S / rows) in hwq (im2col), exactly;
* buffer reads into the array: hwq's first-order reuse (a weight read once, an input once per
  column fold) against ZigZag's access counts from the loop nest: equal, up to one ZigZag port
  word per operand (its counts are whole words);
* DRAM traffic: each tensor crosses once in both (a 24 MiB buffer holds any layer), the input as
  the pixels the windows read (hwq.hw.cost.touched_inputs; a quarter of the shortcut's input).
  Equal, up to one ZigZag port word per tensor, on every layer but the 3 x 3 stride-2 one, where
  ZigZag takes both sides' padding off the 57 rows the windows span although the last window does
  not reach the bottom padding: it reads 55 x 55 pixels, hwq (and PyTorch) 56 x 56, a difference
  worked out by hand below.
The rest (ZigZag's partial-sum traffic through the buffer, its fills of the buffer from DRAM,
its once-per-layer drain) has no counterpart in hwq's model; docs/mapper.md gives the numbers.
"""
from __future__ import annotations

import copy
import importlib.util

import pytest

from hwq import workloads
from hwq.hw import zigzag
from hwq.hw.systolic import SystolicConfig

needs_zigzag = pytest.mark.skipif(
    importlib.util.find_spec("zigzag") is None,
    reason="ZigZag is not installed (pip install 'hwq[zigzag]', the zigzag-dse package)")

LAYERS = ("layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv2", "layer2.0.downsample.0", "fc")
# input values hwq reads from DRAM and ZigZag does not (by hand): the 3 x 3 stride-2 layer's
# 128 channels x (56^2 - 55^2) pixels; none elsewhere
DRAM_VALUES_ONLY_HWQ = {"layer2.0.conv2": 128 * (56 * 56 - 55 * 55)}


def _profile():
    p = workloads.build("resnet50", w_bits=8, a_bits=8)
    p = copy.deepcopy(p)
    p.layers = [l for l in p.layers if l.name in LAYERS]
    return p


@needs_zigzag
@pytest.mark.parametrize("rows,cols", [(32, 32), (16, 64)])
def test_zigzag_agrees_where_the_models_should(tmp_path, rows, cols):
    cfg = SystolicConfig(rows=rows, cols=cols, dataflow="ws")
    p = _profile()
    got = {r.name: r for r in zigzag.compare(p, cfg, workdir=tmp_path)}
    assert sorted(got) == sorted(LAYERS)
    shapes = {l.name: l for l in p.layers}
    for name, r in got.items():
        l = shapes[name]
        kh, kw = l.kernel
        assert r.zz_macs == r.macs == l.expected_macs()
        # no memory stalls in ZigZag: the ports are wide, as hwq's model assumes
        assert r.zz_latency0 == r.zz_ideal_temporal_cycles
        # hwq = streaming + SCALE-Sim's fill and drain per fold (by hand)
        folds = -(-l.in_channels * kh * kw // rows) * -(-l.out_channels // cols)
        assert r.folds == folds
        assert r.hwq_cycles == r.hwq_stream_cycles + folds * (2 * rows + cols - 2)
        zz_folds = kh * kw * -(-l.in_channels // rows) * -(-l.out_channels // cols)
        assert r.zz_ideal_temporal_cycles == l.windows * zz_folds
        assert r.zz_mac_pj == pytest.approx(r.hwq_compute_pj, rel=1e-12)
        assert abs(r.hwq_read_bits - r.zz_read_bits) <= 2 * zigzag.PORT_BITS, name
        # DRAM: both charge hwq's pJ per bit; ZigZag counts whole port words per tensor (W, I, O)
        dram_bits = (r.hwq_offchip_pj - r.zz_dram_pj) / cfg.energy.dram_pj_per_bit
        only_hwq = DRAM_VALUES_ONLY_HWQ.get(name, 0) * cfg.storage_bits
        assert abs(dram_bits - only_hwq) <= 3 * zigzag.PORT_BITS, (name, dram_bits, only_hwq)
    short = got["layer2.0.downsample.0"]  # a quarter of the input: 256 x 28 x 28, 6.4 Mbit
    assert short.zz_dram_pj == pytest.approx(short.hwq_offchip_pj, rel=1e-3)
    one = got["layer1.0.conv1"]  # 64 -> 64 channels: fills a 32 x 32 or 16 x 64 array
    assert one.perfect
    assert one.hwq_stream_cycles == one.zz_latency0 == one.macs // (rows * cols)
    # the 3 x 3 layer: ZigZag unrolls only C = 64 on the rows, hwq the 576-long reduction
    three = got["layer1.0.conv2"]
    assert not three.perfect
    assert three.zz_latency0 / three.hwq_stream_cycles == pytest.approx(
        9 * -(-64 // rows) / -(-576 // rows))


@needs_zigzag
def test_compare_refuses_what_it_cannot_describe(tmp_path):
    p = _profile()
    with pytest.raises(ValueError, match="dataflow"):
        zigzag.hardware(SystolicConfig(dataflow="os"), 1.0)
    with pytest.raises(ValueError, match="mac_pj"):
        zigzag.hardware(SystolicConfig(), float("nan"))
    wide = workloads.build("resnet50", w_bits=16, a_bits=16)
    wide.layers = wide.layers[:1]
    with pytest.raises(ValueError, match="bits=8"):
        zigzag.compare(wide, SystolicConfig(), workdir=tmp_path)
    grouped = copy.deepcopy(p)
    grouped.layers[0].groups = 2
    with pytest.raises(ValueError, match="groups=2"):
        zigzag.workload(grouped)


def test_workload_shape():
    """ZigZag's workload format by hand for one layer (no ZigZag needed)."""
    p = _profile()
    nodes = zigzag.workload(p)
    n = nodes[1]
    assert n["name"] == "layer1.0.conv2"
    assert n["loop_dims"] == ["B", "K", "C", "OY", "OX", "FY", "FX"]
    assert n["loop_sizes"] == [1, 64, 64, 56, 56, 3, 3]
    assert n["dimension_relations"] == ["ix=1*ox+1*fx", "iy=1*oy+1*fy"]
    assert n["padding"] == [[1, 1], [1, 1]]
    # 8-bit operands, the accumulator of a 576-long sum of 8 x 8-bit products: 16 + 10 bits
    assert n["operand_precision"] == {"W": 8, "I": 8, "O": 26, "O_final": 8}
    fc = nodes[-1]
    assert fc["loop_sizes"] == [1, 1000, 2048, 1, 1, 1, 1] and "padding" not in fc
    m = zigzag.mapping(SystolicConfig(rows=32, cols=32), nodes)
    assert m[2]["temporal_ordering"] == [["OX", 56], ["OY", 56], ["FX", 3], ["FY", 3],
                                         ["C", 2], ["K", 2]]
    with pytest.raises(TypeError, match="profile"):
        zigzag.workload("resnet50")
    # a dilated layer's taps are dilation apart in ZigZag's input index
    dilated = copy.deepcopy(p)
    dilated.layers[1].dilation = (2, 3)
    assert zigzag.workload(dilated)[1]["dimension_relations"] == ["ix=1*ox+3*fx", "iy=1*oy+2*fy"]

"""BitFusion, the systolic array (SCALE-Sim), FINN, YodaNN and ENVISION against their published
formulas, worked by hand."""
import pytest

from hwq.hw import bitfusion, map
from hwq.hw.systolic import gemm_cycles

from hwq.workloads.builder import single as one_layer


def cycles(p, arch, **kw):
    return map(p, arch, **kw).layers[0].cycles


@pytest.mark.parametrize("pa,pw,expected", [
    (8, 8, 4608),    # perf 1: 1 * ceil(64/32) * 64 * 9 * ceil(64/16)
    (5, 6, 4608),    # 5-8 bits gain nothing over 8
    (4, 4, 1152),    # perf 2*2 = 4: ceil(64/64) = 1
    (3, 8, 2304),    # perf 2: ceil(64/32) = 2
    (2, 2, 1152),    # perf 16, but ceil(64/256) is still 1: the floor of the formula
    (1, 2, 1152),    # 1 bit is taken as pmin = 2
    (16, 8, 9216),   # an operand wider than 8 doubles: ceil(64 / (16 * 0.5)) = 8
    (16, 16, 18432),
])
def test_bitfusion_formula(pa, pw, expected):
    # a layer that does not read the network's input (no im2col), one image: compute cycles
    p = one_layer(c=64, k=64, hw=8, a_bits=pa, w_bits=pw)
    c = bitfusion.layer_cost(p[0], bitfusion.BitFusionConfig(batch=1), reads_input=False)
    assert c.cycles - c.stall_cycles == expected
    # the same layer reading the network's input runs as im2col:
    # Ox*Oy * ceil(64/32) * ceil(9 * 64 / (16 * perf)), passes for wide operands
    perf = bitfusion.factor(pa, 8, 2) * bitfusion.factor(pw, 8, 2)
    r = map(p, "bitfusion", batch=1).layers[0]
    assert r.cycles - r.stall_cycles == 64 * 2 * -(-576 // round(16 * perf)) if perf >= 1 else \
        64 * 2 * -(-576 * round(1 / perf) // 16)


def test_scalesim_cases():
    assert gemm_cycles(64, 64, 64, 32, 32, "os") == 504
    assert gemm_cycles(64, 64, 64, 32, 32, "ws") == 632
    assert gemm_cycles(64, 64, 64, 32, 32, "is") == 632
    # a 1x1 conv of 64 channels, 64 filters, 8x8 output is that GEMM
    p = one_layer(c=64, k=64, hw=8, kernel=1, pad=0, a_bits=8, w_bits=8)
    assert cycles(p, "systolic_os", rows=32, cols=32) == 504
    assert cycles(p, "systolic_ws", rows=32, cols=32) == 632
    # WS by hand on an uneven case: M=100, N=10, K=300 on 16 x 8:
    # (2*16 + 8 + 100 - 2) * ceil(300/16) * ceil(10/8) = 138 * 19 * 2
    assert gemm_cycles(100, 10, 300, 16, 8, "ws") == 138 * 19 * 2
    # IS: Sr=K, Sc=M, T=N: (32 + 8 + 10 - 2) * 19 * ceil(100/8)
    assert gemm_cycles(100, 10, 300, 16, 8, "is") == 48 * 19 * 13
    # OS: Sr=M, Sc=N, T=K: (300 + 16 + 8 - 2) * ceil(100/16) * ceil(10/8)
    assert gemm_cycles(100, 10, 300, 16, 8, "os") == 322 * 7 * 2
    # 16-bit operands on the 8-bit array: 4 passes
    p16 = one_layer(c=64, k=64, hw=8, kernel=1, pad=0)
    r = map(p16, "systolic_os", rows=32, cols=32)
    assert r.layers[0].cycles == 4 * 504 and r.notes


def test_finn_folding():
    # MH = 64 filters, MW = 32 * 3 * 3 = 288; PE 16, SIMD 32: 4 * 9 = 36 cycles per pixel
    p = one_layer(c=32, k=64, hw=10, a_bits=1, w_bits=1)
    assert cycles(p, "finn", pe=16, simd=32) == 36 * 100
    assert cycles(p, "finn", folding={"L": [64, 288]}) == 100
    assert not map(p, "finn").notes
    p[0].a_bits = 2
    r = map(p, "finn", pe=16, simd=32)
    # finn-hlslib's multi-bit lanes take the same cycles per fold
    assert r.layers[0].cycles == 36 * 100 and "multi-bit" in r.notes[0]
    with pytest.raises(ValueError, match="folding"):
        map(p, "finn", folding={"L": [0, 3]})
    # FINN's rule: PE divides MH (64), SIMD divides MW (288)
    with pytest.raises(ValueError, match="PE to divide MH=64"):
        map(p, "finn", folding={"L": [48, 32]})
    # a default cap that divides nothing falls to the largest divisor: PE 32 -> 32, SIMD 20 -> 18
    assert cycles(p, "finn", pe=32, simd=20) == 2 * 16 * 100
    # a folding key that names no layer is refused (issue 11), naming the layers
    with pytest.raises(ValueError, match=r"names no layer.*\['Lx'\].*layers: \['L'\]"):
        map(p, "finn", folding={"Lx": [16, 32]})


def test_yodann_hand_worked():
    # binary weights, 12-bit activations: windows * C * ceil(K/32) * ceil(3/7)^2
    p = one_layer(c=16, k=64, hw=8, a_bits=12, w_bits=1)
    r = map(p, "yodann")
    assert r.layers[0].cycles == 64 * 16 * 2 and not r.notes
    assert r.layers[0].utilization == pytest.approx(9 / 49)
    p[0].w_bits = 2
    assert map(p, "yodann").layers[0].cycles == 2 * 64 * 16 * 2


def test_envision_subword_modes_and_dvafs():
    def run(b, scaling):
        return map(one_layer(c=64, k=64, hw=8, a_bits=b, w_bits=b), "envision", scaling=scaling)
    das = {b: run(b, "das").layers[0] for b in (16, 8, 4)}
    assert das[8].cycles == das[16].cycles / 2 and das[4].cycles == das[16].cycles / 4
    dv = {b: run(b, "dvafs").layers[0] for b in (16, 8, 4)}
    assert dv[4].seconds == pytest.approx(dv[16].seconds)  # constant throughput
    # energy per MAC falls faster than linearly with precision under DVAFS
    e = {b: dv[b].energy_pj.compute for b in dv}
    assert e[4] / e[16] < 4 / 16 and e[8] / e[16] < 8 / 16
    assert e[4] < das[4].energy_pj.compute

"""Energy scaling with precision against the published points: BitFusion's synthesis (16x per
operation from 8-bit to 2-bit, tests/hw/test_bitfusion.py) and ENVISION's 0.26-10 TOPS/W span."""
import math

import pytest

import hwq
from hwq.hw.energy import HOROWITZ_45NM, accumulator_bits


def test_accumulator_is_sized_from_the_operands():
    # 8 x 8 products summed over 3*3*128 = 1152 terms: 16 + 11 = 27 bits (a 32-bit accumulate
    # on every MAC is what made 2-bit MACs cost 1/2.6 of 8-bit ones)
    assert accumulator_bits(8, 8, 1152) == 27
    e8 = HOROWITZ_45NM.mac_pj(8, 8, 1152)
    assert e8 == pytest.approx(3.1 * 64 / 1024 + 0.1 * 27 / 32)
    e2 = HOROWITZ_45NM.mac_pj(2, 2, 1152)
    assert e2 == pytest.approx(3.1 * 4 / 1024 + 0.1 * 15 / 32)
    assert e8 / e2 > 4
    assert HOROWITZ_45NM.mac_pj(8, 8, acc_bits=32) == pytest.approx(3.1 * 64 / 1024 + 0.1)


def _conv(bits):
    p = hwq.workloads.build("alexnet", w_bits=bits, a_bits=bits)
    return hwq.Profile([l for l in p if l.kind == "conv"], name=f"alexnet conv {bits}b")


def test_envision_span_within_25_percent():
    # ENVISION (ISSCC 2017): 0.26 TOPS/W at 16 bits to 10 TOPS/W at 4 bits with DVAFS
    p16, p4 = _conv(16), _conv(4)
    e16 = hwq.map(p16, "envision", scaling="das").total.energy_pj.compute / p16.macs
    e4 = hwq.map(p4, "envision", scaling="dvafs").total.energy_pj.compute / p4.macs
    assert e16 / e4 == pytest.approx(10 / 0.26, rel=0.25)
    # without the voltage drop (DAS), only the narrower datapath: about 8x
    e4_das = hwq.map(p4, "envision", scaling="das").total.energy_pj.compute / p4.macs
    assert 6 < e16 / e4_das < 10
    assert math.isfinite(e4)

"""BitFusion against its authors' simulator: the published per-layer results of its sweep
(hsharma35/bitfusion, results/bitfusion-eyeriss-sim-sweep.csv, copied to data/bitfusion_sim.csv),
and its energy scaling against the authors' synthesis."""
import collections
import csv
import pathlib

import pytest

import hwq
from hwq.hw import bitfusion

DATA = pathlib.Path(__file__).parent / "data" / "bitfusion_sim.csv"
NETWORKS = {"AlexNet": "bf_alexnet", "SVHN": "bf_svhn", "CIFAR10": "bf_cifar10",
            "LeNet-5": "bf_lenet5", "VGG-7": "bf_vgg7", "RESNET-18": "bf_resnet18",
            "RNN": "bf_rnn", "LSTM": "bf_lstm"}


def published():
    rows = collections.defaultdict(dict)
    with open(DATA) as f:
        lines = [line for line in f if not line.startswith("#")]
    for r in csv.DictReader(lines):
        layer = "matmul" if r["network"] in ("RNN", "LSTM") else r["layer"]
        rows[(int(r["bandwidth"]), r["network"])][layer] = (int(r["cycles"]),
                                                            int(r["stall_cycles"]))
    return rows


@pytest.mark.parametrize("bandwidth", [192, 4096])
def test_every_layer_matches_the_simulator(bandwidth):
    ref = published()
    for net, workload in NETWORKS.items():
        p = hwq.workloads.build(workload)
        r = hwq.map(p, "bitfusion", bandwidth_bits_per_cycle=bandwidth)
        want = ref[(bandwidth, net)]
        assert {l.name for l in r.layers} == set(want), net
        total_ref = total = 0
        for l in r.layers:
            cycles, stalls = want[l.name]
            # per image in hwq, per batch of 16 in the simulator
            compute = (l.cycles - l.stall_cycles) * 16
            assert compute == pytest.approx(cycles - stalls, rel=0.01), (net, l.name)
            total_ref += cycles
            total += l.cycles * 16
        assert total == pytest.approx(total_ref, rel=0.15), net
        # in fact the reproduction is exact, first layers (im2col) and stalls included
        assert total == total_ref, net


def test_first_layer_is_im2col():
    # SVHN conv0: 3 input channels, 3x3, 64 filters, 8-bit inputs, binary weights (perf 4):
    # im2col: 32*32 * ceil(64/32) * ceil(27 / 64) = 2048 cycles per image; channel-wise it would
    # be 32*32 * 2 * 9 * ceil(3/64) = 18432 (9x more)
    p = hwq.workloads.build("bf_svhn")
    r = hwq.map(p, "bitfusion")
    assert r["conv0"].cycles - r["conv0"].stall_cycles == 2048
    alone = bitfusion.layer_cost(p["conv0"], bitfusion.BitFusionConfig(), reads_input=False)
    assert alone.cycles - alone.stall_cycles == 18432


def test_memory_bound_fc_layers_stall():
    # the RNN's 4096 x 4096 product at 4 bits: 131,072 compute cycles for the batch, but 64 Mbit
    # of weights over 192 bits per cycle; the simulator: 394,583 cycles in all
    r = hwq.map(hwq.workloads.build("bf_rnn"), "bitfusion")
    assert r.total.cycles * 16 == 394583
    assert r.total.stall_cycles * 16 == 263511
    fast = hwq.map(hwq.workloads.build("bf_rnn"), "bitfusion", bandwidth_bits_per_cycle=4096)
    assert fast.total.cycles < r.total.cycles / 3


def test_energy_per_mac_scales_16x_from_8_to_2_bits():
    # the fusion unit draws the same power in every mode (the authors' synthesis), so its energy
    # per product falls with the products per cycle: 1 at 8 x 8, 16 at 2 x 2
    from hwq.workloads.builder import single
    e = {}
    for bits in (8, 4, 2):
        p = single(c=256, k=256, hw=16, a_bits=bits, w_bits=bits)
        r = hwq.map(p, "bitfusion")
        e[bits] = r.total.energy_pj.compute / p.macs
    assert e[8] == pytest.approx(bitfusion.UNIT_PJ_PER_CYCLE, rel=0.01)
    assert e[8] / e[2] == pytest.approx(16, rel=0.25)
    assert e[8] / e[4] == pytest.approx(4, rel=0.25)


def test_area_matches_the_authors_breakdown():
    # the simulator's get_area for bf_e_conf.ini: core 0.888, WBUF 0.767, IBUF 0.242, OBUF 0.243
    cfg = bitfusion.BitFusionConfig()
    assert cfg.area_mm2() == pytest.approx(0.8880907 + 0.7674778 + 0.242112 + 0.2433059, rel=1e-6)
    r = hwq.map(hwq.workloads.build("bf_lenet5"), "bitfusion")
    assert r.total.area_mm2 == pytest.approx(2.141, rel=1e-3)
    assert cfg.replace(cols=64).area_mm2() == pytest.approx(2.141 + 0.888, rel=1e-3)


def test_buffers_too_small_name_the_layer():
    with pytest.raises(ValueError, match="layer 'conv0' on BitFusion.*wbuf_bytes=8"):
        hwq.map(hwq.workloads.build("bf_lenet5"), "bitfusion", wbuf_bytes=8)

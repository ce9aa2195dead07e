"""The designs that use run-time statistics: Dynamic Stripes, Pragmatic, dynamic Loom."""
import pytest
import torch
from torch import nn

from hwq.hw import map
from hwq.hw.cost import expected_max_of_sums
from hwq.profile import LayerStats, profile

from hwq.workloads.builder import single as one_layer


def with_stats(p, pallet_prec, group_prec, pallet_ess, group_ess, ess_mean=2.0):
    s = LayerStats(samples=1, a_values=100, a_essential=int(ess_mean * 100),
                   a_pallet_prec=pallet_prec, a_group_prec=group_prec,
                   a_pallet_ess=pallet_ess, a_group_ess=group_ess)
    p[0].stats = s
    return p


def test_missing_statistics_are_reported_not_hidden():
    p = one_layer(a_bits=8)
    for arch in ("dstripes", "pragmatic", "pragmatic_col", "loom_dynamic"):
        r = map(p, arch)
        assert any("no run-time statistics" in n for n in r.notes), arch
        assert r.layers[0].cycles == map(p, "stripes" if arch != "loom_dynamic" else "loom"
                                         ).layers[0].cycles
    assert not map(p, "stripes").notes


def test_dynamic_stripes_hand_worked():
    # every pallet needs 4 bits: a quarter of Stripes at 16 bits
    p = with_stats(one_layer(a_bits=16), [0, 0, 0, 0, 10], [0, 0, 0, 0, 160], [0, 1], [0, 1])
    assert map(p, "dstripes").layers[0].cycles == map(p, "stripes").layers[0].cycles / 4
    assert not map(p, "dstripes").notes
    # half the pallets 2 bits, half 6: mean 4; an all-zero pallet still takes one cycle
    p = with_stats(one_layer(a_bits=16), [2, 0, 0, 0, 0, 0, 2], [1], [1], [1])
    assert map(p, "dstripes").layers[0].cycles == map(p, "stripes").layers[0].cycles * 3.5 / 16


def test_expected_max_of_sums_hand_worked():
    # group time 1 or 2 cycles, equally likely; two columns in lockstep: E[max] = 1.75
    assert expected_max_of_sums([0, 1, 1], columns=2, depth=1) == pytest.approx(1.75)
    # depth 2: sums 2, 3, 4 with p 1/4, 1/2, 1/4; E[max of 2] = 2 + P(max>2) + P(max>3)
    # = 2 + (1 - (1/4)^2) + (1 - (3/4)^2) = 3.375, per pallet / 2
    assert expected_max_of_sums([0, 1, 1], columns=2, depth=2) == pytest.approx(3.375 / 2)
    # deep run-ahead tends to the mean, 1.5
    assert expected_max_of_sums([0, 1, 1], columns=2, depth=200) == pytest.approx(1.5, abs=0.02)


def test_pragmatic_never_slower_than_dstripes_and_stripes_on_real_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 8 * 8, 10))
    x = torch.randn(4, 3, 8, 8)
    p = profile(model, x, batches=[x, x * 0.5])
    for ra in (0, 1, 3):
        st = map(p, "stripes").layers
        ds = map(p, "dstripes", run_ahead=ra).layers
        pr = map(p, "pragmatic", run_ahead=ra).layers
        for a, b, c in zip(pr, ds, st):
            assert a.cycles <= b.cycles + 1e-9 and b.cycles <= c.cycles + 1e-9, (ra, a.name)
    # more run-ahead never hurts (the estimate is monotone in R)
    c = [map(p, "pragmatic", run_ahead=ra).total.cycles for ra in (0, 1, 2, 4)]
    assert c[1] >= c[2] >= c[3]
    assert map(p, "pragmatic_col").total.cycles < map(p, "pragmatic").total.cycles * 1.2


def test_loom_dynamic_uses_pallet_precision():
    p = with_stats(one_layer(a_bits=16, w_bits=8), [0, 0, 0, 0, 10], [1], [1], [1])
    assert map(p, "loom_dynamic").layers[0].cycles == pytest.approx(
        map(p, "loom").layers[0].cycles / 4)

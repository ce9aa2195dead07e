"""Run-time statistics against hand-worked cases and a pure-Python reference (int.bit_length,
int.bit_count)."""
import torch
from torch import nn

import hwq
from hwq.profile import LayerStats, profile, value_bits
from hwq.profile.stats import hist_mean


def ref_bits(v: int) -> tuple[int, int]:
    """(precision, essential bits) of one code, written from the definition."""
    return abs(v).bit_length() + (1 if v < 0 else 0), abs(v).bit_count()


def test_value_bits_matches_python_ints():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-40000, 60000, (500,), generator=g).float()
    codes[:3] = torch.tensor([0.0, -1.0, 65535.0])
    prec, ess = value_bits(codes)
    for c, p, e in zip(codes.tolist(), prec.tolist(), ess.tolist()):
        assert (p, e) == ref_bits(int(c)), c


def test_group_and_pallet_hand_worked_conv():
    # One image, 16 channels, 1 x 32 pixels: two pallets of 16 groups each.
    codes = torch.zeros(1, 16, 1, 32)
    codes[0, 3, 0, 0] = 5      # 101b: 3 bits, 2 essential; group 0
    codes[0, 7, 0, 0] = 8      # 1000b: 4 bits, 1 essential; group 0 -> prec 4, max ess 2
    codes[0, 0, 0, 20] = 255   # 8 bits, 8 essential; group 20 (pallet 1)
    s = LayerStats()
    s.add_activations(codes, "conv", "x")
    assert s.a_values == 512 and s.samples == 1
    assert s.a_zeros == 509
    assert s.a_essential == 2 + 1 + 8
    # 32 groups: 30 all-zero (0 bits), one of 4 bits, one of 8 bits.
    assert s.a_group_prec == [30, 0, 0, 0, 1, 0, 0, 0, 1]
    assert s.a_group_ess == [30, 0, 1, 0, 0, 0, 0, 0, 1]
    # 2 pallets: the first needs 4 bits, the second 8.
    assert s.a_pallet_prec == [0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert s.a_pallet_ess == [0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert s.a_pallet_prec_mean == 6.0
    assert hist_mean(s.a_group_prec, floor=1) == (30 + 4 + 8) / 32


def test_sign_bit_counts_per_value():
    codes = torch.zeros(1, 16, 1, 1)
    codes[0, 0, 0, 0] = -3   # 2 magnitude bits + sign = 3
    codes[0, 1, 0, 0] = 6    # 3 bits, no sign
    s = LayerStats()
    s.add_activations(codes, "conv", "x")
    assert s.a_group_prec == [0, 0, 0, 1]  # max(3, 3)
    codes[0, 1, 0, 0] = 7
    codes[0, 0, 0, 0] = -4   # 3 + 1 = 4
    s = LayerStats()
    s.add_activations(codes, "conv", "x")
    assert s.a_group_prec == [0, 0, 0, 0, 1]


def test_fc_groups_and_weights():
    codes = torch.tensor([[1.0] * 16 + [0.0] * 4])  # 20 features: groups of 16 and 4 (padded)
    s = LayerStats()
    s.add_activations(codes, "fc", "x")
    assert s.a_group_prec == [1, 1] and s.a_pallet_prec == [1, 1]  # one window: pallet = group
    w = torch.zeros(2, 3, 1, 1)
    w[0, 1] = -2  # 2 bits + sign
    w[1, 2] = 1
    s.set_weights(w, "w")
    assert s.w_values == 6 and s.w_zeros == 4 and s.w_essential == 2
    assert s.w_group_prec == [0, 1, 0, 1]  # one group per filter (3 channels, padded to 16)


def test_codes_over_16_bits_are_refused():
    s = LayerStats()
    try:
        s.add_activations(torch.tensor([[70000.0]]), "fc", "layer 'x' input")
    except ValueError as e:
        assert "70000" in str(e) and "layer 'x' input" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_float_layer_gets_16_bit_baseline_codes():
    # max|x| = 1.0 -> 1 integer bit, 14 fraction bits in 15 magnitude bits: code = x * 2^14.
    lin = nn.Linear(16, 2)
    x = torch.zeros(1, 16)
    x[0, :3] = torch.tensor([1.0, 0.5, -0.25])
    p = profile(nn.Sequential(lin), x, batches=[x])
    layer = p[0]
    assert layer.a_float and layer.w_float and layer.a_bits == 16 and layer.w_bits == 16
    assert layer.a_frac == 14
    s = layer.stats
    # codes 16384 (15 bits), 8192 (14), -4096 (13 + sign = 14): group needs 15 bits.
    assert s.a_group_prec == [0] * 15 + [1]
    assert s.a_essential == 3 and s.a_zeros == 13


def test_quantized_layer_uses_its_own_codes():
    torch.manual_seed(0)
    layer = hwq.nn.QuantConv2d(16, 8, 3, padding=1, weights="fixed:4", acts="fixed:6")
    model = nn.Sequential(layer)
    x = torch.relu(torch.randn(2, 16, 5, 7))
    model.eval()
    with torch.no_grad():
        model(x)  # calibrate the activation range first, as a trained model would have it
        codes, _ = layer.act_quant.quantize_int(x)
        wcodes, _ = layer.weight_quant.quantize_int(layer.weight)
    p = profile(model, x, batches=[x])
    lp = p[0]
    assert (lp.w_bits, lp.a_bits, lp.w_float, lp.a_float) == (4, 6, False, False)
    ref = [ref_bits(int(v)) for v in codes.flatten().tolist()]
    assert lp.stats.a_essential == sum(e for _, e in ref)
    assert lp.stats.a_zeros == sum(1 for v in codes.flatten().tolist() if v == 0)
    # group precision of channel groups (16 channels = one group per pixel), by hand
    per_pixel = [max(ref_bits(int(v))[0] for v in codes[n, :, i, j].tolist())
                 for n in range(2) for i in range(5) for j in range(7)]
    hist = [per_pixel.count(b) for b in range(max(per_pixel) + 1)]
    assert lp.stats.a_group_prec == hist
    wref = [ref_bits(int(v)) for v in wcodes.flatten().tolist()]
    assert lp.stats.w_essential == sum(e for _, e in wref)
    assert max(i for i, c in enumerate(lp.stats.w_group_prec) if c) <= 4  # 4-bit signed codes


def test_profile_leaves_model_unchanged():
    layer = hwq.nn.QuantLinear(8, 4, weights="fixed:8", acts="fixed:8")
    model = nn.Sequential(layer)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 8)
    profile(model, x, batches=[x * 5, x * 7])
    after = model.state_dict()
    assert model.training and layer.training
    for k, v in before.items():
        assert torch.equal(v, after[k]) or (torch.isnan(v).all() and torch.isnan(after[k]).all()), k


def test_execution_order_and_shapes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4 * 3 * 3, 10)   # defined first, runs last
            self.body = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)

        def forward(self, x):
            return self.head(self.body(x).flatten(1))

    p = profile(Net(), torch.randn(5, 2, 6, 6))
    assert [l.name for l in p] == ["body", "head"]
    body = p["body"]
    assert body.in_shape == (2, 6, 6) and body.out_shape == (4, 3, 3)
    assert body.macs == 4 * 3 * 3 * 1 * 3 * 3 and body.weights == 4 * 1 * 9
    assert p["head"].macs == 36 * 10 and p.input_shape == (2, 6, 6)
    assert body.stats is None


def test_shapes_from_the_first_batch_match_a_separate_example():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 3 * 3, 5))
    x = torch.randn(2, 3, 8, 8)
    a = profile(model, batches=[x])
    b = profile(model, x, batches=[x])
    assert a.to_dict() == b.to_dict()
    import pytest
    with pytest.raises(ValueError, match="example_input"):
        profile(model)


def test_fraction_bits_kept_only_when_every_batch_agrees():
    lin = nn.Linear(4, 2)
    x1, x2, x3 = torch.ones(1, 4), torch.ones(1, 4) * 2, torch.ones(1, 4) * 4
    assert profile(nn.Sequential(lin), batches=[x1, x1])[0].a_frac == 14
    # float layers get one power-of-two step per batch: 14, 13, 12 fraction bits -> no single one
    assert profile(nn.Sequential(lin), batches=[x1, x2, x3])[0].a_frac is None

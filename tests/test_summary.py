"""hwq.summary against hand-counted parameters, MACs, BOPs and weight bits."""
import pytest
import torch
from torch import nn

import hwq
from hwq.kernels import int8


def test_hand_counted_small_net():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                      nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4), nn.Flatten(),
                      nn.Linear(8 * 4 * 4, 10))
    hwq.quantize(m, weights="fixed:4", acts="fixed:4", layers={"0": dict(acts=None)},
                 skip=["4"])
    lines = []
    s = hwq.summary(m, input_size=(2, 3, 8, 8), print_fn=lines.append)
    rows = {r.name: r for r in s.rows}
    # conv0: 8 out ch x 8x8 outputs x 3 in x 9 taps; conv2 (groups 4: 2 in per group): 8 x 4x4 x 2 x 9
    assert rows["0"].macs == 8 * 64 * 3 * 9 and rows["2"].macs == 8 * 16 * 2 * 9
    assert rows["4"].macs == 128 * 10
    assert rows["0"].params == 216 and rows["2"].params == 8 * 2 * 9 + 8
    assert rows["0"].weight_bits == 216 * 4
    assert rows["2"].weight_bits == 144 * 4 + 8 * 32  # bias stays float
    assert rows["4"].weight_bits == (1280 + 10) * 32  # skipped: float
    assert rows["0"].bops == rows["0"].macs * 4 * 32
    assert rows["2"].bops == rows["2"].macs * 16
    assert s.macs == sum(r.macs for r in s.rows)
    assert "total" in lines[0] and rows["4"].type == "Linear"


def test_summary_does_not_calibrate_or_change_mode():
    m = hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2)),
                     weights="lsq:4", acts="fixed:4")
    m.train()
    hwq.summary(m, input_size=(1, 3, 8, 8), print_fn=None)
    assert m.training and torch.isnan(m[0].act_quant.running_max)
    assert not bool(m[0].weight_quant.initialized)


def test_without_input_linear_macs_only():
    m = hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 2)))
    s = hwq.summary(m, print_fn=None)
    assert [r.macs for r in s.rows] == [None, 32] and not s.macs_known
    assert "conv MACs need example_input" in str(s)


def test_resnet18_macs_match_the_known_figure():
    import torchvision
    m = torchvision.models.resnet18()
    s = hwq.summary(hwq.quantize(m, weights="fixed:8", acts="fixed:8"),
                    input_size=(1, 3, 224, 224), print_fn=None)
    assert abs(s.macs / 1e9 - 1.814) < 0.005  # 1.81 G MACs, the usual ResNet-18 figure
    # rows are conv/linear layers: torchvision's 11,689,512 parameters minus batch norm's 9,600
    assert s.params == 11_689_512 - 9_600


@pytest.mark.parametrize("bad", [(), (1, 0, 3), "1,3,8,8", (1.5, 3)])
def test_bad_input_size(bad):
    with pytest.raises(ValueError, match="input_size=.* is not accepted"):
        hwq.summary(nn.Sequential(nn.Linear(2, 2)), input_size=bad, print_fn=None)


def test_summary_shows_how_each_layer_runs_after_deploy():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardtanh(),
                      nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                      nn.Flatten(), nn.Linear(32 * 64, 10))
    hwq.quantize(m, weights="binary", acts="binary",
                 layers={"0": dict(weights="fixed:8", acts=None), "6": dict(weights="fixed:4",
                                                                            acts="fixed:6")})
    m(torch.randn(4, 3, 8, 8))
    m.eval()
    before = hwq.summary(m, input_size=(2, 3, 8, 8), print_fn=None)
    after = hwq.summary(hwq.deploy(m), input_size=(2, 3, 8, 8), print_fn=None)
    assert [r.impl for r in before.rows] == ["fake-quant", "fake-quant", "fake-quant"]
    got = {r.name: (r.type, r.impl, r.w_bits, r.a_bits, r.macs) for r in after.rows}
    assert got["0"][:2] == ("QuantConv2d", "fake-quant")  # float input: kept
    assert got["3"] == ("PackedConv2d", "binary", 1, 1, 32 * 64 * 16 * 9)
    if int8.HAVE_ONEDNN_INT8:  # signed 6-bit activations: oneDNN's int8 linear
        assert got["6"] == ("Int8Linear", "int8 W4A6", 4, 6, 32 * 64 * 10)
    assert [r.macs for r in after.rows] == [r.macs for r in before.rows]


def test_input_the_model_cannot_take_is_named():
    import pytest
    import torchvision
    model = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError, match=r"input_size=\(1, 1, 32, 32\) is not accepted: the "
                                         "model cannot run on it"):
        hwq.summary(model, input_size=(1, 1, 32, 32))

"""Reference networks: MAC and weight totals against the well-known figures, and layer shapes
against torchvision's definitions where they are the same network."""
import pytest
import torch
import torchvision

import hwq.workloads as W
from hwq.profile import profile

# (MACs per image, relative tolerance, source of the figure)
KNOWN_MACS = {
    "alexnet": (0.724e9, 0.01),      # 666 M conv + 58.6 M fc, grouped (Caffe bvlc_alexnet)
    "vgg19": (19.6e9, 0.01),         # Simonyan & Zisserman; 19.6 GFLOPs (multiply-adds)
    "resnet50": (4.1e9, 0.01),       # torchvision's 4.09 GMACs (v1.5)
    "resnet18": (1.82e9, 0.01),      # torchvision 1.81 GMACs
    "mobilenet_v2": (300e6, 0.01),   # Sandler et al. Table 4: 300 M multiply-adds
    "googlenet": (1.5e9, 0.06),      # Szegedy et al.: "1.5 billion multiply-adds"
    "nin": (1.1e9, 0.02),            # mlpconv ImageNet model
}
KNOWN_WEIGHTS = {"alexnet": 61e6, "vgg19": 143.7e6, "resnet50": 25.5e6, "mobilenet_v2": 3.5e6}


@pytest.mark.parametrize("name", list(KNOWN_MACS))
def test_mac_totals(name):
    macs, tol = KNOWN_MACS[name]
    assert W.build(name).macs == pytest.approx(macs, rel=tol)


@pytest.mark.parametrize("name", list(KNOWN_WEIGHTS))
def test_weight_totals(name):
    assert W.build(name).weights == pytest.approx(KNOWN_WEIGHTS[name], rel=0.02)


def test_alexnet_hand_worked_layers():
    p = W.build("alexnet")
    assert p["conv1"].out_shape == (96, 55, 55)
    assert p["conv2"].macs == 256 * 27 * 27 * 48 * 25 and p["conv2"].groups == 2
    assert p["fc6"].in_shape == (9216,)


def test_vgg_cnn_reach_fc6_at_6x6():
    for name in ("vgg_m", "vgg_s"):
        assert W.build(name)["fc6"].in_shape == (512 * 6 * 6,)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "vgg19"])
def test_shapes_match_torchvision(name):
    with torch.device("meta"):  # shapes only: no weights are initialised
        model = torchvision.models.get_model(name, weights=None)
        ref = profile(model, torch.empty(1, 3, 224, 224))
    ours = W.build(name)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert (a.kind, a.in_shape, a.out_shape, a.kernel, a.stride, a.groups, a.macs) == \
            (b.kind, b.in_shape, b.out_shape, b.kernel, b.stride, b.groups, b.macs), a.name
        if name != "vgg19":
            assert a.name == b.name


def test_layers_are_editable_and_names_checked():
    p = W.build("alexnet", a_bits=8)
    assert all(l.a_bits == 8 for l in p)
    p["conv1"].a_bits = 9
    p.set_bits(a_bits={"conv2": 7})
    assert (p["conv1"].a_bits, p["conv2"].a_bits) == (9, 7)
    with pytest.raises(ValueError, match="accepted: alexnet"):
        W.build("lenet")

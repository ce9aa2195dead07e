"""ResNet-20 with Bi-Real Net's shortcut around every conv (hwq.models.resnet_cifar, shortcut =
"every") against He et al.'s pair structure: both forwards against a float64 reference written
from the papers' equations; the option refused by name where it is wrong; the recipe; and the
chain hwq.quantize (W1A1, first and last layers 8-bit) -> hwq.deploy (packed XNOR kernels, the
residual adds fused into the right convs) -> hwq.profile -> hwq.map."""
import copy
import importlib
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hwq
from hwq import kernels
from hwq.models.resnet_cifar import BasicBlock, BiRealBlock, CifarResNet, resnet20
from hwq.train import data as data_mod
from hwq.train import recipe as recipes
from hwq.train.run import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDGE_8BIT = {"conv1": dict(weights="fixed:8", acts="fixed:8"),
             "fc": dict(weights="fixed:8", acts="fixed:8")}
CIFAR = data_mod.Data(None, None, (3, 32, 32), 10)


def _randomize_bn(model, gen):
    """Batch norms with running statistics and affine parameters far from the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.randn(m.num_features, generator=gen)  # negative gammas too
            m.bias.data = torch.randn(m.num_features, generator=gen)
            m.running_mean.uniform_(-1, 1, generator=gen)
            m.running_var.uniform_(0.5, 2, generator=gen)


def _reference(model, x, shortcut, act):
    """The forward written out from the equations, in float64, from the model's parameters:
    pair (He et al. 2016):  act(bn2(conv2(act(bn1(conv1(x))))) + A(x))
    every (Bi-Real Net):    y = act(bn1(conv1(x)) + A(x)); act(bn2(conv2(y)) + y)
    A(x): option A, x[:, :, ::s, ::s] with zero channels added evenly on both sides."""
    p = {k: v.double() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}

    def bn(t, name):
        return ((t - p[f"{name}.running_mean"].view(1, -1, 1, 1))
                / torch.sqrt(p[f"{name}.running_var"].view(1, -1, 1, 1) + 1e-5)
                * p[f"{name}.weight"].view(1, -1, 1, 1) + p[f"{name}.bias"].view(1, -1, 1, 1))

    def conv(t, name, stride=1):
        return F.conv2d(t, p[f"{name}.weight"], stride=stride, padding=1)

    h = act(bn(conv(x.double(), "conv1"), "bn1"))
    cin = 16
    for i, cout in enumerate([16] * 3 + [32] * 3 + [64] * 3):
        b, s = f"layers.{i}", 2 if i in (3, 6) else 1
        short = h[:, :, ::s, ::s]
        extra = cout - cin
        short = torch.cat([short.new_zeros(short.shape[0], extra // 2, *short.shape[2:]), short,
                           short.new_zeros(short.shape[0], extra - extra // 2,
                                           *short.shape[2:])], 1)
        if shortcut == "pair":
            y = act(bn(conv(h, f"{b}.conv1", s), f"{b}.bn1"))
            h = act(bn(conv(y, f"{b}.conv2"), f"{b}.bn2") + short)
        else:
            y = act(bn(conv(h, f"{b}.conv1", s), f"{b}.bn1") + short)
            h = act(bn(conv(y, f"{b}.conv2"), f"{b}.bn2") + y)
        cin = cout
    return h.mean((2, 3)) @ p["fc.weight"].t() + p["fc.bias"]


@pytest.mark.parametrize("shortcut", ["pair", "every"])
@pytest.mark.parametrize("act,fn", [(nn.ReLU, torch.relu), (nn.Hardtanh, F.hardtanh)])
def test_forward_against_the_equations_in_float64(shortcut, act, fn):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = CifarResNet(20, 10, act, shortcut)
    _randomize_bn(model, gen)
    model.eval()
    x = torch.randn(3, 3, 32, 32, generator=gen)
    with torch.no_grad():
        got = copy.deepcopy(model).double()(x.double())
        want = _reference(model, x, shortcut, fn)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_same_modules_and_parameters_different_function():
    pair = hwq.models.build("resnet20")  # the default: He et al.'s pair structure
    every = hwq.models.build("resnet20", shortcut="every")
    assert pair.shortcut == "pair" and every.shortcut == "every"
    assert all(type(b) is BasicBlock for b in pair.layers)
    assert all(type(b) is BiRealBlock for b in every.layers)
    assert [b.shortcut for b in every.layers] == ["every"] * 9  # declared on the block class
    # the same names (a recipe's layer patterns apply to both) and the same 269,722 parameters
    # (tests/test_recipes.py works that number by hand): option A's shortcuts hold no weights
    marks = {f"layers.{i}._extra_state" for i in range(9)}
    assert set(pair.state_dict()) == set(every.state_dict()) - marks
    assert sum(p.numel() for p in every.parameters()) == 269_722
    # the blocks' marks keep either structure's state_dict from loading into the other
    with pytest.raises(RuntimeError, match="Missing key.*layers.0._extra_state"):
        every.load_state_dict(pair.state_dict())
    with pytest.raises(RuntimeError, match="Unexpected key.*layers.0._extra_state"):
        pair.load_state_dict(every.state_dict())
    with pytest.raises(ValueError, match="_extra_state = {'shortcut': 'pair'} is not accepted"):
        every.load_state_dict({**every.state_dict(), "layers.0._extra_state": {"shortcut": "pair"}})
    every.load_state_dict({**pair.state_dict(), **{k: {"shortcut": "every"} for k in marks}})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(pair.eval()(x), every.eval()(x))
        torch.manual_seed(5)
        a = resnet20()
        torch.manual_seed(5)
        b = resnet20(shortcut="pair")
        assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("make", [
    lambda: CifarResNet(20, shortcut="all"),
    lambda: resnet20(shortcut=None),
    lambda: hwq.models.build("resnet20", shortcut="Every"),
])
def test_bad_shortcut_is_refused_by_name(make):
    with pytest.raises(ValueError, match=r"shortcut=.* is not accepted: expected one of "
                                         r"\['pair', 'every'\]"):
        make()


def test_recipe_bireal_is_cifar10_with_every_shortcut():
    bireal = recipes.load(os.path.join(ROOT, "recipes", "cifar10_bireal.toml"))
    base = recipes.load(os.path.join(ROOT, "recipes", "cifar10.toml"))
    assert bireal["name"] == "cifar10_bireal" and bireal["model"]["shortcut"] == "every"
    assert base["model"]["shortcut"] is None  # not set: resnet20's default, "pair"
    # one difference from cifar10.toml: the block structure (and the name, so runs/ differ)
    same = copy.deepcopy(bireal)
    same["name"], same["model"]["shortcut"] = base["name"], None
    assert same == base
    model = build_model(bireal, "w1a1", CIFAR)
    assert all(type(b) is BiRealBlock for b in model.layers)
    layers = [m for m in model.modules() if isinstance(m, hwq.nn.QuantLayer)]
    assert [(m.w_bits, m.a_bits) for m in layers] == [(8, 8)] + [(1, 1)] * 18 + [(8, 8)]
    assert all(type(m) is nn.Hardtanh for b in model.layers for m in (b.act1, b.act2))
    # a recipe.json written before the option existed has no shortcut key: pair, as then
    old = copy.deepcopy(base)
    del old["model"]["shortcut"]
    assert all(type(b) is BasicBlock for b in build_model(old, "w1a1", CIFAR).layers)


@pytest.mark.parametrize("override,match", [
    ("model.shortcut=all", r"model.shortcut = 'all' is not accepted: expected one of "
                           r"\['pair', 'every'\]"),
    ("model.shortcut=2", r"model.shortcut = 2 is not accepted: expected a string"),
])
def test_recipe_refuses_a_bad_shortcut(override, match):
    with pytest.raises(ValueError, match=match):
        recipes.load(os.path.join(ROOT, "recipes", "cifar10_bireal.toml"), [override])
    value = recipes.parse_value(override.partition("=")[2])  # the typed view checks the same
    with pytest.raises(ValueError, match=match):
        recipes.ModelConfig(name="resnet20", shortcut=value)


def test_recipe_shortcut_only_for_resnet20():
    r = recipes.load(os.path.join(ROOT, "recipes", "cifar10_cnv.toml"), ["model.shortcut=every"])
    with pytest.raises(ValueError, match=r"model.shortcut = 'every' is not accepted for model "
                                         r"'cnv': only resnet20 takes shortcut"):
        build_model(r, "float", CIFAR)


# ---- the chain: quantize -> deploy -> profile -> map ------------------------------------------

def _qat(shortcut, weights, acts, act, seed):
    """A calibrated QAT ResNet-20 (first and last layers 8-bit), random batch norms, eval mode."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = hwq.models.build("resnet20", act=act, shortcut=shortcut)
    hwq.quantize(model, weights=weights, acts=acts, layers=EDGE_8BIT)
    _randomize_bn(model, gen)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(16, 3, 32, 32, generator=gen))
    return model.eval(), gen


W1A1 = ({"name": "binary", "scale": "channel"}, "binary", "hardtanh")


@pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
@pytest.mark.parametrize("scheme,fused", [
    (W1A1, "add"),                        # Hardtanh after the add stays a module
    (("fixed:2", "fixed:2", "relu"), "add + relu"),  # bit-serial W2A2: the ReLU goes in too
])
def test_deploy_fuses_each_add_into_its_own_conv(monkeypatch, scheme, fused):
    qat, gen = _qat("every", *scheme, seed=3)
    dep = hwq.deploy(qat)
    rep = {d.name: d for d in dep.deploy_report.layers}
    for i in range(9):
        for conv in ("conv1", "conv2"):  # every conv carries its own block's add
            assert rep[f"layers.{i}.{conv}"].residual_fused == f"layers.{i}: {fused}"
            # an add comes between each conv and the next: no sign bits handed on
            assert not rep[f"layers.{i}.{conv}"].packed_output_to
    if scheme is W1A1:
        assert {rep[f"layers.{i}.{c}"].impl for i in range(9) for c in ("conv1", "conv2")} \
            == {"binary"}
    x = torch.randn(64, 3, 32, 32, generator=gen)
    with torch.no_grad():
        got, want = dep(x), qat(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))
    assert bool((got.argmax(1) == want.argmax(1)).all())
    # the same deployment without the block rewrite (every add left to torch): bit for bit
    passes = importlib.import_module("hwq.deploy.passes")
    monkeypatch.setattr(passes, "_fuse_residual_blocks", lambda model, by_name: None)
    unfused = hwq.deploy(qat)
    assert not any(d.residual_fused for d in unfused.deploy_report.layers)
    with torch.no_grad():
        assert torch.equal(unfused(x), got)


@pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
@pytest.mark.filterwarnings("ignore:binary activation quantizer got a first batch")
def test_deploy_pair_unchanged():
    """He et al.'s blocks deploy as before: conv1 hands conv2 its sign bits, conv2 takes the add."""
    qat, gen = _qat("pair", *W1A1, seed=4)
    dep = hwq.deploy(qat)
    rep = {d.name: d for d in dep.deploy_report.layers}
    for i in range(9):
        assert rep[f"layers.{i}.conv1"].packed_output_to == f"layers.{i}.conv2"
        assert not rep[f"layers.{i}.conv1"].residual_fused
        assert rep[f"layers.{i}.conv2"].residual_fused == f"layers.{i}: add"
    x = torch.randn(64, 3, 32, 32, generator=gen)
    with torch.no_grad():
        got, want = dep(x), qat(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_profile_and_map():
    qat, gen = _qat("every", *W1A1, seed=5)
    pair, _ = _qat("pair", *W1A1, seed=5)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    prof = hwq.profile(qat, batches=[x])
    assert [l.name for l in prof.layers] == (
        ["conv1"] + [f"layers.{i}.conv{j}" for i in range(9) for j in (1, 2)] + ["fc"])
    # MACs worked by hand: stem 3*16*9*1024; stage 1 six 16*16*9*1024; stage 2 16*32*9*256 and
    # five 32*32*9*256; stage 3 32*64*9*64 and five 64*64*9*64; fc 64*10 (the adds are not MACs)
    assert sum(l.macs for l in prof.layers) == (
        442_368 + 6 * 2_359_296 + 1_179_648 + 5 * 2_359_296 + 1_179_648 + 5 * 2_359_296 + 640)
    assert [(l.w_bits, l.a_bits) for l in prof.layers] == [(8, 8)] + [(1, 1)] * 18 + [(8, 8)]
    # the same layers as the pair structure: its shortcuts add no conv, no weight
    shape_of = [(l.name, l.in_shape, l.out_shape, l.macs, l.weights) for l in prof.layers]
    assert shape_of == [(l.name, l.in_shape, l.out_shape, l.macs, l.weights)
                        for l in hwq.profile(pair, x[:1]).layers]
    report = hwq.map(prof, "loom")  # with the run-time statistics of the batch
    assert [l.name for l in report.layers] == [l.name for l in prof.layers]
    assert [l.macs for l in report.layers] == [l.macs for l in prof.layers]
    assert report.total.cycles > 0
    # shape only, the mapper sees the same layers at the same precisions: the same costs
    shapes = [hwq.map(hwq.profile(m, x[:1]), "loom").to_dict()["layers"] for m in (qat, pair)]
    assert shapes[0] == shapes[1]

"""Recipes: every shipped recipe validates and builds each of its schemes' models; overrides land
where they say; unknown keys, bad values and bad specs are refused with the valid choices; a data
set that is not on disk gets a message saying how to get it."""
import glob
import os
import re

import pytest
import torch

import hwq
from hwq.cli import main
from hwq.train import data as data_mod
from hwq.train import recipe as recipes
from hwq.train.run import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.toml")))
SHAPES = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
          "imagenet": ((3, 224, 224), 1000)}


def write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return str(p)


MINIMAL = '[schemes.float]\n'


def test_shipped_recipes_are_found_by_name():
    assert {os.path.basename(p)[:-5] for p in SHIPPED} >= {"digits", "mnist", "cifar10",
                                                           "imagenet"}
    # package data: hwq/recipes links to recipes/ in a source tree
    assert os.path.samefile(recipes.find("digits"), os.path.join(ROOT, "recipes", "digits.toml"))
    with pytest.raises(ValueError, match="shipped: .*'digits'"):
        recipes.find("no_such_recipe")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.basename(p))
def test_shipped_recipe_builds_every_scheme(path):
    r = recipes.load(path)
    shape, classes = SHAPES[r["data"]["name"]]
    data = data_mod.Data(None, None, shape, classes)
    expected = ({"float", "w2a2", "w1a2", "w1a1"} if r["model"]["name"] == "cnv" else
                {"float", "w8a8", "w4a4", "w2a2", "w1a1", "ternary", "pow2", "mixed"})
    assert expected <= set(r["schemes"])
    for name in r["schemes"]:
        model = build_model(r, name, data)
        layers = [m for m in model.modules() if isinstance(m, hwq.nn.QuantLayer)]
        if name == "float":
            assert not layers
            continue
        wa = re.fullmatch(r"w(\d)a(\d)", name)
        if wa:  # the middle layers carry the scheme's precision
            mid = layers[1:-1]
            assert {m.w_bits for m in mid} == {int(wa[1])} and {m.a_bits for m in mid} == {int(wa[2])}
        if name == "mixed":
            assert len({(m.w_bits, m.a_bits) for m in layers}) >= 2
    if r["data"]["name"] == "digits":  # small enough to run: one forward pass
        model = build_model(r, "w1a1", data)
        assert model(torch.randn(2, *shape)).shape == (2, classes)


def test_defaults_fill_in(tmp_path):
    r = recipes.load(write(tmp_path, MINIMAL))
    assert r["data"]["name"] == "digits" and r["optim"]["name"] == "sgd"
    assert r["schemes"]["float"]["weights"] == "float" and r["schemes"]["float"]["init"] is None


def test_overrides(tmp_path):
    path = write(tmp_path, MINIMAL + '[schemes.q]\nweights = "lsq:4"\n')
    r = recipes.load(path, ["optim.lr=0.01", "schemes.q.acts=lsq:3", "model.channels=[8, 8, 8]",
                            "train.deterministic=false", "schemes.q.optim.name=adam",
                            ("data.dir", "/some where/it's")])
    assert r["optim"]["lr"] == 0.01 and isinstance(r["optim"]["lr"], float)
    assert r["schemes"]["q"]["acts"] == "lsq:3"
    assert r["model"]["channels"] == [8, 8, 8]
    assert r["train"]["deterministic"] is False
    assert r["data"]["dir"] == "/some where/it's"
    st = recipes.scheme_settings(r, "q")
    assert st["optim"]["name"] == "adam" and st["optim"]["lr"] == 0.01
    assert recipes.scheme_settings(r, "float")["optim"]["name"] == "sgd"


@pytest.mark.parametrize("override,match", [
    ("optim.lrr=1", r"unknown key\(s\) \['optim.lrr'\]; valid keys in \[optim\]: \['name', 'lr'"),
    ("colour=1", r"unknown top-level key\(s\) \['colour'\]; valid: \['name', 'data'"),
    ("schemes.float.bits=4", r"unknown key\(s\) \['schemes.float.bits'\]; valid keys in "
                             r"\[schemes.float\]: \['weights', 'acts'"),
    ("schemes.float.optim.lrr=1", r"schemes.float.optim.lrr"),
    ("data.batch_size=true", r"data.batch_size = True is not accepted: expected an integer"),
    ("data.batch_size=0", r"data.batch_size = 0 is not accepted: expected a value > 0"),
    ("optim.name=lamb", r"optim.name = 'lamb' is not accepted: expected one of \['sgd', 'adam'"),
    ("optim.lr=-1", r"optim.lr = -1 is not accepted"),
    ("model.act=gelu", r"model.act = 'gelu' is not accepted: expected one of \['relu', 'hardtanh'\]"),
    ("schemes.float.init=w9", r"init = 'w9' is not accepted: expected the name of a scheme"),
    ("schemes.float.init=float", r"cannot start from itself"),
    ("optim=3", r"optim = 3 is not accepted: expected a table"),
    ("optim", r"expected key.sub=value"),
    ("optim.lr.x=1", r"optim.lr is a value, not a table"),
])
def test_bad_keys_and_values_are_refused(tmp_path, override, match):
    path = write(tmp_path, '[optim]\nlr = 0.1\n' + MINIMAL)
    with pytest.raises(ValueError, match=match):
        recipes.load(path, [override])


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        recipes.load(str(tmp_path / "none.toml"))
    with pytest.raises(ValueError, match="not valid TOML"):
        recipes.load(write(tmp_path, "[data\n"))
    with pytest.raises(ValueError, match=r"at least one \[schemes.<name>\]"):
        recipes.load(write(tmp_path, "[data]\nname = 'digits'\n"))


def test_parse_value():
    assert recipes.parse_value("0.01") == 0.01 and recipes.parse_value("3") == 3
    assert recipes.parse_value("true") is True and recipes.parse_value("[1, 2]") == [1, 2]
    assert recipes.parse_value("lsq:4") == "lsq:4" and recipes.parse_value("'a b'") == "a b"


def test_cli_reports_bad_scheme_spec_before_training(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["train", "digits", "--out", out, "--set", "schemes.w4a4.weights=lsq:99"]) == 2
    err = capsys.readouterr().err
    assert "scheme 'w4a4'" in err and "bits=99 is not accepted" in err and "2 to 16" in err
    assert not os.path.exists(os.path.join(out, "float"))  # nothing trained
    assert main(["train", "digits", "--out", out, "--schemes", "w5"]) == 2
    assert "expected names among ['float'" in capsys.readouterr().err


def test_init_scheme_must_be_trained_first(tmp_path):
    r = recipes.load(os.path.join(ROOT, "recipes", "digits.toml"), ["train.progress=false"])
    with pytest.raises(ValueError, match=r"starts from scheme 'float'.*train 'float' first"):
        hwq.train.run(r, str(tmp_path), schemes=["w8a8"], log=lambda s: None)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_dataset_says_how_to_get_it(tmp_path, name):
    with pytest.raises(ValueError, match=r"was not found under data.dir.*--download"):
        data_mod.datasets(name, str(tmp_path), download=False)


def test_imagenet_folder_missing(tmp_path):
    with pytest.raises(ValueError, match=r"image-net.org.*--data-dir"):
        data_mod.datasets("imagenet", str(tmp_path))
    with pytest.raises(ValueError, match="data.download = true is not accepted for 'imagenet'"):
        data_mod.datasets("imagenet", str(tmp_path), download=True)


def test_digits_split_is_fixed_and_disjoint():
    a, b = data_mod.digits(), data_mod.digits()
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert len(a.train) + len(a.test) == 1797
    train = {tuple(x.flatten().tolist()) for x in a.train.tensors[0]}
    test = [tuple(x.flatten().tolist()) for x in a.test.tensors[0]]
    # the data set has a handful of duplicate images; the split itself takes no index twice
    assert sum(t in train for t in test) < 10
    assert abs(float(a.train.tensors[0].mean())) < 1e-5


@pytest.mark.parametrize("name,shape,params", [
    ("digits_cnn", (1, 8, 8), 15_418), ("lenet5", (1, 28, 28), 61_932),
    ("cnv", (3, 32, 32), 1_546_698), ("resnet20", (3, 32, 32), 269_722)])
def test_models_forward_and_size(name, shape, params):
    # parameter counts worked by hand from the layer lists in each model's docstring
    # (digits_cnn: 144 + 4608 + 9216 conv weights + 1290 fc + BatchNorm 2 x 80; resnet20:
    # 432 + 13824 + 50688 + 202752 conv weights + 650 fc + BatchNorm 2 x 688, no shortcut weights)
    model = hwq.models.build(name, num_classes=10, in_channels=shape[0]).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == params
    with pytest.raises(ValueError, match="act='gelu' is not accepted"):
        hwq.models.build(name, in_channels=shape[0], act="gelu")


def test_torchvision_model_act_swap():
    m = hwq.models.build("mobilenet_v2", num_classes=10, act="hardtanh")
    kinds = {type(x) for x in m.modules()}
    assert torch.nn.Hardtanh in kinds and torch.nn.ReLU6 not in kinds

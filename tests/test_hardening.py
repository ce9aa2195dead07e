"""Hostile inputs to hwq.quantize, quantizer configs, plans, recipes and file I/O (issue 11): each
gets the right answer or a ValueError naming the parameter, the value and what is accepted."""
import json
import os
import stat
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import hwq
from hwq import _io
from hwq.train import recipe as recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- hwq.quantize: a module registered under two names ------------------------------------------
class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = self.a  # one module, two names

    def forward(self, x):
        return self.b(self.a(x))


def test_shared_module_quantized_once_under_every_name():
    net = Aliased()
    weight = net.a.weight
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: "b (Conv2d) ... not quantizable"
        hwq.quantize(net, weights="fixed:4", acts="fixed:4")
    assert isinstance(net.a, hwq.nn.QuantConv2d) and net.b is net.a and net.a.weight is weight


def test_sequential_with_a_repeated_module():
    c = nn.Conv2d(3, 3, 1)
    seq = nn.Sequential(c, nn.ReLU(), c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hwq.quantize(seq, weights="fixed:4")
    assert isinstance(seq[0], hwq.nn.QuantConv2d) and seq[2] is seq[0]


@pytest.mark.parametrize("by", ["b", "a"])
def test_rules_find_a_shared_module_by_any_name(by):
    net = hwq.quantize(Aliased(), weights="fixed:4", layers={by: dict(weights="fixed:2")})
    assert net.a.w_bits == 2 and net.b.w_bits == 2
    plan = hwq.Plan({by: {"weights": "fixed:3"}})
    assert hwq.quantize(Aliased(), weights="fixed:4", plan=plan).b.w_bits == 3
    skipped = hwq.quantize(Aliased(), weights="fixed:4", skip=[by])
    assert type(skipped.a) is nn.Conv2d and skipped.b is skipped.a


def test_layers_key_that_is_not_a_string():
    with pytest.raises(ValueError, match=r"layers pattern None .*glob"):
        hwq.quantize(nn.Sequential(nn.Linear(2, 2)), layers={None: dict(weights="fixed:4")})


# -- quantizer configs: values that would make NaN or Inf ----------------------------------------
@pytest.mark.parametrize("alpha", [1e308, 1e5, float("inf"), float("nan"), 0.0, 1e-9, True])
def test_pact_alpha_init_out_of_range(alpha):
    with pytest.raises(ValueError, match=r"alpha_init=.* 'pact'.*32768"):
        hwq.quant.parse({"name": "pact", "bits": 4, "alpha_init": alpha}, "act")


def test_pact_alpha_init_at_the_bounds_gives_finite_values():
    # float16 holds integer codes exactly up to 2^11 only: 16-bit pact is a float32 setting
    for alpha, bits, dtype in [(1e-6, 16, torch.float32), (32768.0, 16, torch.float32),
                               (1e-6, 2, torch.float32), (32768.0, 8, torch.float16),
                               (32768.0, 2, torch.float16)]:
        q = hwq.quant.get({"name": "pact", "bits": bits, "alpha_init": alpha}, "act").to(dtype)
        with torch.no_grad():
            y = q(torch.linspace(-1, 65504, 101).to(dtype))
        assert torch.isfinite(y).all() and float(y.max()) >= alpha * (1 - 2 ** -10)


@pytest.mark.parametrize("spec", [{"name": "fixed", "bits": 4, "momentum": True},
                                  {"name": "fixed", "bits": 4, "signed": 1},
                                  {"name": "lsq", "bits": 4, "signed": 0}])
def test_bools_and_ints_are_not_mixed_up(spec):
    with pytest.raises(ValueError, match=r"(momentum|signed)="):
        hwq.quant.parse(spec, "act")


# -- plans ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_plan_version_must_be_the_integer_1(version):
    with pytest.raises(ValueError, match=r"'version'"):
        hwq.Plan.from_dict({"format": "hwq.plan", "version": version, "layers": {}})


def test_plan_file_not_utf8_or_nested_too_deeply(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"format": "hwq.plan", "version": 1, "layers": {"caf\xe9": {}}}'
                    .encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.json.*not UTF-8"):
        hwq.Plan.from_json(bad)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json.*nested too deeply"):
        hwq.Plan.from_json(deep)


@pytest.mark.parametrize("version", [True, 1.0])
def test_profile_version_must_be_the_integer_1(version):
    net = hwq.quantize(nn.Sequential(nn.Linear(4, 2)), weights="fixed:4")
    d = hwq.profile(net, torch.randn(1, 4)).to_dict()
    d["version"] = version
    with pytest.raises(ValueError, match=r"'version'"):
        hwq.Profile.from_dict(d)


def test_profile_file_not_utf8_nested_or_a_directory(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(ValueError, match=r"p\.json.*not UTF-8"):
        hwq.Profile.from_json(bad)
    bad.write_text("{" * 0 + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"p\.json.*nested too deeply"):
        hwq.Profile.from_json(bad)
    with pytest.raises(ValueError, match=r"directory"):
        hwq.Profile.from_json(tmp_path)


# -- recipes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,key", [("optim.lr=inf", "optim.lr"), ("optim.lr=nan", "optim.lr"),
                                          ("optim.momentum=nan", "optim.momentum"),
                                          ("schedule.gamma=inf", "schedule.gamma"),
                                          ("train.label_smoothing=1.0", "train.label_smoothing"),
                                          ("schemes.float.clip_weights=inf",
                                           "schemes.float.clip_weights"),
                                          ("schemes.float.optim={lr=inf}",
                                           "schemes.float.optim.lr")])
def test_recipe_numbers_must_be_finite(override, key):
    with pytest.raises(ValueError, match=rf"{key} = .* not accepted"):
        recipes.load(recipes.find("digits"), [override])


def test_recipe_not_utf8(tmp_path):
    p = tmp_path / "r.toml"
    p.write_bytes(b'name = "caf\xe9"\n[schemes.float]\n')
    with pytest.raises(ValueError, match=r"r\.toml.*not UTF-8"):
        recipes.load(p)


def test_toml_reader_falls_back_to_tomli_without_tomllib():
    pytest.importorskip("tomli")
    code = ("import sys; sys.modules['tomllib'] = None\n"  # Python 3.10 has no tomllib
            "from hwq.train import recipe\n"
            "r = recipe.load(recipe.find('digits'), ['optim.lr=0.5'])\n"
            "import hwq._io as io; print(io.tomllib.__name__, r['optim']['lr'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tomli", "0.5"]


# -- atomic writes -------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_write_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        _io.atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:  # what open() gives: the reference
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o666 & ~umask


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    _io.atomic_write_text(p, "new")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640 and p.read_text() == "new"


def test_atomic_write_errors_name_the_users_path(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        _io.atomic_write_text(tmp_path / "missing" / "x.json", "x")
    assert e.value.filename == str(tmp_path / "missing" / "x.json")
    with pytest.raises(IsADirectoryError) as e:
        _io.atomic_write_text(tmp_path, "x")
    assert e.value.filename == str(tmp_path)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_plan_written_with_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        hwq.Plan({"x": {"weights": "fixed:4"}}).to_json(tmp_path / "p.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "p.json").st_mode) == 0o644
    assert json.loads((tmp_path / "p.json").read_text())["version"] == 1


# -- packaging: the shipped recipes are package data ---------------------------------------------
def test_shipped_recipes_are_package_data_of_a_built_package(tmp_path):
    """setuptools' build_py (what a wheel holds, without the C++ build) copies the recipes into
    hwq/recipes; hwq imported from there finds and loads them, relative plan paths included."""
    build = tmp_path / "build"
    p = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(build)], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (build / "hwq" / "recipes" / "digits.toml").is_file()
    assert not (build / "hwq" / "recipes").is_symlink()
    code = ("import hwq, os; from hwq.train import recipe\n"
            "r = recipe.load(recipe.find('digits'))\n"
            "print(hwq.__file__); print(r['schemes']['mixed']['plan'])")
    env = dict(os.environ, PYTHONPATH=str(build))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    module, plan = out.stdout.split()
    assert module.startswith(str(build)) and plan.startswith(str(build)) and os.path.isfile(plan)


# -- dtypes and devices a quantizer cannot serve --------------------------------------------------
@pytest.mark.parametrize("spec,dtype,ok", [
    ("fixed:16", torch.float16, False), ("pact:16", torch.float16, False),  # pact:16 gave NaN
    ("lsq:12", torch.float16, False), ("fixed:11", torch.float16, True),
    ("fixed:9", torch.bfloat16, False), ("pact:8", torch.bfloat16, True),
    ("fixed:16", torch.float32, True)])
def test_codes_wider_than_the_dtype_holds_are_refused(spec, dtype, ok):
    m = hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3)), weights="fixed:8", acts=spec).to(dtype)
    x = (torch.randn(2, 3, 8, 8) * 100).to(dtype)
    if not ok:
        with pytest.raises(ValueError, match=rf"'{spec}' on torch\.{str(dtype)[6:]} tensors"):
            m(x)
        return
    m.train()
    with torch.no_grad():
        m(x)
        m.eval()
        y = m[0].act_quant(x)
    codes, step = m[0].act_quant.quantize_int(x)
    bits = int(spec.split(":")[1])
    assert torch.isfinite(y).all() and torch.equal(codes, codes.round())
    assert float(codes.abs().max()) <= 2 ** bits - 1  # signed or unsigned b-bit codes
    if spec.startswith("fixed"):  # power-of-two step, exact in any dtype: the float32 codes
        ref, _ = m[0].act_quant.float().quantize_int(x.float())
        assert torch.equal(codes.float(), ref)


def test_meta_device_model_gets_a_named_error():
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2))
    hwq.quantize(net, weights="lsq:4", acts="fixed:4")  # swapping itself works on meta
    with pytest.raises(ValueError, match=r"meta device.*to_empty"):
        hwq.profile(net, torch.randn(1, 3, 8, 8, device="meta"))
    binary = hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3, device="meta")), weights="binary",
                          acts="binary")
    with pytest.raises(ValueError, match=r"meta device"):
        binary(torch.randn(1, 3, 8, 8, device="meta"))


# -- hwq.profile and hwq.deploy inputs ------------------------------------------------------------
def _qnet():
    return hwq.quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2)),
                        weights="fixed:4", acts="fixed:4")


def test_profile_batches_must_be_an_iterable_of_batches():
    net, x = _qnet(), torch.randn(2, 3, 8, 8)
    for bad in (5, torch.randn(4, 3, 8, 8)):  # a tensor would be profiled sample by sample
        with pytest.raises(ValueError, match=r"batches is a (int|Tensor)"):
            hwq.profile(net, x, batches=bad)
    with pytest.raises(ValueError, match=r"name=5"):
        hwq.profile(net, x, name=5)


def test_profile_input_of_the_wrong_shape_or_nan():
    net = _qnet()
    with pytest.raises(ValueError, match=r"cannot run an input of shape\(s\) \[\(1, 5, 8, 8\)\]"):
        hwq.profile(net, torch.randn(1, 5, 8, 8))
    with pytest.raises(ValueError, match=r"layer '0' input: the codes hold NaN"):
        hwq.profile(net, torch.randn(1, 3, 8, 8),  # before: "cannot convert float NaN to integer"
                    batches=[torch.full((1, 3, 8, 8), float("nan"))])


def test_deploy_arguments():
    net = _qnet()
    net.train()
    net(torch.randn(2, 3, 8, 8))
    net.eval()
    with pytest.raises(TypeError, match=r"fold_bn='yes'"):
        hwq.deploy(net, fold_bn="yes")
    if hwq.kernels.HAVE_EXTENSION:
        with pytest.raises(ValueError, match=r"example_input of shape \(1, 5, 8, 8\)"):
            hwq.deploy(net, example_input=torch.randn(1, 5, 8, 8))

"""hwq.quantize: rules, errors (model untouched), float identity, reporting, torchvision models."""
import io
import warnings

import pytest
import torch
import torchvision
from torch import nn

import hwq


class Net(nn.Module):
    """A user's own model with Python control flow (no tracing could follow it)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x).relu()
        for i, b in enumerate(self.blocks):
            if i % 2 == 0 or x.mean() > 0:  # data-dependent branch
                x = x + b(x).relu()
        x = self.bn(self.dw(x))
        return self.head(x.mean((2, 3)))


def kinds(model):
    return {n: (m.w_quant, m.a_quant) for n, m in model.named_modules()
            if isinstance(m, hwq.nn.QuantLayer)}


def test_rules_later_win_and_partial_rules_keep_the_rest():
    m = hwq.quantize(Net(), weights="fixed:4", acts="fixed:4",
                     layers={"blocks.*": dict(weights="binary"), "blocks.2": dict(acts="lsq:2"),
                             "stem": dict(weights="fixed:8", acts=None)}, skip=["head"])
    got = kinds(m)
    assert got == {"stem": ("fixed:8", "float"), "blocks.0": ("binary", "fixed:4"),
                   "blocks.1": ("binary", "fixed:4"), "blocks.2": ("binary", "lsq:2"),
                   "dw": ("fixed:4", "fixed:4")}
    assert type(m.head) is nn.Linear  # skipped: untouched
    m(torch.randn(2, 3, 8, 8)).sum().backward()


def test_keeps_trained_weights_and_none_is_bit_identical():
    torch.manual_seed(0)
    ref = Net().eval()
    x = torch.randn(2, 3, 8, 8)
    expected = ref(x)
    weight = ref.stem.weight
    hwq.quantize(ref)  # None everywhere
    assert ref.stem.weight is weight
    assert all(type(m) in (hwq.nn.QuantConv2d, hwq.nn.QuantLinear) for m in
               [ref.stem, ref.dw, ref.head, *ref.blocks])
    assert torch.equal(ref(x), expected)


def test_requantizing_replaces_quantizers():
    m = hwq.quantize(Net(), weights="fixed:8", acts="fixed:8")
    hwq.quantize(m, weights="binary", acts="binary", skip=["head"])
    assert kinds(m)["stem"] == ("binary", "binary") and kinds(m)["head"] == ("fixed:8", "fixed:8")


@pytest.mark.parametrize("kwargs,match", [
    (dict(layers={"blok*": dict(weights="binary")}), r"layers pattern 'blok\*' matches no quantizable layer"),
    (dict(skip=["nothing"]), "skip pattern 'nothing' matches no quantizable layer"),
    (dict(plan={"format": "hwq.plan", "version": 1, "layers": {"stem2": {"weights": "binary"}}}),
     r"plan layer 'stem2' matches no quantizable layer; did you mean \['stem'\]"),
    (dict(layers={"stem": dict(weight="binary")}), r"unknown key\(s\) \['weight'\]"),
    (dict(layers={"stem": "binary"}), "expected a dict with keys among"),
    (dict(layers=[("stem", {})]), "layers=.* is not accepted"),
    (dict(weights="fixed:99"), "bits=99 is not accepted"),
    (dict(acts="ternary"), "cannot be applied to activations"),
    (dict(layers={"head": dict(weights="pact:4")}), r"layers\['head'\], weights: quantizer 'pact'"),
    (dict(plan=3), "plan=3 is not accepted"),
])
def test_bad_rules_raise_and_leave_the_model_untouched(kwargs, match):
    m = Net()
    before = [type(x) for x in m.modules()]
    with pytest.raises(ValueError, match=match):
        hwq.quantize(m, **{"weights": "fixed:4", **kwargs})
    assert [type(x) for x in m.modules()] == before


def test_model_that_is_a_single_layer_is_refused():
    with pytest.raises(ValueError, match="model is itself a Conv2d"):
        hwq.quantize(nn.Conv2d(1, 1, 1), weights="fixed:4")


@pytest.mark.parametrize("call", [hwq.quantize, hwq.deploy])
def test_a_model_that_is_not_a_module_is_a_type_error_in_quantize_and_deploy(call):
    with pytest.raises(TypeError, match="OrderedDict.*expected a torch.nn.Module"):
        call(Net().state_dict())


def test_skip_may_be_a_generator():
    # A generator can be read once only: quantize must read it once (it read it twice, and the
    # second pass saw nothing, so the skipped layers were reported as left float by mistake).
    by_list = hwq.quantize(Net(), weights="fixed:4", skip=["head", "blocks.*"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_gen = hwq.quantize(Net(), weights="fixed:4", skip=(p for p in ["head", "blocks.*"]))
    assert type(by_gen.head) is nn.Linear and type(by_gen.blocks[1]) is nn.Conv2d
    assert kinds(by_gen) == kinds(by_list) == {"stem": ("fixed:4", "float"),
                                               "dw": ("fixed:4", "float")}


def test_unquantizable_layers_are_reported_not_silently_kept():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(2, 4, 3)
            self.up = nn.ConvTranspose2d(4, 4, 2)
            self.attn = nn.MultiheadAttention(4, 2)
            self.fc = nn.Linear(4, 2)

    m = Mixed()
    with pytest.warns(hwq.UnquantizedLayersWarning) as rec:
        hwq.quantize(m, weights="fixed:4")
    msg = str(rec[0].message)
    for name in ["c1 (Conv1d)", "up (ConvTranspose2d)", "attn (MultiheadAttention)",
                 "attn.out_proj (NonDynamicallyQuantizableLinear)"]:
        assert name in msg
    assert "fc" not in msg.split(":", 1)[1].replace("attn.out_proj", "")
    assert isinstance(m.fc, hwq.nn.QuantLinear)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reported when nothing is left
        hwq.quantize(Net(), weights="fixed:4")


# Each torchvision model with a different configuration, first/last layers 8-bit where it matters.
TORCHVISION = [
    ("resnet18", dict(weights="fixed:4", acts="fixed:4",
                      layers={"conv1": dict(weights="fixed:8", acts=None), "fc": dict(weights="fixed:8")})),
    ("resnet50", dict(weights={"name": "lsq", "bits": 4, "per_channel": True}, acts="lsq:4")),
    ("mobilenet_v2", dict(weights="fixed:8", acts="pact:4")),
    ("vgg11_bn", dict(weights="binary", acts="binary",
                      layers={"features.0": dict(weights="fixed:8", acts=None),
                              "classifier.6": dict(weights="fixed:8", acts="fixed:8")})),
    ("alexnet", dict(weights="ternary", acts="fixed:4")),
    ("googlenet", dict(weights="pow2:4", acts="lsq:4")),
]


def build(name):
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)


def logits(out):
    return out.logits if hasattr(out, "logits") else out  # googlenet returns aux outputs in training


@pytest.mark.parametrize("name,cfg", TORCHVISION, ids=[t[0] for t in TORCHVISION])
@pytest.mark.filterwarnings("ignore:binary activation quantizer got")  # vgg: binary after ReLU
def test_torchvision_models(name, cfg):
    size = 64 if name != "alexnet" else 96
    x = torch.randn(2, 3, size, size)
    ref = build(name).eval()
    with torch.no_grad():
        expected = ref(x)
    # None everywhere: bit-identical to float
    hwq.quantize(ref)
    with torch.no_grad():
        assert torch.equal(ref(x), expected)

    model = hwq.quantize(build(name), **cfg)
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    model.train()
    logits(model(x)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads[:5])

    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = hwq.quantize(build(name), **cfg).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))

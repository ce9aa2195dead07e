"""Names, specs and their round trip; bad specs get errors that name what was wrong."""
import pytest
import torch

from hwq import quant


def test_names_lists_every_kind():
    assert quant.names() == ["binary", "fixed:b", "float", "lsq:b", "pact:b", "pow2:b", "ternary"]


@pytest.mark.parametrize("spec,role", [
    ("binary", "weight"), ("binary", "act"), ("ternary", "weight"), ("pow2:5", "weight"),
    ("fixed:4", "weight"), ("fixed:16", "act"), ("lsq:2", "weight"), ("pact:3", "act"),
    ({"name": "fixed", "bits": 6, "per_channel": True}, "weight"),
    ({"name": "binary", "scale": "channel", "grad": "approx"}, "weight"), (None, "act")])
def test_spec_round_trip(spec, role):
    cfg = quant.parse(spec, role)
    assert quant.parse(cfg.spec(), role) == cfg
    assert quant.parse(cfg.to_dict() if cfg.kind != "float" else None, role) == cfg
    assert quant.parse(cfg, role) == cfg


def test_precision_attributes():
    assert quant.get("binary").bits == 1
    assert quant.get("ternary").bits == 2
    assert quant.get("pow2:3").bits == 3
    assert quant.get("lsq:5", role="act").bits == 5
    assert quant.get("fixed:4", per_channel=True).name == "fixed:4(signed=None,per_channel=True,momentum=0.1)"
    assert quant.get(None).is_float and quant.get(None).name == "float"


@pytest.mark.parametrize("spec,role,match", [
    ("fixd:4", "weight", r"unknown quantizer 'fixd:4': accepted are None, binary, fixed:b \(b=2..16\)"),
    ("fixed:0", "weight", "bits=0 is not accepted for quantizer 'fixed': expected an integer from 2 to 16"),
    ("fixed:1", "weight", "bits=1 is not accepted"),
    ("fixed:33", "weight", "bits=33 is not accepted"),
    ("fixed", "weight", "'fixed' needs a bit width, written 'fixed:b'"),
    ("fixed:four", "weight", "needs a bit width"),
    ("lsq:17", "act", "bits=17 is not accepted for quantizer 'lsq'"),
    ("pow2:9", "weight", "bits=9 is not accepted for quantizer 'pow2': expected an integer from 2 to 8"),
    ("binary:4", "weight", "'binary' takes no bit width"),
    ("ternary:2", "weight", "'ternary' takes no bit width"),
    ("pact:4", "weight", "quantizer 'pact' cannot be applied to weights: it quantizes activations only"),
    ("ternary", "act", "cannot be applied to activations"),
    ("pow2:4", "act", "cannot be applied to activations"),
    (4, "weight", "quantizer spec 4 \\(type int\\) is not accepted"),
    ({"name": "fixed"}, "weight", "'fixed' needs 'bits'"),
    ({"name": "fixed", "bits": 4, "rounding": "up"}, "weight", r"unknown option\(s\) \['rounding'\]"),
    ({"bits": 4}, "weight", "'name' must be one of"),
    ({"name": "binary", "scale": "row"}, "weight", "scale='row' is not accepted for quantizer 'binary'"),
    ({"name": "binary", "scale": "channel"}, "act", "scale='channel' is not accepted for binary activations"),
    ({"name": "fixed", "bits": 4, "per_channel": True}, "act", "per_channel=True is not accepted for 'fixed' activations"),
    ({"name": "fixed", "bits": 4, "per_channel": "yes"}, "weight", "per_channel='yes' is not accepted"),
    ({"name": "fixed", "bits": 4, "momentum": 0}, "act", "momentum=0 is not accepted"),
    ({"name": "fixed", "bits": True}, "weight", "bits=True is not accepted"),
    ({"name": "pact", "bits": 4, "alpha_init": -1}, "act", "alpha_init=-1 is not accepted"),
    ("fixed:4", "bias", "role='bias' is not accepted"),
])
def test_bad_specs(spec, role, match):
    with pytest.raises(ValueError, match=match):
        quant.get(spec, role=role)


def test_per_channel_lsq_needs_channels():
    with pytest.raises(ValueError, match="channels=None: a per-channel lsq quantizer needs"):
        quant.get("lsq:4", per_channel=True)


def test_register_a_new_kind():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class HalfConfig(quant.QuantConfig):
        kind = "half_test"
        fixed_bits = 16

    class Half(quant.Quantizer):
        def __init__(self, config, role, channels=None):
            super().__init__(config, role)

        def forward(self, x):
            return x.half().to(x.dtype)

    quant.register(HalfConfig, Half)
    try:
        assert "half_test" in quant.names()
        assert quant.get("half_test").bits == 16
    finally:
        from hwq.quant import registry
        registry._REGISTRY.pop("half_test")

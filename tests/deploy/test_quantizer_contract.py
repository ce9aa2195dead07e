"""The quantizer-to-deploy contract (hwq/quant/base.py): a quantizer defined here, one file's worth
of code plus the register line, deploys, profiles and exports through its declared capabilities
alone; one lacking a capability gets an error (or a kept layer) naming it.

Independent references: the QAT model in eval mode (deploy), codes counted here in float64 with
plain Python (profile), onnxruntime / qonnx's executor run by hwq.export's verify (export)."""
import dataclasses

import pytest
import torch
from torch import nn

import hwq
from hwq import kernels
from hwq.kernels import int8
from hwq.quant import QuantConfig, Quantizer, registry

from .helpers import calibrate


# ---- the new quantizer: what a user writes ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MaxAbsConfig(QuantConfig):
    """bits: 2..8. signed: two's-complement codes, or unsigned ones (activations after a ReLU)."""

    kind = "maxabs_test"
    bit_range = (2, 8)
    integer_codes = True   # quantize_int
    uniform_grid = True    # step_and_range, codes_signed
    bits: int = 4
    signed: bool = True

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ValueError(f"bits={self.bits!r} is not accepted: expected 2..8")


class MaxAbsQuantizer(Quantizer):
    """step = max|x| / hi, values clamp(round(x / step), lo, hi) * step (round half to even).
    Weights: the step of the current weights; activations: the step of the first batch, kept."""

    def __init__(self, config: MaxAbsConfig, role: str, channels=None):
        super().__init__(config, role)
        self.register_buffer("act_step", torch.tensor(float("nan")))

    def codes_signed(self) -> bool:
        return self.config.signed

    def step_and_range(self, x):
        b = self.config.bits
        lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if self.config.signed else (0, 2 ** b - 1)
        if self.role == "weight":
            step = x.detach().abs().amax() / hi
        else:
            if torch.isnan(self.act_step):
                self.act_step.copy_(x.detach().abs().amax() / hi)
            step = self.act_step
        return step.to(x.dtype), lo, hi

    def forward(self, x):
        step, lo, hi = self.step_and_range(x)
        q = torch.clamp(torch.round(x / step), lo, hi) * step
        return q.detach() + (x - x.detach())  # exactly q, identity gradient

    @torch.no_grad()
    def quantize_int(self, x):
        step, lo, hi = self.step_and_range(x)
        return torch.clamp(torch.round(x / step), lo, hi), step


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test
    hwq.quant.register(MaxAbsConfig, MaxAbsQuantizer)


UNSIGNED4 = {"name": "maxabs_test", "bits": 4, "signed": False}


def _net(first_acts="maxabs_test:4", later_acts=UNSIGNED4):
    torch.manual_seed(0)
    return nn.Sequential(
        hwq.nn.QuantConv2d(3, 16, 3, padding=1, weights="maxabs_test:4", acts=first_acts),
        nn.BatchNorm2d(16), nn.ReLU(),
        hwq.nn.QuantConv2d(16, 24, 3, stride=2, padding=1, weights="maxabs_test:4",
                           acts=later_acts),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        hwq.nn.QuantLinear(24, 10, weights="maxabs_test:4", acts=later_acts))




X = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(1))


# ---- a quantizer with the capabilities: deploy, profile, export -------------------------------

@pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
@pytest.mark.parametrize("max_pp", [64, 0])
def test_new_quantizer_deploys(registered, max_pp):
    model = calibrate(_net(), X, steps=1)
    dep = hwq.deploy(model, max_plane_products=max_pp)
    impls = [d.impl for d in dep.deploy_report.layers]
    # signed first-layer codes: int8 only; unsigned later ones: bit-serial when allowed
    signed_impl = "int8 W4A4" if int8.HAVE_ONEDNN_INT8 else "kept"
    unsigned_impl = "bitserial W4A4" if max_pp else ("int8 W4A4" if int8.HAVE_ONEDNN_INT8
                                                     else "kept")
    assert impls == [signed_impl, unsigned_impl, unsigned_impl], dep.deploy_report
    with torch.no_grad():
        want, got = model(X), dep(X)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_new_quantizer_profiles(registered):
    model = calibrate(_net(), X, steps=1)
    prof = hwq.profile(model, X, batches=[X])
    assert [(lay.w_quant, lay.w_bits, lay.a_bits, lay.w_float, lay.a_float)
            for lay in prof.layers] == [("maxabs_test:4", 4, 4, False, False)] * 3
    # the first layer's weight statistics, counted here from the formula in float64
    w = model[0].weight.detach().double()
    codes = [int(c) for c in torch.clamp(torch.round(w / (w.abs().max() / 7)), -8, 7).flatten()]
    s = prof.layers[0].stats
    assert (s.w_values, s.w_zeros, s.w_essential) == (
        len(codes), codes.count(0), sum(bin(abs(c)).count("1") for c in codes))


@pytest.mark.parametrize("fmt", ["qonnx", "qdq"])
def test_new_quantizer_exports(registered, tmp_path, fmt):
    for name in ("onnx", "onnxscript", "onnxruntime", "qonnx"):
        pytest.importorskip(name)
    model = calibrate(_net(), X, steps=1)
    report = hwq.export(model, X, tmp_path / "m.onnx", fmt)  # verify=True: runs the file
    assert report.exact_weights == []
    ops = {r.name: r.op_types for r in report.quantizers}
    if fmt == "qonnx":
        assert ops["0.act_quant"] == ["Quant"] and ops["0.weight_quant"] == ["Quant"]
    else:
        assert ops["3.act_quant"][0] == "QuantizeLinear"
        assert ops["3.weight_quant"] == ["DequantizeLinear"]


# ---- quantizers lacking a capability -------------------------------------------------------

def test_register_refuses_a_capability_without_its_method(registered):
    @dataclasses.dataclass(frozen=True)
    class NoGridConfig(MaxAbsConfig):
        kind = "nogrid_test"

    class NoGrid(Quantizer):  # forward and quantize_int only
        forward = MaxAbsQuantizer.forward
        quantize_int = MaxAbsQuantizer.quantize_int

    with pytest.raises(TypeError, match=r"NoGridConfig.uniform_grid is True but NoGrid does not "
                                        r"implement step_and_range, codes_signed \(quantizer "
                                        r"'nogrid_test'\)"):
        hwq.quant.register(NoGridConfig, NoGrid)

    @dataclasses.dataclass(frozen=True)
    class NoCodesConfig(MaxAbsConfig):
        kind = "nocodes_test"
        integer_codes = False

    with pytest.raises(TypeError, match=r"NoCodesConfig.uniform_grid is True but integer_codes "
                                        r"is False \(quantizer 'nocodes_test'\)"):
        hwq.quant.register(NoCodesConfig, MaxAbsQuantizer)
    assert "nogrid_test" not in hwq.quant.names() and "nocodes_test" not in hwq.quant.names()


@dataclasses.dataclass(frozen=True)
class Log2Config(QuantConfig):
    """Integer codes but no uniform grid: 0, +/-2^k, k = 0..6 (a log-domain quantizer)."""

    kind = "log2_test"
    fixed_bits = 8
    integer_codes = True


class Log2Quantizer(Quantizer):
    def forward(self, x):
        return self.quantize_int(x)[0].detach() + (x - x.detach())

    @torch.no_grad()
    def quantize_int(self, x):
        e = torch.log2(x.abs().clamp(min=1.0)).round().clamp(max=6)
        return torch.sign(x) * torch.exp2(e) * (x.abs() >= 0.5), torch.ones(())


@dataclasses.dataclass(frozen=True)
class BF16Config(QuantConfig):
    """No integer codes: rounds to bfloat16."""

    kind = "bf16_test"
    fixed_bits = 16


class BF16Quantizer(Quantizer):
    def forward(self, x):
        return x.to(torch.bfloat16).to(x.dtype)


@pytest.fixture
def lacking(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    hwq.quant.register(MaxAbsConfig, MaxAbsQuantizer)
    hwq.quant.register(Log2Config, Log2Quantizer)
    hwq.quant.register(BF16Config, BF16Quantizer)


@pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
def test_deploy_keeps_a_layer_whose_quantizer_lacks_the_capability(lacking):
    model = _net(first_acts="log2_test")
    model[3].set_quantizers("bf16_test", UNSIGNED4)
    model = calibrate(model, X, steps=1)
    rep = hwq.deploy(model, max_plane_products=64).deploy_report
    assert [d.impl for d in rep.layers] == ["kept", "kept", "bitserial W4A4"]
    assert rep.layers[0].reason == ("activation quantizer 'log2_test' has no integer kernel: its "
                                    "config (Log2Config) declares neither uniform_grid nor bipolar")
    assert rep.layers[1].reason == ("weight quantizer 'bf16_test' has no integer codes: its config "
                                    "(BF16Config) does not declare integer_codes")


def test_profile_refuses_a_quantizer_without_integer_codes(lacking):
    model = _net()
    model[3].set_quantizers("bf16_test", UNSIGNED4)
    model = calibrate(model, X, steps=1)
    with pytest.raises(ValueError, match=r"layer '3' weight quantizer 'bf16_test' \(BF16Quantizer\) "
                                         r"has no integer codes \(its config BF16Config does not "
                                         r"declare integer_codes\)"):
        hwq.profile(model, X)
    # integer codes without a uniform grid are enough for the profile
    model = calibrate(_net(first_acts="log2_test"), X, steps=1)
    assert hwq.profile(model, X, batches=[X]).layers[0].a_quant == "log2_test"


def test_export_refuses_activations_without_a_grid_naming_them(lacking, tmp_path):
    for name in ("onnx", "onnxscript", "onnxruntime", "qonnx"):
        pytest.importorskip(name)
    from hwq.export import ExportError
    model = calibrate(_net(first_acts="log2_test"), X, steps=1)
    with pytest.raises(ExportError, match=r"layer '0' \(0.act_quant\): activation quantizer "
                                          r"'log2_test' has neither a uniform grid"):
        hwq.export(model, X, tmp_path / "m.onnx", "qdq")

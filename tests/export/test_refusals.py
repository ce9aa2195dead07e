"""What hwq.export refuses, with an error naming the layer or the parameter, and that a refused or
failed export writes nothing: the previous file stays as it was, no temporary file is left."""
import dataclasses
import os

import pytest
import torch
from torch import nn

import hwq
from hwq.export import ExportError
from hwq.nn import QuantConv2d
from hwq.quant import QuantConfig, Quantizer

from .helpers import calibrated, require_runtimes

require_runtimes()

X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous contents")
    return path


def _untouched(path):
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_binary_activation_in_qdq_names_the_layer(old_file):
    model = calibrated("digits_cnn", "binary", "fixed:4", act="hardtanh")
    model.conv2.set_quantizers("binary", "binary")
    with pytest.raises(ExportError, match=r"layer 'conv2' \(conv2.act_quant\).*binary activation"
                                          r".*fixed, lsq, pact.*format='qonnx'"):
        hwq.export(model, X, old_file, "qdq")
    _untouched(old_file)


@dataclasses.dataclass(frozen=True)
class _MysteryConfig(QuantConfig):
    kind = "mystery"
    fixed_bits = 3
    integer_codes = True  # _Mystery.quantize_int


class _Mystery(Quantizer):
    """A quantizer with integer codes but neither a uniform grid nor one bit (a lookup table)."""

    def forward(self, x):
        return torch.tanh(x).mul(3).round()

    def quantize_int(self, x):
        return self(x), torch.ones(())


@pytest.mark.parametrize("fmt", ["qonnx", "qdq"])
def test_activation_quantizer_without_a_form_is_refused(old_file, fmt):
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    model.conv3.act_quant = _Mystery(_MysteryConfig(), "act")
    with pytest.raises(ExportError, match=r"layer 'conv3' \(conv3.act_quant\).*'mystery'.*"
                                          r"Supported activation quantizers"):
        hwq.export(model, X, old_file, fmt)
    _untouched(old_file)


def test_any_weight_quantizer_is_written_exactly(tmp_path):
    # Weights are constants: one without a uniform grid is written as its exact values.
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    model.conv2.weight_quant = _Mystery(_MysteryConfig(), "weight")
    report = hwq.export(model, X, tmp_path / "m.onnx", "qonnx")
    assert report.exact_weights == ["conv2"]


def test_deployed_model_is_refused(old_file):
    from hwq import kernels
    if not kernels.HAVE_EXTENSION:
        pytest.skip("hwq._C is not built: nothing to deploy")
    model = calibrated("digits_cnn", "binary", "binary", act="hardtanh")
    deployed = hwq.deploy(model)
    with pytest.raises(ValueError, match=r"layer '\w+' is a \w+ made by hwq.deploy"):
        hwq.export(deployed, X, old_file, "qonnx")
    _untouched(old_file)


def test_a_file_the_runtime_disagrees_with_is_not_written(old_file, monkeypatch):
    from hwq.export import runtime
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    real = runtime.run
    monkeypatch.setattr(runtime, "run", lambda proto, x, fmt: real(proto, x, fmt) * 1.2)
    with pytest.raises(ValueError, match="computes a different output.*not writing the file"):
        hwq.export(model, X, old_file, "qdq")
    _untouched(old_file)


def test_a_replacement_that_computes_something_else_is_refused(old_file, monkeypatch):
    from hwq.export import mapping
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    real = mapping.QuantNode.__init__

    def off_by_one_bit(self, scale, bits, signed, narrow):
        real(self, scale, bits - 1, signed, narrow)

    monkeypatch.setattr(mapping.QuantNode, "__init__", off_by_one_bit)
    with pytest.raises(ExportError, match=r"layer 'conv1' \(conv1.weight_quant\).*does not "
                                          "reproduce"):
        hwq.export(model, X, old_file, "qonnx")
    _untouched(old_file)


@pytest.mark.parametrize("kwargs,match", [
    (dict(format="onnx"), r"format='onnx' is not accepted: expected one of \('qonnx', 'qdq'\)"),
    (dict(format="qonnx", dynamic_batch=True), "dynamic_batch=True is not accepted for "
                                               "format='qonnx'"),
    (dict(int4=1), "int4=1 is not accepted: expected True or False"),
    (dict(example_input=X.to(torch.int64)), "example_input=a torch.int64 tensor is not accepted"),
    (dict(example_input=[X]), "example_input=list is not accepted"),
    (dict(path=""), "path='' is not accepted"),
    (dict(model="digits_cnn"), "model=str is not accepted"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(model=calibrated("digits_cnn", "fixed:4", "fixed:4"), example_input=X,
                path=tmp_path / "m.onnx")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hwq.export(**args)
    assert not os.listdir(tmp_path)


def test_missing_folder_and_float64(tmp_path):
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    with pytest.raises(ValueError, match="folder .* does not exist"):
        hwq.export(model, X, tmp_path / "nope" / "m.onnx")
    with pytest.raises(ValueError, match=r"model tensor 'conv1.weight' is torch.float64: export "
                                         r"takes float32 models"):
        hwq.export(model.double(), X.double(), tmp_path / "m.onnx")


def test_model_and_its_quantizers_are_not_changed(tmp_path):
    # An LSQ model that has not seen data: export sets the steps on its own copy only.
    model = hwq.models.build("digits_cnn", in_channels=1)
    hwq.quantize(model, weights="lsq:4", acts="lsq:4")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hwq.export(model, X, tmp_path / "m.onnx", "qdq")
    after = model.state_dict()
    assert model.training
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not bool(model.conv1.act_quant.initialized)


def test_file_mode_follows_the_umask(tmp_path):
    model = calibrated("digits_cnn", "fixed:4", "fixed:4")
    old = os.umask(0o022)
    try:
        hwq.export(model, X, tmp_path / "m.onnx", "qonnx", verify=False)
    finally:
        os.umask(old)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644

"""Trained digits models: onnxruntime (QDQ) and qonnx's executor (QONNX) against the QAT model in
eval mode on the whole test split (450 images): arg-max agreement of at least 99.9% and the same
test accuracy."""
import pytest
import torch

import hwq

from .helpers import assert_matches, calibrated, require_runtimes, train_digits

require_runtimes()

from hwq.export.runtime import run_onnxruntime, run_qonnx  # noqa: E402

SCHEMES = {
    "w4a4_lsq": ("lsq:4", "lsq:4", "relu", None, ("qonnx", "qdq")),
    # BNN practice: Hardtanh before binary activations, first and last layer 8-bit.
    "w1a1_ends8": ("binary", "binary", "hardtanh",
                   {"conv1": {"weights": "fixed:8", "acts": "fixed:8"},
                    "fc": {"weights": "fixed:8", "acts": "fixed:8"}}, ("qonnx",)),
    "w1a2": ({"name": "binary", "scale": "channel"}, "lsq:2", "relu",
             {"conv1": {"weights": "fixed:8"}, "fc": {"weights": "fixed:8"}}, ("qonnx", "qdq")),
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_test_split_agrees(tmp_path, digits_train, digits_test, scheme):
    weights, acts, act, layers, formats = SCHEMES[scheme]
    model = calibrated("digits_cnn", weights, acts, act=act, layers=layers)
    model = train_digits(model, digits_train, epochs=3)
    xs, ys = digits_test
    with torch.no_grad():
        want = model(xs).numpy()
    acc = float((torch.from_numpy(want).argmax(1) == ys).float().mean())
    assert acc > 0.8, f"the model did not train ({acc:.3f}): the comparison would say little"
    for fmt in formats:
        path = tmp_path / f"{fmt}.onnx"
        if fmt == "qdq":
            hwq.export(model, xs[:16], path, fmt, dynamic_batch=True)
            got = run_onnxruntime(path, xs.numpy())
        else:  # QONNX keeps the example's batch: export with the whole split
            hwq.export(model, xs, path, fmt, verify=False)
            got = run_qonnx(path, xs.numpy())
        assert_matches(got, want, argmax_fraction=0.999)
        assert float((torch.from_numpy(got).argmax(1) == ys).float().mean()) == pytest.approx(
            acc, abs=1 / len(ys) + 1e-9)

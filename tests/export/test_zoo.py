"""The CIFAR-10 entries of hwq.zoo, where they and the data set are present: onnxruntime (QDQ, the
first 2,000 test images) and qonnx's executor (QONNX, the first 1,000: it runs node by node) agree
with the QAT model on the arg-max of at least 99.9% of the images (a few minutes per entry on two
cores otherwise). Deep networks see more rounding-boundary crossings (trained ResNet-20 W8A8:
10% of the images differ somewhat, by at most 0.6% of the largest output), so half of the images,
not 99%, must be equal to 1e-4 here; the arg-max criterion is the issue's."""
import numpy as np
import pytest
import torch

import hwq

from .helpers import assert_matches, cifar10_dir, require_runtimes

require_runtimes()

from hwq.export.runtime import run_onnxruntime, run_qonnx  # noqa: E402

try:
    from hwq import zoo as _zoo
    ENTRIES = [n for n in _zoo.names()
               if n.startswith("cifar10/") and not n.split("/")[-1].startswith(".")]
except ImportError:
    ENTRIES = []

QDQ_IMAGES, QONNX_IMAGES, QONNX_BATCH = 2000, 1000, 250


def check_entry(name, data_dir, tmp_path):
    from hwq import zoo
    model = zoo.load(name)
    if all(q.is_float for q in model.modules() if isinstance(q, hwq.quant.Quantizer)):
        pytest.skip(f"{name} is not quantized: nothing to export but float ops")
    test = zoo.test_set(zoo.info(name), data_dir)
    xs = torch.stack([test[i][0] for i in range(QDQ_IMAGES)])
    with torch.no_grad():
        want = torch.cat([model(xs[i:i + 500]) for i in range(0, len(xs), 500)]).numpy()
    binary_acts = any(q.role == "act" and q.bits == 1 for q in model.modules()
                      if isinstance(q, hwq.quant.Quantizer))
    if not binary_acts:
        path = tmp_path / "qdq.onnx"
        hwq.export(model, xs[:8], path, "qdq", dynamic_batch=True)
        got = np.concatenate([run_onnxruntime(path, xs[i:i + 500].numpy())
                              for i in range(0, len(xs), 500)])
        assert_matches(got, want, close_fraction=0.5)
    path = tmp_path / "qonnx.onnx"
    hwq.export(model, xs[:QONNX_BATCH], path, "qonnx")
    got = np.concatenate([run_qonnx(path, xs[i:i + QONNX_BATCH].numpy())
                          for i in range(0, QONNX_IMAGES, QONNX_BATCH)])
    # 99.9% of 1,000 images: one disagreement is allowed (measured: resnet20-ternary has one in
    # its first 500, an image near a tie of its two top logits).
    assert_matches(got, want[:QONNX_IMAGES], close_fraction=0.5, argmax_fraction=0.999)


@pytest.mark.parametrize("name", ENTRIES or [pytest.param(None, marks=pytest.mark.skip(
    reason="hwq.zoo has no CIFAR-10 entry"))])
def test_cifar10_entry(tmp_path, name):
    check_entry(name, cifar10_dir(), tmp_path)

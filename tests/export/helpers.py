"""Helpers of the export tests: QAT models with calibrated quantizers, a short digits training,
and readers of an ONNX file's nodes and metadata."""
import os
import warnings

import pytest
import torch

import hwq


def require_runtimes():
    """Skip the calling test module when the export extra is not installed."""
    for name in ("onnx", "onnxscript", "onnxruntime", "qonnx"):
        pytest.importorskip(name)


def calibrated(name, weights, acts, act="relu", size=None, layers=None, seed=0, batches=3,
               **options):
    """A QAT model (hwq.models ``name``, built with ``options`` such as shortcut="every") with
    BatchNorm statistics and quantizer ranges set by a few training-mode batches of N(0, 1)
    inputs, in eval mode."""
    sizes = {"digits_cnn": (1, 8, 8), "lenet5": (1, 28, 28), "resnet20": (3, 32, 32),
             "cnv": (3, 32, 32), "resnet18": (3, 32, 32), "mobilenet_v2": (3, 32, 32)}
    shape = size or sizes[name]
    torch.manual_seed(seed)
    model = hwq.models.build(name, num_classes=10, in_channels=shape[0], act=act, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hwq.quantize(model, weights=weights, acts=acts, layers=layers)
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(batches):
            model(torch.randn((8,) + shape, generator=g))
    return model.eval()


def train_digits(model, train, epochs=3, lr=3e-3, seed=0):
    """A few epochs of Adam on the digits training images: realistic weights and ranges."""
    xs, ys = train
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xs), generator=g)
        for i in range(0, len(xs), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def nodes(path):
    """{op_type: count} of the ONNX file at ``path``."""
    import onnx
    counts = {}
    for n in onnx.load(path).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def metadata(path):
    import onnx
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def assert_matches(got, want, close_fraction=0.99, argmax_fraction=0.999):
    """The runtime's outputs ``got`` against the QAT model's ``want`` (numpy, batch first).

    Per sample: equal to float tolerance (1e-4 of the largest |output|). A convolution summed in
    another order can move one activation across a rounding boundary (one step of that layer's
    grid), which changes that sample by more; so at least ``close_fraction`` of the samples must
    be close, and the arg-max must agree on at least ``argmax_fraction`` of them."""
    import numpy as np
    assert got.shape == want.shape, (got.shape, want.shape)
    tol = 1e-4 * float(np.abs(want).max()) + 1e-7
    per_sample = np.abs(got - want).reshape(len(want), -1).max(axis=1)
    close = float((per_sample <= tol).mean())
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert close >= close_fraction, f"only {close:.3f} of samples within {tol:.2g}; " \
                                    f"worst {per_sample.max():.3g}"
    assert agree >= argmax_fraction, f"arg-max agrees on {agree:.4f} of samples"
    return per_sample.max()


def cifar10_dir():
    """The CIFAR-10 folder under $HWQ_DATA (else ../shared/data beside the repository), or
    pytest.skip naming where it was looked for."""
    root = os.environ.get("HWQ_DATA") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))), "shared", "data")
    path = os.path.join(root, "cifar10")
    if not os.path.isdir(os.path.join(path, "test")):
        pytest.skip(f"CIFAR-10 not found: set HWQ_DATA to a folder holding cifar10/train and "
                    f"cifar10/test (looked in {path})")
    return path

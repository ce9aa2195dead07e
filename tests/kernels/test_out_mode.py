"""hwq.kernels.OutMode mirrors ``enum OutMode`` of csrc/packed_conv_args.h, read from the header
itself, and the op refuses the first value past the enum."""
import os
import re

import pytest
import torch

from hwq import kernels
from hwq.kernels import OutMode

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "csrc", "packed_conv_args.h")


def _header_enum() -> dict[str, int]:
    """{PYTHON_NAME: value} of the header's ``enum OutMode : int64_t { kOutInt32 = 0, ... }``
    (kOutPackedSign -> PACKED_SIGN)."""
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    body = re.search(r"enum\s+OutMode\s*:\s*int64_t\s*\{([^}]*)\}", text)
    assert body is not None, "enum OutMode not found in csrc/packed_conv_args.h"
    entries = re.findall(r"kOut(\w+)\s*=\s*(-?\d+)", body.group(1))
    assert entries, body.group(1)
    snake = {re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", n).upper(): int(v) for n, v in entries}
    return snake


def test_python_enum_equals_the_header():
    assert {m.name: int(m) for m in OutMode} == _header_enum()


def test_header_check_accepts_exactly_the_enum():
    # the argument check of the op (same header) must bound out_mode by the enum's values
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    lo, hi = map(int, re.search(r"out_mode >= (\d+) && out_mode <= (\d+)", text).groups())
    assert (lo, hi) == (min(OutMode), max(OutMode))


@pytest.mark.skipif(not kernels.HAVE_EXTENSION, reason="hwq._C is not built")
def test_each_mode_returns_what_its_docstring_says():
    # one 1x1 binary conv: sums hand-checked, each mode's dtype and shape
    x = torch.tensor([1.0, -1.0, 1.0, 1.0]).reshape(1, 4, 1, 1)   # +1 -1 +1 +1
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, 1.0, -1.0, -1.0]]).reshape(2, 4, 1, 1)
    px, pw = kernels.pack_activations(x), kernels.pack_weights(w)
    args = (px.data, pw.data, 4, 2, [1, 1], 1, 1, True, [1, 1], [0, 0], [1, 1], 1)
    sums = torch.ops.hwq.conv2d_packed(*args, None, None, OutMode.INT32)
    assert sums.dtype == torch.int32 and sums.flatten().tolist() == [2, -4]
    scale, bias = torch.tensor([0.5, 0.25]), torch.tensor([-2.0, 0.0])
    y = torch.ops.hwq.conv2d_packed(*args, scale, bias, OutMode.FLOAT)
    assert y.dtype == torch.float32 and y.flatten().tolist() == [-1.0, -1.0]
    r = torch.ops.hwq.conv2d_packed(*args, scale, bias, OutMode.FLOAT_RELU)
    assert r.flatten().tolist() == [0.0, 0.0]
    s = torch.ops.hwq.conv2d_packed(*args, scale, bias, OutMode.PACKED_SIGN)
    assert s.dtype == torch.int64 and s.shape == (1, 1, 1, 1, 1, 1)
    assert int(s.flatten()[0]) == 0b11  # both values < 0: bits 0 and 1 set
    with pytest.raises(RuntimeError, match=rf"out_mode={max(OutMode) + 1} is not accepted"):
        torch.ops.hwq.conv2d_packed(*args, scale, bias, max(OutMode) + 1)

"""NaN and Inf (README, "NaN and Inf"): a range or scale measured from non-finite values raises
ValueError; with a range already set (eval), NaN stays NaN and +/-Inf saturates to the end levels."""
import math

import pytest
import torch

from hwq import quant

BAD = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("spec", ["fixed:4", "pow2:4", "ternary", "lsq:4",
                                  {"name": "binary", "scale": "channel"}])
def test_weights_with_nonfinite_values_raise(spec, bad):
    w = torch.randn(4, 3)
    w[1, 2] = bad
    with pytest.raises(ValueError, match="not finite"):
        quant.get(spec, channels=4)(w)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("spec", ["fixed:4", "lsq:4"])
def test_activation_range_from_nonfinite_batch_raises(spec, bad):
    x = torch.randn(2, 8)
    x[0, 3] = bad
    with pytest.raises(ValueError, match="not finite"):
        quant.get(spec, role="act")(x)


def test_fixed_act_in_eval_saturates_inf_and_keeps_nan():
    q = quant.get("fixed:4", role="act")
    q(torch.tensor([-1.0, 0.5, 0.9]))  # calibrate: max 1.0, signed, step 1/4
    q.eval()
    y = q(torch.tensor([float("inf"), float("-inf"), float("nan"), 0.3]))
    assert y[0] == 1.75 and y[1] == -2.0 and math.isnan(y[2]) and y[3] == 0.25


def test_pact_saturates_inf_and_keeps_nan():
    q = quant.get("pact:2", role="act", alpha_init=3.0)
    y = q(torch.tensor([float("inf"), float("-inf"), float("nan")])).detach()
    assert y[0] == 3.0 and y[1] == 0.0 and math.isnan(y[2])


def test_binary_act_keeps_nan_and_signs_inf():
    y = quant.get("binary", role="act")(torch.tensor([float("nan"), float("inf"), float("-inf")]))
    assert math.isnan(y[0]) and y[1] == 1.0 and y[2] == -1.0

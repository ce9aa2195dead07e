"""Fixtures of the export tests: the digits images."""
import pytest


@pytest.fixture(scope="session")
def digits_test():
    """The 450 digits test images (standardised as hwq.train.data.digits does) and labels."""
    from hwq.train.data import digits
    d = digits()
    xs, ys = d.test.tensors
    return xs, ys


@pytest.fixture(scope="session")
def digits_train():
    from hwq.train.data import digits
    return digits().train.tensors

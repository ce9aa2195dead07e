"""A small CNN trained for 200 steps on a synthetic task: W4A4 stays within a few points of float,
W1A1 lands far above chance. The task: 10 smooth 8x8 class templates under heavy Gaussian noise
(sd 3), so float accuracy sits near the Bayes limit (about 81%) and loss of information shows."""
import pytest
import torch
from torch import nn

import hwq

CLASSES = 10


def synthetic(n, seed):
    g = torch.Generator().manual_seed(1234)
    templates = nn.functional.avg_pool2d(torch.randn(CLASSES, 1, 10, 10, generator=g), 3, 1)
    templates = templates / templates.std((1, 2, 3), keepdim=True)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return templates[y] + 3.0 * torch.randn(n, 1, 8, 8, generator=g), y


def cnn(act):
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), act(),
                         nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), act(),
                         nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), act(),
                         nn.Flatten(), nn.Linear(64 * 4, CLASSES))


def train(weights, acts, act=nn.ReLU, steps=200):
    torch.manual_seed(0)
    model = cnn(act)
    if weights or acts:  # first and last layers 8-bit, as is usual
        hwq.quantize(model, weights=weights, acts=acts,
                     layers={"0": dict(weights="fixed:8", acts=None),
                             "10": dict(weights="fixed:8", acts="fixed:8")})
    x, y = synthetic(4096, 1)
    xt, yt = synthetic(1024, 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(xt).argmax(1) == yt).float().mean().item()


@pytest.fixture(scope="module")
def float_acc():
    return train(None, None)


def test_float_learns(float_acc):
    assert float_acc > 0.75


@pytest.mark.parametrize("weights,acts", [("fixed:4", "fixed:4"), ("lsq:4", "lsq:4")])
def test_w4a4_close_to_float(float_acc, weights, acts):
    assert train(weights, acts) > float_acc - 0.03


def test_w1a1_far_above_chance(float_acc):
    # BNN practice: Hardtanh, not ReLU, before a binary activation
    assert train("binary", "binary", act=nn.Hardtanh) > 0.5


def test_binary_after_relu_is_warned():
    m = hwq.quantize(cnn(nn.ReLU), weights="binary", acts="binary",
                     layers={"0": dict(acts=None)})
    with pytest.warns(UserWarning, match="no negative value"):
        m(torch.randn(2, 1, 8, 8))

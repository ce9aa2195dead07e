"""Run by tests/train/test_distributed.py, alone or under torchrun: engine.fit of a model without
BatchNorm on fixed synthetic data; rank 0 saves the final weights and metrics to argv[1]."""
import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from hwq.train import distributed, engine


def main(out: str) -> None:
    device = distributed.setup("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (512,), generator=g)
    data = TensorDataset(x, y)
    history = engine.fit(model, data, TensorDataset(x[:200], y[:200]), epochs=3, batch_size=64,
                         optim={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                         schedule={"name": "constant"}, seed=0, device=device)
    if distributed.rank_world()[0] == 0:
        torch.save({"model": model.state_dict(), "metrics": history}, out)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])

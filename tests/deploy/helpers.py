"""Shared by the deploy tests: activation ranges of a QAT model calibrated on a batch."""
import torch


def calibrate(model, x, steps=2):
    """Run ``model`` on ``x`` ``steps`` times in training mode (its quantizers take their ranges),
    then return it in eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()

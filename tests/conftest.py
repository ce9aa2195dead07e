import os

import torch
from hypothesis import HealthCheck, settings

# No deadlines: the CI machine has 2 cores shared with other work; examples are cheap but timing varies.
# The default profile is derandomized, so CI runs the same examples every time (a failure there is
# reproducible); HYPOTHESIS_PROFILE=explore draws fresh examples on every run, for development.
settings.register_profile("hwq", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hwq"))
torch.set_num_threads(min(2, torch.get_num_threads()))


def data_root() -> str | None:
    """The folder of the real data sets the tests may use: $HWQ_DATA, else ../shared/data beside
    the repository when it exists (CIFAR-10 lives in <root>/cifar10); None when there is none."""
    root = os.environ.get("HWQ_DATA") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
    return root if os.path.isdir(root) else None


def cifar10_dir() -> str:
    """The CIFAR-10 image folder, or pytest.skip naming where it was looked for."""
    import pytest
    root = data_root()
    path = os.path.join(root, "cifar10") if root else None
    if path is None or not os.path.isdir(os.path.join(path, "train")):
        pytest.skip("CIFAR-10 not found: set HWQ_DATA to a folder holding cifar10/train and "
                    f"cifar10/test (looked in {path or os.environ.get('HWQ_DATA') or '../shared/data'})")
    return path

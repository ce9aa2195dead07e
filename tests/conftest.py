import importlib.util
import os

import pytest
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def load_script():
    """load_script("bench_kernels") imports scripts/bench_kernels.py as a module (the scripts are
    not a package), for the tests of their helpers."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(ROOT, "scripts", name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load

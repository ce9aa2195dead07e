import os

import torch
from hypothesis import HealthCheck, settings

# No deadlines: the CI machine has 2 cores shared with other work; examples are cheap but timing varies.
settings.register_profile("hwq", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hwq"))
torch.set_num_threads(min(2, torch.get_num_threads()))

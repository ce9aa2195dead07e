"""hwq: hardware-aware quantization for PyTorch.

Public API: hwq.quantize (swap layers), hwq.summary (per-layer bits, MACs, memory), hwq.Plan
(per-layer precision plans), hwq.quant (quantizers by name), hwq.nn (drop-in modules).

hwq.profile, hwq.summary, hwq.export and hwq.deploy are functions named like the module or package
that holds them: import that module's other names with ``from hwq.profile import Profile``
(``import hwq.profile as hp`` gives the function). hwq.map is called as ``hwq.map``: it is left out
of ``__all__`` so that ``from hwq import *`` does not shadow the builtin ``map``.
See docs/architecture.md.
"""
__version__ = "0.1.0"

from . import nn, quant  # noqa: E402
from .convert import UnquantizedLayersWarning, quantize  # noqa: E402
from .plan import Plan  # noqa: E402
from .summary import Summary, summary  # noqa: E402
from . import workloads  # noqa: E402
from .profile import Profile, profile  # noqa: E402
from . import hw  # noqa: E402
from .hw import Report, generate, map, sweep  # noqa: E402
from .deploy import deploy  # noqa: E402
from .export import export  # noqa: E402  (onnx is imported only when a file is written)
from . import models, search, train, zoo  # noqa: E402

__all__ = ["quant", "nn", "quantize", "summary", "Summary", "Plan", "UnquantizedLayersWarning",
           "__version__", "profile", "Profile", "workloads",
           "hw", "Report", "sweep", "generate", "deploy", "models", "train", "search",
           "export", "zoo"]

"""Precision search: per-layer bit widths under an accuracy tolerance (``layerwise``, Stripes /
Proteus), the accuracy-energy trade-off on an accelerator model (``energy_search``, QAPPA), and
the exact allocation of per-layer bits by sensitivity under a hardware budget (``budget``, HAWQ-V3
with hwq's accelerator models; ``sensitivity``)."""
from .common import apply, layer_names, to_plan
from .energy import Candidate, EnergySearchResult, energy_search, pareto_front
from .layerwise import LayerwiseResult, layerwise
from .sensitivity import LayerSensitivity, Sensitivity, sensitivity
from .budget import Budget, BudgetResult, UnresolvedSensitivityWarning, allocate, budget

__all__ = ["layerwise", "LayerwiseResult", "energy_search", "EnergySearchResult", "Candidate",
           "pareto_front", "apply", "layer_names", "to_plan", "budget", "BudgetResult", "Budget",
           "allocate", "sensitivity", "Sensitivity", "LayerSensitivity",
           "UnresolvedSensitivityWarning"]

"""Precision search: per-layer bit widths under an accuracy tolerance (``layerwise``, Stripes /
Proteus) and the accuracy-energy trade-off on an accelerator model (``energy_search``, QAPPA)."""
from .common import apply, layer_names, to_plan
from .energy import Candidate, EnergySearchResult, energy_search, pareto_front
from .layerwise import LayerwiseResult, layerwise

__all__ = ["layerwise", "LayerwiseResult", "energy_search", "EnergySearchResult", "Candidate",
           "pareto_front", "apply", "layer_names", "to_plan"]

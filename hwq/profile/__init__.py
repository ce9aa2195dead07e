"""Precision profiles: the conv and FC layers of a network as plain data (shapes, MACs, bit
widths, run-time statistics), read and written as JSON / CSV / DNNsim precision files.

Import names from here (``from hwq.profile import Profile``): ``hwq.profile`` itself is the
extraction function once ``hwq`` is imported.
"""
from .extract import baseline_codes, profile
from .layer import BASELINE_BITS, LayerProfile, ProfileError
from .profile import FORMAT, SCHEMA_VERSION, VERSION, Profile
from .stats import GROUP, PALLET, LayerStats, value_bits

__all__ = ["profile", "Profile", "LayerProfile", "LayerStats", "ProfileError", "FORMAT", "VERSION",
           "SCHEMA_VERSION",
           "BASELINE_BITS", "GROUP", "PALLET", "value_bits", "baseline_codes"]

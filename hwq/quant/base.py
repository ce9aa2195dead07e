"""What every quantizer shares: the module base class, its config base class and small helpers.

A quantizer is an ``nn.Module`` built from a small config dataclass. It maps a float tensor to a
tensor whose values lie exactly on its grid (``forward``, differentiable through a straight-through
estimator) and can also return that grid point as integer codes times a scale (``quantize_int``),
which is what the profiler and the packed kernels consume.

What the rest of hwq may ask of a quantizer is declared here, on the base classes, as flags of its
config class and methods of the quantizer (the quantizer-to-deploy contract):

  flag (QuantConfig)  method (Quantizer)        who asks
  integer_codes       quantize_int(x)           hwq.profile (bit statistics), hwq.deploy (weight
                                                codes), hwq.export (integer initializers)
  uniform_grid        step_and_range(x),        hwq.deploy (activation codes for the bit-serial
                      codes_signed()            and int8 kernels), hwq.export (Quant, QDQ nodes)
  bipolar             quantize_int(x)           hwq.deploy (XNOR-popcount), hwq.export
                                                (BipolarQuant)
  power_of_two        (none: a fact of values)  hwq.profile (LayerProfile.w_pow2), read by the
                                                shift design of hwq.hw (a multiply is a shift)
  (float passthrough) is_float                  all three: no quantization, nothing to pack

Callers ask the flags, never the quantizer's name, so a new quantizer (one file and one
``register`` line) deploys, profiles and exports as far as its flags say; ``register`` refuses a
flag whose method the quantizer does not implement.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

ROLES = ("weight", "act")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """Base of the per-quantizer config dataclasses.

    ``kind`` is the registered name ("fixed", "binary", ...); ``roles`` says what the quantizer may be
    applied to ("weight", "act"); ``bit_range`` is the accepted (min, max) of ``bits``, or None when the
    bit width is fixed by the kind (binary = 1, ternary = 2, float = 32).
    """

    kind: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ROLES
    bit_range: ClassVar[tuple[int, int] | None] = None
    fixed_bits: ClassVar[int] = 32
    # Capabilities (module docstring): what the quantizer's values are, so callers need not know
    # its name. All off by default: a config claims only what its quantizer implements.
    integer_codes: ClassVar[bool] = False
    """quantize_int(x) returns (codes, scale) with integer-valued codes and codes * scale ==
    forward(x) exactly (scale a scalar or one per output channel). Off: the values are no integer
    grid (the float passthrough, a float format)."""
    uniform_grid: ClassVar[bool] = False
    """Needs integer_codes. step_and_range(x) gives (step, lo, hi) with forward(x) ==
    clamp(round(x / step), lo, hi) * step, [lo, hi] inside the ``n_bits``-bit range that codes_signed() names (unsigned 0 ..
    2^b - 1, or two's complement), and quantize_int's codes equal clamp(round(x / step), lo, hi)."""
    bipolar: ClassVar[bool] = False
    """Needs integer_codes. quantize_int(x)'s codes are sign(x) in {-1, +1} with sign(0) = +1 (bit 1 where x < 0, the
    packed kernels' convention), and for activations the scale is 1: the XNOR-popcount input."""
    power_of_two: ClassVar[bool] = False
    """Every value forward(x) gives is 0 or +/-2^k times one scale per tensor or channel, so a
    multiply by it is a shift and a sign (Tann et al., DAC 2017). Needs no method."""

    @property
    def n_bits(self) -> int:
        """Bits per value of the quantized code (32 for float)."""
        return getattr(self, "bits", self.fixed_bits)

    def check_role(self, role: str) -> None:
        """Raise ValueError when this quantizer makes no sense for ``role`` ("weight" or "act")."""
        if role not in ROLES:
            raise ValueError(f"role={role!r} is not accepted: expected one of {ROLES}")
        if role not in self.roles:
            what = {"weight": "weights", "act": "activations"}
            raise ValueError(
                f"quantizer '{self.kind}' cannot be applied to {what[role]}: it quantizes "
                f"{' and '.join(what[r] for r in self.roles)} only")
        if role == "act" and getattr(self, "per_channel", False):
            raise ValueError(f"per_channel=True is not accepted for '{self.kind}' activations: "
                             "activations are quantized per tensor")

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus ``name``: the inverse of ``hwq.quant.parse(dict)``."""
        return {"name": self.kind, **dataclasses.asdict(self)}

    def spec(self) -> str | dict[str, Any]:
        """The short string form ("fixed:4") when every option is default, else ``to_dict()``."""
        short = self.kind if self.bit_range is None else f"{self.kind}:{self.bits}"
        defaults = type(self)(**({"bits": self.bits} if self.bit_range is not None else {}))
        return short if defaults == self else self.to_dict()

    def __str__(self) -> str:
        spec = self.spec()
        if isinstance(spec, str):
            return spec
        opts = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "bits"))
        short = self.kind if self.bit_range is None else f"{self.kind}:{self.bits}"
        return f"{short}({opts})"


class Quantizer(nn.Module):
    """Base class: holds the config and the role, exposes the precision.

    Subclasses implement ``forward(x)`` (fake-quantized values, STE gradients) and the methods of
    the capabilities their config declares (QuantConfig.integer_codes, uniform_grid, bipolar):
    ``quantize_int(x) -> (codes, scale)`` with ``forward(x) == codes * scale`` exactly, and for a
    uniform grid ``step_and_range(x)`` and ``codes_signed()``.
    """

    def __init__(self, config: QuantConfig, role: str, channels: int | None = None):
        """``channels``: output channels, which hwq.quant.get passes to every quantizer; only one
        with per-channel learned state (lsq with per_channel=True) needs it."""
        super().__init__()
        self.config = config
        self.role = role

    @property
    def bits(self) -> int:
        """Bits per value (32 for the float passthrough)."""
        return self.config.n_bits

    @property
    def name(self) -> str:
        """Human-readable spec, e.g. "fixed:4" or "lsq:4(per_channel=True,...)"."""
        return str(self.config)

    @property
    def is_float(self) -> bool:
        """True for the float passthrough (no quantization at all); FloatQuantizer overrides it."""
        return False

    def quantize_int(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, scale) with integer-valued codes and ``forward(x) == codes * scale`` exactly;
        implemented by every quantizer whose config has ``integer_codes``."""
        raise NotImplementedError(f"quantizer '{self.name}' ({type(self).__name__}) has no "
                                  "integer codes: it does not implement quantize_int")

    def step_and_range(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(step, lo, hi) of a uniform grid: ``forward(x) == clamp(round(x / step), lo, hi) * step``
        (round half to even; step a scalar or one per output channel, broadcastable to x).
        Implemented by the quantizers whose config has ``uniform_grid`` (fixed, lsq, pact); the
        others (binary, ternary, pow2, float) raise NotImplementedError."""
        raise NotImplementedError(f"quantizer '{self.name}' ({type(self).__name__}) has no "
                                  "uniform grid: it does not implement step_and_range")

    def codes_signed(self) -> bool | None:
        """Whether the integer codes may be negative: True (two's complement), False (unsigned,
        0 .. 2^bits - 1), or None while undecided (an activation quantizer that decides from its
        first batch). Implemented by every quantizer whose config has ``uniform_grid``; asked
        before any input is seen (deploy chooses its kernels from it)."""
        raise NotImplementedError(f"quantizer '{self.name}' ({type(self).__name__}) does not say "
                                  "whether its codes are signed: it does not implement "
                                  "codes_signed")

    def extra_repr(self) -> str:
        return f"{self.name}, role={self.role}"


def check_bits(config: QuantConfig) -> None:
    """Raise ValueError unless config.bits is an int inside config.bit_range."""
    lo, hi = config.bit_range
    bits = config.bits
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(
            f"bits={bits!r} is not accepted for quantizer '{config.kind}': expected an integer "
            f"from {lo} to {hi}")


def check_choice(kind: str, param: str, value: Any, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(
            f"{param}={value!r} is not accepted for quantizer '{kind}': expected one of "
            + ", ".join(repr(a) for a in accepted))


def check_finite(value: torch.Tensor, what: str, kind: str) -> None:
    """Refuse a range estimate (max|x|, mean|x|) that is NaN or Inf.

    A scale computed from a non-finite range would turn every value of the tensor into garbage, so
    the quantizer raises instead of passing it on (see "NaN and Inf" in the README).
    """
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"quantizer '{kind}' got a {what} that is not finite ({value.flatten()[:4].tolist()}...): "
            "the input contains NaN or Inf; finite inputs are required to set the quantization range")


# Significand bits (with the implicit one) of each float dtype: it holds every integer up to
# 2^bits exactly, beyond that only even ones (float16: 2048, 2050, ...).
SIGNIFICAND_BITS = {torch.float16: 11, torch.bfloat16: 8, torch.float32: 24, torch.float64: 53}


def check_input(config: QuantConfig, x: torch.Tensor) -> None:
    """Refuse inputs a quantizer cannot give its grid for, by name instead of a foreign error:
    tensors on the meta device (ranges and steps are data-dependent), and integer codes wider than
    the dtype holds exactly (a 16-bit grid in float16 rounds its codes to even numbers, or
    overflows to Inf and NaN: pact:16). Costs a few attribute reads per call."""
    if x.device.type == "meta":
        raise ValueError(f"quantizer '{config}' got a tensor on the meta device: its ranges and "
                         "steps are computed from data; materialise the model first "
                         "(model.to_empty(device='cpu'), then load its weights)")
    limit = SIGNIFICAND_BITS.get(x.dtype)
    if limit is not None and config.integer_codes and config.n_bits > limit:
        raise ValueError(f"quantizer '{config}' on {x.dtype} tensors is not accepted: "
                         f"{str(x.dtype).replace('torch.', '')} holds integers exactly only up to "
                         f"2^{limit}, so {config.n_bits}-bit codes would be rounded or overflow; "
                         f"expected at most {limit} bits in that dtype, or float32 tensors")


def channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-output-channel vector (C,) to broadcast over a weight of ``ndim`` dims (dim 0)."""
    return t.reshape((-1,) + (1,) * (ndim - 1))


def reduce_dims(x: torch.Tensor, per_channel: bool) -> tuple[int, ...] | None:
    """Dims to reduce for a per-tensor (None: all) or per-output-channel (all but dim 0) statistic."""
    if not per_channel:
        return None
    return tuple(range(1, x.dim()))


def abs_max(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """max|x| over the whole tensor, or per output channel kept broadcastable (C, 1, ...)."""
    a = x.detach().abs()
    if per_channel:
        return a.amax(dim=reduce_dims(x, True), keepdim=True) if x.dim() > 1 else a
    return a.amax()


def abs_mean(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    a = x.abs()
    if per_channel:
        return a.mean(dim=reduce_dims(x, True), keepdim=True) if x.dim() > 1 else a
    return a.mean()


def pow2_scale_for(m: torch.Tensor, magnitude_bits: int) -> torch.Tensor:
    """Power-of-two step so that ``m`` fits in ``magnitude_bits`` bits of integer magnitude.

    The integer part of m needs I = floor(log2 m) + 1 bits (frexp gives exactly that exponent, no
    floating-point log), the remaining magnitude bits are fraction bits: step = 2^(I - magnitude_bits).
    This is the Q-format choice of the Stripes/Proteus profiling. m = 0 gives step 1 (all codes 0).
    """
    _, exp = torch.frexp(torch.where(m > 0, m, torch.ones_like(m)))
    return torch.ldexp(torch.ones_like(m), exp - magnitude_bits)


def signed_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer code range of a b-bit two's-complement (signed) or unsigned code."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


class SignedMixin:
    """Signedness of an integer grid: given, or (activations) decided once from the first batch.

    Stored as a buffer (``signed``: -1 undecided, 0 unsigned, 1 signed) so that a state_dict records
    the decision and a reloaded model uses the same grid.
    """

    def _init_signed(self, signed: bool | None) -> None:
        code = -1 if signed is None else int(bool(signed))
        self.register_buffer("signed", torch.tensor(code, dtype=torch.int8))

    def codes_signed(self) -> bool | None:
        code = int(self.signed)
        return None if code < 0 else bool(code)

    def _resolve_signed(self, x: torch.Tensor) -> bool:
        code = int(self.signed)
        if code < 0:
            # Unsigned when the first batch has no negative value (post-ReLU inputs): one more
            # magnitude bit. The decision is kept in the state_dict.
            code = int(bool((x.detach() < 0).any()))
            self.signed.fill_(code)
        return bool(code)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):
        return q

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Return q exactly (unlike x + (q - x).detach(), which can be off the grid by a rounding) with
    the identity gradient to x."""
    return _StraightThrough.apply(x, q)


def check_bool(config: QuantConfig, *params: str) -> None:
    for p in params:
        v = getattr(config, p)
        if not isinstance(v, bool):
            raise ValueError(f"{p}={v!r} is not accepted for quantizer '{config.kind}': "
                             "expected True or False")

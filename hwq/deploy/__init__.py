"""hwq.deploy: a trained QAT model -> an inference model whose quantized layers run integer
kernels, weights packed once, batch norm folded into a per-channel epilogue.

Per layer (QuantConv2d / QuantLinear, in eval mode) the implementations that apply are
(candidates.py): "binary" (XNOR-popcount), "bitserial WxAy" (AND-popcount over bit planes) and
"int8 WxAy" (oneDNN's u8 x s8 kernels), "fp32-sum WxAy" (exact integer sums from oneDNN's float32
conv on the codes, where they stay below 2^24). The first that applies is used, or, given an example input,
the fastest measured (the QAT layer included). Anything else stays the QAT layer and is listed in
the report with the reason. Which layers have candidates is decided by asking their quantizers
(hwq.quant.Quantizer's capabilities), never by their names.

A deployed layer (layers.py) computes the exact integer sum and applies the scales and a folded
batch norm in float32, so in eval mode its outputs equal the QAT model's up to float rounding.
NaN and Inf follow the QAT model in eval mode (nan.py). A deployed model is for inference: its
deployed layers stay in eval mode whatever train() says, and the model refuses to run in training
mode (which would recalibrate the layers it kept).

deploy() (passes.py) runs named passes over a copy of the model: check, copy, trace, choose, fold
batch norms, install, chain sign bits, fuse ReLUs, fuse residual blocks (a shared ReLU's call sites
and a residual add + ReLU go into the conv epilogue; the block becomes an fx.GraphModule), kept
convs on channels-last input, max pools without argmax indices (pool.py: the same values). Batch
norm, chains and ReLUs are found with torch.fx (graph.py); a model fx cannot trace is deployed
without them and the report says so. A
module registered under several names (``self.b = self.a``) is replaced under every name.
docs/kernels.md describes each implementation, the passes and measured speed.
"""
from .. import kernels  # noqa: F401  (modules whose attributes tests patch through hwq.deploy)
from ..kernels import int8  # noqa: F401
from .candidates import Candidate, default_max_plane_products
from .layers import (DeployedLayer, Fp32SumConv2d, Fp32SumLinear, Int8Conv2d, Int8Linear,
                     PackedConv2d, PackedLinear, is_packed_signs)
from .nan import _NAN_CHECKS
from .passes import deploy
from .report import DeployReport, LayerDecision
from .timing import TIMING_RUNS

__all__ = ["deploy", "default_max_plane_products", "DeployReport", "LayerDecision", "Candidate",
           "PackedConv2d", "PackedLinear", "Int8Conv2d", "Int8Linear", "Fp32SumConv2d",
           "Fp32SumLinear", "is_packed_signs",
           "TIMING_RUNS", "DeployedLayer", "_NAN_CHECKS"]

"""hwq.deploy(): a copy of the QAT model, then one pass after another over it.

  1. check the arguments;                       _check_arguments
  2. copy the model in eval mode, on the CPU;   _eval_copy_on_cpu
  3. trace it with torch.fx (once, before any swap: hwq/deploy/graph.py says why the graph stays
     valid after the swaps);                    graph.trace
  4. choose each quantized layer's implementation: the candidates its quantizers and this CPU
     allow, the first by rule or, given an example input, the fastest measured;   _choose
  5. fold a batch norm that alone follows a deployed conv into its epilogue;       _fold_batch_norms
  6. install the deployed layers under the QAT layers' names;                      _install
  7. chain binary layers: a packed conv hands a following binary conv its sign bits;
                                                                                   _chain_sign_bits
  8. fuse a ReLU that alone follows a deployed layer into its epilogue;            _fuse_relus
  9. in each block, a ReLU at one call site of a shared ReLU module and a residual add (+ ReLU)
     go into the epilogue of the deployed conv before them (fx rewrite of the block);
                                                                                   _fuse_residual_blocks
 10. a conv deploy kept takes its input in channels-last memory;                 _kept_convs_channels_last
 11. attach the report and the hooks (eval mode only, NaN checks per batch).
Passes 5, 7, 8 and 9 need the graph: a model fx cannot trace gets none of them.
"""
from __future__ import annotations

import copy

import torch
from torch import fx, nn

from .. import kernels
from ..nn import QuantConv2d, QuantLayer, QuantLinear
from .candidates import Candidate, candidates, default_max_plane_products
from .graph import (bn_after, fuse_residual_blocks, kept_followers, relu_after, replace,
                    sign_chains, trace)
from .layers import DeployedLayer, _Fp32SumKernel, _Int8Kernel, _PackedKernel
from .nan import install_hooks
from .pool import MaxPool2d
from .report import DeployReport, LayerDecision
from .timing import fastest_ms, layer_inputs


def deploy(model: nn.Module, example_input: torch.Tensor | None = None,
           max_plane_products: int | None = None, fold_bn: bool = True) -> nn.Module:
    """A copy of the QAT ``model`` (eval mode) whose quantized layers run integer kernels.

    Per layer the candidates are: "binary" (XNOR-popcount) for binary weights and activations;
    "bitserial WxAy" for unsigned activation codes when x * y <= max_plane_products (0: never;
    None: default_max_plane_products(), what is expected to beat int8 on this CPU);
    "int8 WxAy" (oneDNN u8 x s8, hwq.kernels.int8) for any codes of at most 8 bits where its sums
    are exact on this CPU. Without ``example_input`` the first of these that applies is used, in
    that order. With ``example_input`` (a batch the model accepts) every candidate, and the QAT layer
    itself, is timed on the input the layer receives and the fastest is kept; the report lists the
    times. fold_bn: fold a BatchNorm2d that directly follows a deployed conv into its epilogue.
    The returned model has ``deploy_report`` (a DeployReport).
    """
    max_plane_products = _check_arguments(model, example_input, max_plane_products, fold_bn)
    out = _eval_copy_on_cpu(model, example_input)
    graph = trace(out)
    layers = [(n, m) for n, m in out.named_modules()
              if isinstance(m, (QuantConv2d, QuantLinear))]
    followers = kept_followers(graph, out) if graph is not None and fold_bn else {}
    chosen, decisions = _choose(out, layers, example_input, max_plane_products, followers)
    by_name = {d.name: d for d in decisions}
    if graph is not None and fold_bn:
        _fold_batch_norms(out, graph, chosen, by_name)  # asks the graph before the swaps
    _install(out, chosen)
    if graph is not None:  # these ask the graph after the swaps (names persist: graph.py)
        chained = _chain_sign_bits(out, graph, by_name)
        _fuse_relus(out, graph, by_name, chained)
        _fuse_residual_blocks(out, by_name)
    _kept_convs_channels_last(out)
    _max_pools_without_indices(out)
    out.deploy_report = DeployReport(decisions, graph is not None)
    install_hooks(out)
    return out


def _check_arguments(model, example_input, max_plane_products, fold_bn) -> int:
    """Refuse bad arguments by name; returns max_plane_products with None resolved."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model is a {type(model).__name__}: expected a torch.nn.Module")
    if max_plane_products is None:
        max_plane_products = default_max_plane_products()
    if isinstance(max_plane_products, bool) or not isinstance(max_plane_products, int) \
            or max_plane_products < 0:
        raise ValueError(f"max_plane_products={max_plane_products!r} is not accepted: expected an "
                         "integer >= 0 (0 = no bit-serial layers, 1 = W1A1 only, 64 = up to W8A8) "
                         "or None (this CPU's default)")
    if not isinstance(fold_bn, bool):
        raise TypeError(f"fold_bn={fold_bn!r} is not accepted: expected True or False")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input is a {type(example_input).__name__}: expected a "
                        "torch.Tensor batch the model accepts, or None")
    if not kernels.HAVE_EXTENSION:
        raise RuntimeError("hwq.deploy needs the C++ kernels (hwq._C), which are not built "
                           f"({kernels._ext.EXTENSION_ERROR}); build them with "
                           "`pip install --no-build-isolation -e .`")
    return max_plane_products


def _eval_copy_on_cpu(model: nn.Module, example_input) -> nn.Module:
    """A deep copy in eval mode (the original is never changed); refuse tensors off the CPU."""
    out = copy.deepcopy(model).eval()
    devices = {p.device.type for p in out.parameters()} | {b.device.type for b in out.buffers()}
    if example_input is not None:
        devices.add(example_input.device.type)
    if devices - {"cpu"}:
        raise ValueError(f"model or example_input has tensors on {sorted(devices)}: hwq.deploy "
                         "targets the CPU kernels; move them with .cpu() first")
    return out


def _choose(model: nn.Module, layers: list[tuple[str, QuantLayer]], example_input,
            max_plane_products: int, followers: dict[str, list[str]]
            ) -> tuple[dict[str, DeployedLayer], list[LayerDecision]]:
    """Pass: each layer's implementation. Returns ({name: deployed layer} for the layers that get
    one, a decision per layer in model order); changes nothing in ``model``. followers: {conv:
    the batch norm (and ReLU) a deployed layer absorbs}, which a kept conv would run after it (so
    it is timed with them)."""
    inputs = (layer_inputs(model, [n for n, _ in layers], example_input)
              if example_input is not None else {})
    chosen, decisions = {}, []
    for name, m in layers:
        decision, cands = candidates(name, m, max_plane_products)
        if decision is None:
            after = [model.get_submodule(f) for f in followers.get(name, [])]
            decision, deployed = _pick(name, m, cands, inputs.get(name), after)
            if deployed is not None:
                chosen[name] = deployed
        decisions.append(decision)
    return chosen, decisions


def _pick(name: str, m: QuantLayer, cands: list[Candidate], x: torch.Tensor | None,
          after: list[nn.Module] = ()) -> tuple[LayerDecision, DeployedLayer | None]:
    """The first candidate, or with the layer's real input ``x`` the fastest of the candidates
    and the QAT layer itself (None when that is the QAT layer). ``after``: the batch norm (and
    ReLU) a deployed candidate absorbs and the QAT layer would keep, so "kept" is timed with them
    (a ResNet-18's first conv, 8-bit on a CPU without VNNI: 50-56 ms kept against 57-74 ms as
    fp32-sum, which also quantizes and applies the epilogue; with the batch norm and ReLU the kept
    one takes 84-93 ms, 1 thread CPU time under load)."""
    built = {c.impl: c.build(m) for c in cands}
    decision = LayerDecision(name, cands[0].impl)
    if x is None:
        return decision, built[cands[0].impl]
    if x.dim() == 4:  # deployed layers hand channels-last tensors to each other
        x = x.contiguous(memory_format=torch.channels_last)
    decision.timings_ms.update(fastest_ms(
        {**built, "kept": nn.Sequential(m, *after) if after else m}, x))
    best = min(decision.timings_ms, key=decision.timings_ms.get)
    decision.impl, decision.reason = best, "fastest measured"
    return decision, (None if best == "kept" else built[best])


def _fold_batch_norms(model: nn.Module, graph: fx.Graph, chosen: dict[str, DeployedLayer],
                      by_name: dict[str, LayerDecision]) -> None:
    """Pass: a BatchNorm2d that alone consumes a deployed conv's output goes into that layer's
    epilogue and becomes an Identity. Before _install: bn_after finds QuantConv2d layers."""
    for conv, bn in bn_after(graph, model).items():
        if conv not in chosen:  # a kept layer keeps its batch norm
            continue
        chosen[conv].fold_bn(model.get_submodule(bn), bn)
        replace(model, bn, nn.Identity())
        by_name[conv].bn_folded = bn


def _install(model: nn.Module, chosen: dict[str, DeployedLayer]) -> None:
    """Pass: each deployed layer takes the place (every name) of its QAT layer."""
    for name, deployed in chosen.items():
        replace(model, name, deployed)


def _chain_sign_bits(model: nn.Module, graph: fx.Graph, by_name: dict[str, LayerDecision]
                     ) -> set[str]:
    """Pass: a packed conv whose output reaches a binary conv only through sign-preserving modules
    emits packed sign bits (OutMode.PACKED_SIGN) and those modules become Identity. Returns the
    names of the layers that now emit sign bits."""
    chained = set()
    for a, between, b in sign_chains(graph, model):
        model.get_submodule(a).packed_output = True
        for name in between:
            replace(model, name, nn.Identity())
        by_name[a].packed_output_to = b
        chained.add(a)
    return chained


def _fuse_relus(model: nn.Module, graph: fx.Graph, by_name: dict[str, LayerDecision],
                chained: set[str]) -> None:
    """Pass: an nn.ReLU that alone consumes a deployed layer's output (after its folded BN) runs
    in that layer's epilogue and becomes an Identity; not after a layer emitting sign bits."""
    for layer, relu in relu_after(graph, model, (_PackedKernel, _Int8Kernel, _Fp32SumKernel)):
        if layer in chained:
            continue
        model.get_submodule(layer).fuse_relu = True
        replace(model, relu, nn.Identity())
        by_name[layer].relu_fused = relu


def _fuse_residual_blocks(model: nn.Module, by_name: dict[str, LayerDecision]) -> None:
    """Pass: in each block (a submodule traced alone, graph.fuse_residual_blocks), a ReLU at one
    call site of a shared nn.ReLU goes into the deployed layer before it, and a residual add (and
    the ReLU after it) into the epilogue of the PackedConv2d that feeds it; the block becomes an
    fx.GraphModule. Last of the graph passes: it changes modules the model-wide graph names."""
    for block, conv, what, relu in fuse_residual_blocks(
            model, (_PackedKernel, _Int8Kernel, _Fp32SumKernel)):
        d = by_name[f"{block}.{conv}"]
        if what == "relu":
            d.relu_fused = f"{block}.{relu}" if relu else f"{block}: relu"
        else:
            d.residual_fused = f"{block}: {what}"


def _channels_last_input(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook of a kept QuantConv2d: its 4-D input in channels-last memory."""
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    return None


def _kept_convs_channels_last(model: nn.Module) -> None:
    """Pass: every QuantConv2d still in the model (kept) runs on channels-last input, so its output
    and what follows it (BN, ReLU, max-pool) are channels-last, as the deployed layers' outputs
    are. Why: a kept first conv fed an NCHW image leaves NCHW behind it, and torch's NCHW
    max_pool2d is about 16x slower than its channels-last one (109 vs 6.8 ms CPU time for a
    ResNet-18 stem, batch 16, on a Zen 4 core). Measured on a binary ResNet-18 whose conv1 is kept
    (8-bit activations on a CPU without VNNI, forced AVX2 paths, batch 16, one thread): from
    0.81-0.99x to 1.26-1.44x the speed of torch's int8 model, in two scripts (docs/kernels.md).
    The values are the conv's own to float rounding (oneDNN may order the sums differently in the
    two layouts)."""
    for m in model.modules():
        if isinstance(m, QuantConv2d):
            m.register_forward_pre_hook(_channels_last_input)


def _max_pools_without_indices(model: nn.Module) -> None:
    """Pass: every plain nn.MaxPool2d becomes hwq.deploy's MaxPool2d (pool.py), which gives the
    same values without computing the argmax indices (1.5-1.9x faster on a ResNet-18 stem)."""
    for name, m in list(model.named_modules()):
        if MaxPool2d.applies(m):
            replace(model, name, MaxPool2d.from_torch(m))

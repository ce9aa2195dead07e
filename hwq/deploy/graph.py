"""What follows what in the model: the torch.fx graph deploy reads to fold, chain and fuse.

The model is traced once, with quantized layers and batch norms as leaves, before deploy swaps any
module. The queries here run both before the swaps (``bn_after``: the QuantConv2d layers) and after
them (``sign_chains``, ``relu_after``: the deployed layers). That is sound because of one invariant:

    a call_module node's target is the module's qualified name, and deploy swaps a module only by
    setting another under the same name (``replace``), never by adding, removing or renaming one.

So ``model.get_submodule(node.target)`` is, after the swaps, the module that now stands where the
traced one stood: a deployed layer where a QuantConv2d was, an Identity where a folded batch norm
or a removed ReLU was. The edges of the graph (who feeds whom) are those of the traced model,
which the swaps do not change: a deployed layer consumes and feeds what its QAT layer did, and an
Identity passes on what the module it replaced received.

A model fx cannot trace (data-dependent control flow) gives no graph: deploy then folds, chains
and fuses nothing, and its report says so.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..nn import QuantConv2d, QuantLayer
from .layers import DeployedLayer, PackedConv2d


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QuantLayer, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.Graph | None:
    """The model's fx graph with quantized layers and batch norms as leaves; None if untraceable."""
    try:
        return _LeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any untraceable model: deploy without folding or chaining
        return None


def replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the module called ``name`` by ``new`` under every name it has (a module registered
    twice, ``self.b = self.a``, is one module: both names must see the replacement). Names are
    kept: the graph traced before the swap still addresses the module (module docstring)."""
    old = model.get_submodule(name)
    for parent in list(model.modules()):
        for child, m in list(parent._modules.items()):
            if m is old:
                setattr(parent, child, new)


def _called_once(graph: fx.Graph, target: str) -> bool:
    return sum(n.op == "call_module" and n.target == target for n in graph.nodes) == 1


def _sole_users(graph: fx.Graph, model: nn.Module, node: fx.Node):
    """Yield (name, module) along the chain of modules that alone consume ``node``'s output, one
    after the other, each called only there with that single argument; stop where that fails."""
    cur = node
    while len(cur.users) == 1:
        user = next(iter(cur.users))
        if (user.op != "call_module" or len(user.args) != 1 or user.kwargs
                or not _called_once(graph, user.target)):
            return
        yield user.target, model.get_submodule(user.target)
        cur = user


def _layer_nodes(graph: fx.Graph, model: nn.Module, kinds):
    """The nodes of the layers of type ``kinds`` called once: whatever follows a layer called
    twice (c(bn(c(x)))) follows only one of its calls, so it cannot be fused into the layer."""
    return [n for n in graph.nodes
            if n.op == "call_module" and isinstance(model.get_submodule(n.target), kinds)
            and _called_once(graph, n.target)]


def bn_after(graph: fx.Graph, model: nn.Module) -> dict[str, str]:
    """{conv name: name of the BatchNorm2d that alone consumes its output, called only there}.
    Asked before the swaps: the convs are still QuantConv2d."""
    pairs = {}
    for node in _layer_nodes(graph, model, QuantConv2d):
        first = next(_sole_users(graph, model, node), None)
        # without running statistics a BN normalises each batch by itself, even in eval mode
        if (first is not None and isinstance(first[1], nn.BatchNorm2d)
                and first[1].running_mean is not None and first[1].running_var is not None):
            pairs[node.target] = first[0]
    return pairs


def kept_followers(graph: fx.Graph, model: nn.Module) -> dict[str, list[str]]:
    """{conv name: [its batch norm, and the ReLU after that if one alone follows]}: the modules a
    deployed conv absorbs (bn_after, then relu_after) and the QAT conv would still run, so deploy
    times a kept conv together with them. Asked before the swaps."""
    out = {}
    for node in _layer_nodes(graph, model, QuantConv2d):
        chain = list(_sole_users(graph, model, node))[:2]
        if not chain or not isinstance(chain[0][1], nn.BatchNorm2d) \
                or chain[0][1].running_mean is None or chain[0][1].running_var is None:
            continue
        out[node.target] = [chain[0][0]] + (
            [chain[1][0]] if len(chain) > 1 and isinstance(chain[1][1], nn.ReLU) else [])
    return out


def _sign_preserving(m: nn.Module) -> bool:
    """Modules after which x < 0 holds exactly where it held before (NaN stays "not < 0")."""
    if isinstance(m, nn.Hardtanh):  # clamps to [min_val, max_val]
        return m.min_val < 0 <= m.max_val
    return isinstance(m, (nn.Identity, nn.Dropout))  # Dropout: deploy runs in eval mode


def sign_chains(graph: fx.Graph, model: nn.Module) -> list[tuple[str, list[str], str]]:
    """[(deployed conv A, modules between, deployed binary conv B)] where A's output reaches B only
    through sign-preserving modules, each used once: A can hand B packed sign bits directly.
    Asked after the swaps: A and B are PackedConv2d layers, a folded batch norm between them an
    Identity."""
    chains = []
    for node in _layer_nodes(graph, model, PackedConv2d):
        between = []
        for name, mod in _sole_users(graph, model, node):
            if isinstance(mod, PackedConv2d) and mod.binary and mod.groups == 1:
                chains.append((node.target, between, name))
                break
            if not _sign_preserving(mod):
                break
            between.append(name)
    return chains


def relu_after(graph: fx.Graph, model: nn.Module, kinds: tuple) -> list[tuple[str, str]]:
    """[(deployed layer, nn.ReLU module)] where the ReLU, called only there, alone consumes the
    layer's output (after its folded batch norm): the layer can apply it in its epilogue. Asked
    after the swaps: the layers are of ``kinds`` (deployed layers), a folded BN an Identity."""
    pairs = []
    for node in _layer_nodes(graph, model, kinds):
        for name, mod in _sole_users(graph, model, node):
            if isinstance(mod, nn.ReLU):
                pairs.append((node.target, name))
            if not isinstance(mod, nn.Identity):  # only a folded batch norm may come between
                break
    return pairs


# ---- residual blocks: a rewrite of one block's own forward ------------------------------------
#
# A torchvision BasicBlock runs relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut) with ONE nn.ReLU
# module called twice, so the model-wide queries above (a ReLU called once) fuse neither ReLU, and
# the residual add is a function call, not a module. Here each module is traced alone, its
# children as leaves, and its graph is rewritten at the call sites:
#   conv -> (Identity: folded BN) -> ReLU         the conv's epilogue applies the ReLU;
#   conv -> (Identity) -> add(., r) [-> ReLU]     conv(x, r, residual_relu=...): the add and the ReLU
#                                                 in the epilogue (PackedConv2d only);
# and the module is replaced by an fx.GraphModule of the rewritten graph (same class name, same
# child names, the public plain attributes copied), which computes the same float32 values.

_ADDS = (operator.add, operator.iadd, torch.add)
_RELU_FUNCTIONS = (torch.relu, F.relu)


class _ChildLeaves(fx.Tracer):
    """Traces one module's own forward: every module it calls is a leaf."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def _module(block: nn.Module, node: fx.Node) -> nn.Module | None:
    return block.get_submodule(node.target) if node.op == "call_module" else None


def _is_relu(block: nn.Module, node: fx.Node, arg: fx.Node) -> bool:
    """Whether ``node`` is ReLU(arg) and nothing else (an nn.ReLU, torch.relu or F.relu call)."""
    if node.args != (arg,) or node.kwargs:
        return False
    if node.op == "call_module":
        return isinstance(_module(block, node), nn.ReLU)
    return node.op == "call_function" and node.target in _RELU_FUNCTIONS


def _conv_behind(block: nn.Module, graph: fx.Graph, node: fx.Node, kinds
                 ) -> tuple[fx.Node, list[fx.Node]] | None:
    """(the deployed layer's node, the Identity nodes after it) when ``node`` is that layer's
    float output, through Identity modules only (folded batch norms), each used only there."""
    between = []
    while (node.op == "call_module" and isinstance(_module(block, node), nn.Identity)
           and len(node.users) == 1 and len(node.args) == 1 and not node.kwargs):
        between.append(node)
        node = node.args[0]
    m = _module(block, node)
    if (not isinstance(m, kinds) or len(node.users) != 1 or len(node.args) != 1 or node.kwargs
            or not _called_once(graph, node.target) or m.fuse_relu
            or getattr(m, "packed_output", False)):
        return None
    return node, between


def _registered_once(model: nn.Module, m: nn.Module) -> bool:
    """Whether ``m`` has one name in ``model`` (a flag set on it changes no other call site)."""
    return sum(c is m for p in model.modules() for c in p._modules.values()) == 1


def _rewrite(model: nn.Module, block: nn.Module, graph: fx.Graph, relu_kinds
             ) -> list[tuple[str, str, str]]:
    """Rewrite ``graph`` (of ``block``) in place; [(conv child name, "relu" | "add" | "add + relu",
    ReLU child name or "")] for each fusion made."""
    done = []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _ADDS or node.kwargs \
                or len(node.args) != 2 or not all(isinstance(a, fx.Node) for a in node.args):
            continue
        for i in (0, 1):
            found = _conv_behind(block, graph, node.args[i], PackedConv2d)
            if found is not None and _registered_once(model, _module(block, found[0])):
                break
        else:
            continue
        conv, between = found
        other = node.args[1 - i]
        relu = next(iter(node.users)) if len(node.users) == 1 else None
        relu = relu if relu is not None and _is_relu(block, relu, node) else None
        last = relu if relu is not None else node
        with graph.inserting_before(last):
            fused = graph.call_module(conv.target, (conv.args[0], other),
                                      {"residual_relu": relu is not None})
        last.replace_all_uses_with(fused)
        for n in ([relu] if relu is not None else []) + [node] + between + [conv]:
            graph.erase_node(n)
        done.append((conv.target, "add + relu" if relu is not None else "add",
                     relu.target if relu is not None and relu.op == "call_module" else ""))
    for node in list(graph.nodes):  # conv -> (Identity) -> ReLU at one call site of a shared ReLU
        if node.op not in ("call_module", "call_function") or len(node.args) != 1 \
                or not isinstance(node.args[0], fx.Node) or not _is_relu(block, node, node.args[0]):
            continue
        found = _conv_behind(block, graph, node.args[0], relu_kinds)
        if found is None or not _registered_once(model, _module(block, found[0])):
            continue
        conv, between = found
        _module(block, conv).fuse_relu = True
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        done.append((conv.target, "relu", node.target if node.op == "call_module" else ""))
    return done


def fuse_residual_blocks(model: nn.Module, relu_kinds: tuple
                         ) -> list[tuple[str, str, str, str]]:
    """Rewrite every submodule of ``model`` (not the model itself) whose own forward has a deployed
    layer followed by a ReLU at one call site, or a PackedConv2d followed by a residual add (and a
    ReLU), as described above; each such module is replaced by an fx.GraphModule under its name.
    relu_kinds: the deployed layer classes that can apply a ReLU. Returns [(module name, conv
    child name, "relu" | "add" | "add + relu", ReLU child name or "")]. A module fx cannot trace is
    left as it is."""
    done = []
    for name, block in list(model.named_modules()):
        if (not name or not block._modules or isinstance(block, (DeployedLayer, QuantLayer))
                or isinstance(block, fx.GraphModule)):
            continue
        try:
            graph = _ChildLeaves().trace(block)
        except Exception:  # noqa: BLE001 - data-dependent control flow: leave the module
            continue
        fused = _rewrite(model, block, graph, relu_kinds)
        if not fused:
            continue
        graph.lint()
        gm = fx.GraphModule(block, graph, class_name=type(block).__name__)
        for key, value in vars(block).items():  # e.g. a BasicBlock's stride, downsample=None
            if (not key.startswith("_") and key != "training" and not hasattr(gm, key)
                    and isinstance(value, (int, float, bool, str, tuple, type(None)))):
                setattr(gm, key, value)
        gm.train(block.training)
        replace(model, name, gm)
        done.extend((name, *f) for f in fused)
    return done

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

from torch import fx, nn

from ..nn import QuantConv2d, QuantLayer
from .layers import PackedConv2d


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

"""The import layering of docs/architecture.md, read from the source with ast: each part of hwq
imports only parts below it, the hardware models and the profile's data classes import no torch,
and no private name crosses from one part into another. A new import that breaks the layering
fails here with the file and line."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HWQ = os.path.join(ROOT, "hwq")

# Bottom to top: a part may import the parts of lower layers (and the shared helpers of layer 0).
LAYERS = [
    {"_C", "_C_cuda", "_io", "_table"},      # compiled kernels, file I/O, the table formatter
    {"quant", "kernels", "models"},          # quantizer math; packed ops; float model definitions
    {"nn", "_observe"},                      # drop-in modules holding quantizers
    {"plan"},                                # per-layer precision plans
    {"convert", "deploy"},                   # hwq.quantize; hwq.deploy onto the kernels
    {"profile", "summary"},                  # Profile data and extraction; hwq.summary
    {"workloads"},                           # shape-only reference networks (Profiles)
    {"hw"},                                  # accelerator models: Profile -> Report
    {"train"},                               # recipes, the loop, hwq train
    {"search", "zoo"},                       # precision search; trained-model zoo
    {"export"},                              # QONNX / ONNX QDQ files
    {"cli", "__init__"},                     # the command and the public API
    {"__main__"},                            # python -m hwq
]
COMPILED = {"_C", "_C_cuda"}  # extension modules built from csrc/, no Python source
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}
# Private names one part may take from another: none (deploy's base class of its layers is
# public, DeployedLayer, which summary and export recognise deployed layers by).
PRIVATE_OK: set[tuple[str, str, str]] = set()
NO_TORCH = ["hw", "workloads", os.path.join("profile", "profile.py"),
            os.path.join("profile", "layer.py")]


def _sources():
    for folder, _, files in os.walk(HWQ):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(folder, f)


def _part(path: str) -> str:
    rel = os.path.relpath(path, HWQ)
    return rel.split(os.sep)[0].removesuffix(".py")


def _imports(path: str):
    """(line, module, names) for every import in the file, function-level ones included; a
    relative import resolved to its absolute module."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    package = rel[:-1]  # the package a module (or __init__) sits in
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield node.lineno, module, [a.name for a in node.names]


def _targets(module: str, names: list[str]) -> list[str]:
    """The parts of hwq an import reaches: ``from hwq import _C`` reaches _C, ``from hwq.hw
    import map`` reaches hw; ``from hwq import __version__`` reaches only the version string."""
    if module == "hwq":
        return [n for n in names if n != "__version__"]
    if module.startswith("hwq."):
        return [module.split(".")[1]]
    return []


def test_the_layers_name_every_part():
    parts = {_part(p) for p in _sources()}
    assert parts == set(LAYER) - COMPILED, (
        f"parts not in LAYERS (add them to docs/architecture.md too): {sorted(parts - set(LAYER))}"
        f"; gone: {sorted(set(LAYER) - COMPILED - parts)}")


def test_each_part_imports_only_lower_layers():
    bad = []
    for path in _sources():
        me = _part(path)
        for line, module, names in _imports(path):
            for target in _targets(module, names):
                if target != me and LAYER.get(target, 99) >= LAYER[me]:
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {me} (layer {LAYER[me]}) "
                               f"imports {target} (layer {LAYER.get(target)})")
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(bad)


@pytest.mark.parametrize("where", NO_TORCH)
def test_hardware_models_and_profile_data_import_no_torch(where):
    path = os.path.join(HWQ, where)
    files = [path] if path.endswith(".py") else [p for p in _sources()
                                                 if p.startswith(path + os.sep)]
    assert files
    for f in files:
        for line, module, _ in _imports(f):
            assert module.split(".")[0] != "torch", f"{os.path.relpath(f, ROOT)}:{line}: {module}"


def test_no_private_name_crosses_parts():
    bad = []
    for path in _sources():
        me = _part(path)
        for line, module, names in _imports(path):
            if not module.startswith("hwq.") or module.split(".")[1] == me:
                continue
            for n in names:
                private = n.startswith("_") and not n.startswith("__")
                if private and (me, module, n) not in PRIVATE_OK:
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line}: from {module} import {n}")
    assert not bad, "private names used across parts (make them public):\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    # the parser must find relative, absolute and function-level imports, or the tests above
    # could pass on nothing
    f = tmp_path / "hwq" / "hw" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text("from ..train import run\nimport hwq.cli\ndef g():\n    from torch import nn\n")
    global ROOT
    old, ROOT = ROOT, str(tmp_path)
    try:
        got = [(m, _targets(m, n)) for _, m, n in _imports(str(f))]
    finally:
        ROOT = old
    assert got == [("hwq.train", ["train"]), ("hwq.cli", ["cli"]), ("torch", [])]

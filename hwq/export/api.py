"""hwq.export: a QAT model -> a QONNX file (FINN, qonnx) or an ONNX QDQ file (onnxruntime and most
deployment stacks) that computes what the model computes in eval mode.

torch.onnx's dynamo exporter writes the graph (convolutions, BatchNormalization, Relu / Clip for
Hardtanh, pooling, residual Adds, Flatten / Reshape as standard ONNX ops); hwq replaces each of its
quantizers by an operator that the exporter writes as the format's quantization nodes (see
hwq/export/mapping.py for what each quantizer becomes). Before anything is written:

  1. every replacement is compared with the quantizer it replaces on the tensor that quantizer saw
     when the model ran on ``example_input``: equal bit for bit, or ExportError;
  2. the file is checked with onnx.checker (full check, with strict shape inference), and each
     quantizer that ran must appear as its nodes in the graph;
  3. with ``verify=True`` (default) the file is run on ``example_input`` by the format's reference
     runtime (onnxruntime for QDQ, qonnx's executor for QONNX) and its output compared with the
     model's: a difference above ``VERIFY_TOLERANCE`` of the largest output refuses the file.

Then the file is written atomically (a temporary file renamed over ``path``): a failed export
leaves no file, or the previous one, behind. Its ``metadata_props`` make it self-describing: the
hwq plan, the profile's per-layer bit widths, what each quantizer became, which weights are exact
quantized values, and the verification result.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from typing import Any

import torch
from torch import nn

from .._io import atomic_write
from .._table import text_table

FORMATS = ("qonnx", "qdq")
VERIFY_TOLERANCE = 0.05
"""Largest accepted max|runtime - model| / max|model| on example_input: a safety net against a
runtime reading the nodes otherwise than intended (a type, an attribute, a broadcast), which moves
outputs by far more. It is not tighter because a convolution summed in another order can move one
activation across a rounding boundary: on a CIFAR-10 ResNet-20 at 8 bits, 0.4% of the images
differed, by up to 1.8% of the largest output. The tests compare more closely (tests/export)."""
MAX_BYTES = 2 ** 31 - 1  # one protobuf message; larger models would need external data


class ExportError(ValueError):
    """A layer or quantizer that the requested format cannot hold, or an exported form that does
    not compute what the model computes; the message names the layer."""


@dataclasses.dataclass
class ExportReport:
    """What hwq.export wrote: the file, its format, one record per quantizer, and the check."""

    path: str
    format: str
    quantizers: list  # of mapping.QuantizerExport
    verified: str
    max_abs_diff: float | None

    @property
    def exact_weights(self) -> list[str]:
        """Layers whose weights are written as their exact quantized values (no uniform grid)."""
        return [q.layer for q in self.quantizers if q.exact]

    def table(self) -> str:
        """The file, its format and the check, then a row per quantizer (hwq's text_table, every
        column left-aligned; the padding of the last column is stripped)."""
        head = ["quantizer", "spec", "bits", "exported as"]
        rows = [[q.name, q.quantizer, str(q.bits), q.nodes] for q in self.quantizers]
        lines = text_table(head, rows, left=len(head)).splitlines()
        return "\n".join([f"{self.path} ({self.format}); {self.verified}"]
                         + [line.rstrip() for line in lines])

    def __str__(self) -> str:
        return self.table()


def _deployed_layer(model: nn.Module) -> tuple[str, str] | None:
    from ..deploy import DeployedLayer
    for name, m in model.named_modules():
        if isinstance(m, DeployedLayer):
            return name, type(m).__name__
    return None


def _check_args(model, example_input, path, format, int4, verify, dynamic_batch) -> str:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model={type(model).__name__} is not accepted: expected a torch.nn.Module")
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        what = (f"a {example_input.dtype} tensor" if isinstance(example_input, torch.Tensor)
                else type(example_input).__name__)
        raise ValueError(f"example_input={what} is not accepted: expected a float tensor the model "
                         "accepts, batch first (e.g. torch.randn(1, 3, 32, 32))")
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not accepted: expected one of {FORMATS}")
    for pname, v in (("int4", int4), ("verify", verify), ("dynamic_batch", dynamic_batch)):
        if not isinstance(v, bool):
            raise ValueError(f"{pname}={v!r} is not accepted: expected True or False")
    if dynamic_batch and format == "qonnx":
        raise ValueError("dynamic_batch=True is not accepted for format='qonnx': FINN and qonnx's "
                         "executor need a fixed input shape (export with the batch size you run)")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"path={path!r} is not accepted: expected a file path such as "
                         "'model.onnx'")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"path={path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"path={path!r} is a folder: expected a file path")
    deployed = _deployed_layer(model)
    if deployed:
        raise ValueError(f"layer {deployed[0]!r} is a {deployed[1]} made by hwq.deploy (packed "
                         "integer kernels), which no ONNX format holds: export the QAT model "
                         "(before hwq.deploy)")
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            raise ValueError(f"model tensor {name!r} is {t.dtype}: export takes float32 models "
                             "(call model.float() first)")
    return path


def _capture_inputs(model: nn.Module, x: torch.Tensor):
    """Run ``model`` (eval, no_grad) on x twice; return ({quantizer name: first input}, {name:
    calls in one run}, output). The first run sets any state a quantizer decides on its first
    input (activation ranges, learned-step initialisation, signedness), as the model's own first
    eval call would; the second gives the reference output."""
    from ..quant import Quantizer
    seen: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def hook(mod, args, name):
        if args and isinstance(args[0], torch.Tensor):
            seen.setdefault(name, args[0].detach().clone())
            calls[name] = calls.get(name, 0) + 1

    handles = [m.register_forward_pre_hook(lambda mod, a, n=n: hook(mod, a, n))
               for n, m in model.named_modules() if isinstance(m, Quantizer)]
    try:
        with torch.no_grad():
            model(x)
            calls.clear()
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"the model returns {type(y).__name__}: hwq.export takes models that "
                         "return one tensor")
    return seen, calls, y


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _profile_bits(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    from ..profile import profile
    if not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()):
        return []  # nothing hwq.profile describes (a model of QuantAct and pooling, say)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compute layers it skips are not this function's news
        prof = profile(model, x)
    return [{"name": layer.name, "kind": layer.kind, "w_bits": layer.w_bits,
             "a_bits": layer.a_bits, "w_quant": layer.w_quant, "a_quant": layer.a_quant,
             "w_float": layer.w_float, "a_float": layer.a_float, "macs": layer.macs,
             "weights": layer.weights} for layer in prof.layers]


def _torch_onnx(model: nn.Module, x: torch.Tensor, dynamic_batch: bool):
    from . import ops
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (x,), dynamo=True, opset_version=ops.OPSET, verbose=False,
                custom_translation_table=ops.TRANSLATIONS, input_names=["input"],
                output_names=["output"], optimize=False, **kwargs)
    except Exception as e:  # the exporter's errors are long; keep the cause and say who failed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"torch.onnx could not export the model: {first}") from e
    proto = program.model_proto
    _tidy(proto)
    return proto


def _tidy(proto) -> None:
    """In place: each int8 weight-code initializer cast to int4/uint4 becomes an int4/uint4
    initializer of the same name (torch has no 4-bit type to hold it), so DequantizeLinear reads
    it directly; then constant folding and dead-node removal (onnxscript's public passes). Not the
    exporter's default optimizer: its rewrite rules fuse a BatchNormalization into a convolution
    whose weight is an initializer, which would turn exact quantized weights into other numbers."""
    import onnx
    import onnxscript.optimizer as opt
    from onnx import numpy_helper
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    four = (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)
    for node in list(graph.node):
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to in four and node.input[0] in inits:
            codes = numpy_helper.to_array(inits[node.input[0]])
            name = node.input[0]  # the codes buffer's name (conv1.weight_quant.codes)
            graph.node.remove(node)
            graph.initializer.remove(inits.pop(name))
            graph.initializer.append(onnx.helper.make_tensor(name, to, codes.shape,
                                                             codes.flatten().tolist()))
            for other in graph.node:
                for i, inp in enumerate(other.input):
                    if inp == node.output[0]:
                        other.input[i] = name
            for vi in [v for v in graph.value_info if v.name in (name, node.output[0])]:
                graph.value_info.remove(vi)  # int8 / int4 types recorded for the old names
    opt.fold_constants(proto)
    opt.remove_unused_nodes(proto)


def _check_graph(proto, records, fmt: str) -> None:
    """onnx.checker (full check: strict shape inference), and the nodes of every quantizer that
    ran are in the graph (at least one of each type per quantizer: the exporter may merge equal
    constants, never drop a quantizer)."""
    import onnx
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"the exported {fmt} model fails onnx.checker: {e}") from e
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    want: dict[str, int] = {}
    for r in records:
        for op_type in r.op_types:
            want[op_type] = want.get(op_type, 0) + 1
    for op_type, n in want.items():
        if counts.get(op_type, 0) < n:
            raise ValueError(f"the exported graph has {counts.get(op_type, 0)} {op_type} node(s) "
                             f"where the quantizers need {n}: not writing an incomplete file")


def _metadata(proto, fields: dict[str, str]) -> None:
    import onnx
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, fields)


def export(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike,
           format: str = "qonnx", *, int4: bool = True, verify: bool = True,
           dynamic_batch: bool = False) -> ExportReport:
    """Write ``model`` (a QAT model, as hwq.quantize and training leave it) to ``path`` as QONNX
    (``format="qonnx"``: Quant / BipolarQuant nodes, for FINN and the qonnx tools) or as ONNX QDQ
    (``format="qdq"``: QuantizeLinear / Clip / DequantizeLinear, for onnxruntime).

    example_input: a float tensor the model accepts (batch first); it fixes the input shape and is
        used to check the file. The model itself is not changed: a copy on the CPU, in eval mode,
        is exported (a quantizer that has not seen data yet is set by this copy's first call, as
        the model's own first eval call would set it).
    int4: QDQ only: 4-bit activation and <= 4-bit weight codes as int4/uint4 (opset 21); False
        keeps them int8/uint8 with a Clip (for runtimes without 4-bit types).
    verify: run the file with onnxruntime (QDQ) or qonnx's executor (QONNX) on example_input and
        refuse to write it when its output differs from the model's (see VERIFY_TOLERANCE).
    dynamic_batch: QDQ only: make the batch dimension symbolic (any batch size in onnxruntime);
        QONNX files keep example_input's shape, as FINN and qonnx's executor need.

    Returns an ExportReport (what each quantizer became). Raises ValueError (ExportError for a
    layer or quantizer the format cannot hold, naming it) and writes nothing on any failure.
    """
    path = _check_args(model, example_input, path, format, int4, verify, dynamic_batch)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"hwq.export needs {e.name}: pip install 'hwq[export]' (onnx, "
                          "onnxscript, onnxruntime, qonnx)") from None
    from .. import __version__
    from ..plan import Plan
    from . import runtime
    from .mapping import map_quantizer

    work = copy.deepcopy(model).cpu().eval()
    x = example_input.detach().cpu()
    seen, calls, y_ref = _capture_inputs(work, x)
    plan = Plan.from_model(work).to_dict()
    profile_bits = _profile_bits(work, x)

    from ..quant import Quantizer
    records = []
    for name, q in [(n, m) for n, m in work.named_modules() if isinstance(m, Quantizer)]:
        if name not in seen:
            continue  # did not run on example_input: not part of the traced graph
        new, rec = map_quantizer(name, q, seen[name], format, int4)
        rec.calls = calls.get(name, 1)
        records.append(rec)
        _set_module(work, name, new)
    with torch.no_grad():
        y_new = work(x)
    if not torch.equal(y_new, y_ref):
        raise ValueError("the model with its quantizers replaced by their exported forms does not "
                         "reproduce the model's output bit for bit (max |diff| "
                         f"{(y_new - y_ref).abs().max().item():.3g}); not writing the file")

    proto = _torch_onnx(work, x, dynamic_batch)
    _check_graph(proto, records, format)

    verified, max_diff = "not verified (verify=False)", None
    if verify:
        got = runtime.run(proto, x.numpy(), format)
        want = y_ref.numpy()
        if got.shape != want.shape:
            raise ValueError(f"{runtime.runtime_version(format)} gives an output of shape "
                             f"{got.shape} where the model gives {want.shape}: not writing the file")
        max_diff = float(abs(got - want).max()) if want.size else 0.0
        scale = float(abs(want).max()) if want.size else 0.0
        rel = max_diff / scale if scale > 0 else max_diff
        if not rel <= VERIFY_TOLERANCE:  # NaN fails too
            raise ValueError(f"{runtime.runtime_version(format)} computes a different output from "
                             f"the model on example_input (max |diff| {max_diff:.3g}, "
                             f"{rel:.3g} of max |output|, accepted {VERIFY_TOLERANCE}): not "
                             "writing the file")
        verified = (f"verified with {runtime.runtime_version(format)} on example_input "
                    f"{tuple(x.shape)}: max |diff| {max_diff:.3g} (max |output| {scale:.3g})")

    proto.producer_name, proto.producer_version = "hwq", __version__
    exact = [r.layer for r in records if r.exact]
    _metadata(proto, {
        "hwq.format": format,
        "hwq.version": __version__,
        "hwq.quantizers": json.dumps([r.to_dict() for r in records]),
        "hwq.exact_weights": json.dumps(exact),
        "hwq.exact_weights_note": (
            "the weights of these layers are their exact quantized values (quantizers without a "
            "uniform grid: pow2, ternary), written as float initializers or integer codes times "
            "a scale, never approximated" if exact else "none"),
        "hwq.plan": json.dumps(plan),
        "hwq.profile_bits": json.dumps(profile_bits),
        "hwq.verified": verified,
    })
    data = proto.SerializeToString()
    if len(data) > MAX_BYTES:
        raise ValueError(f"the exported model is {len(data) / 2**30:.2f} GiB: one ONNX file holds "
                         "at most 2 GiB")
    atomic_write(path, lambda f: f.write(data), mode="wb")
    return ExportReport(path, format, records, verified, max_diff)

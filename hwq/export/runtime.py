"""Run an exported file with the reference runtimes: onnxruntime for QDQ files, qonnx's executor
(qonnx.core.onnx_exec, the reference of FINN's QONNX front end) for QONNX files.

Used by hwq.export to check a file before writing it, by ``hwq export --check-data`` and by the
tests. Both take and return float32 numpy arrays.
"""
from __future__ import annotations

import os

import numpy as np


def _missing(what: str) -> ImportError:
    return ImportError(f"{what} is not installed: pip install 'hwq[export]' (onnx, onnxruntime, "
                       "qonnx)")


def run_onnxruntime(model, x: np.ndarray) -> np.ndarray:
    """Outputs of ``model`` (an onnx.ModelProto, serialized bytes or a file path) on input ``x``,
    computed by onnxruntime's CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise _missing("onnxruntime") from None
    if not isinstance(model, (bytes, str, os.PathLike)):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(os.fspath(model) if isinstance(model, os.PathLike) else model,
                                opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def run_qonnx(model, x: np.ndarray) -> np.ndarray:
    """Outputs of the QONNX ``model`` (onnx.ModelProto or file path) on input ``x``, computed by
    qonnx.core.onnx_exec.execute_onnx (node by node: Quant / BipolarQuant by qonnx's numpy
    reference, standard nodes by onnxruntime)."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
    except ImportError:
        raise _missing("qonnx") from None
    import onnx
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    wrapper = ModelWrapper(onnx.ModelProto.FromString(model.SerializeToString()))
    inp = wrapper.graph.input[0].name
    out = wrapper.graph.output[0].name
    result = execute_onnx(wrapper, {inp: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(result[out], dtype=np.float32)


def run(model, x: np.ndarray, fmt: str) -> np.ndarray:
    """The runtime of format ``fmt`` ("qdq": onnxruntime, "qonnx": qonnx) on ``x``."""
    return run_onnxruntime(model, x) if fmt == "qdq" else run_qonnx(model, x)


def runtime_version(fmt: str) -> str:
    if fmt == "qdq":
        import onnxruntime
        return f"onnxruntime {onnxruntime.__version__}"
    from importlib.metadata import version
    return f"qonnx {version('qonnx')}"

"""Export to QONNX (FINN, qonnx) and ONNX QDQ (onnxruntime): ``hwq.export(model, example_input,
path, format="qonnx" | "qdq")``. Needs the ``export`` extra (onnx, onnxscript, onnxruntime, qonnx),
imported only when a file is exported, so ``import hwq`` works without it. See docs/export.md."""
from .api import FORMATS, VERIFY_TOLERANCE, ExportError, ExportReport, export

__all__ = ["export", "ExportError", "ExportReport", "FORMATS", "VERIFY_TOLERANCE"]

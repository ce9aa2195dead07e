"""ExportReport.table: the file, its format and the check, then a row per quantizer through hwq's
one table formatter (every column left-aligned, nothing after the last cell), by hand."""
from hwq.export.api import ExportReport
from hwq.export.mapping import QuantizerExport


def test_table_by_hand():
    qs = [QuantizerExport("conv1.weight_quant", "conv1", "weight", "fixed:8", 8,
                          "Quant (per channel)"),
          QuantizerExport("conv1.act_quant", "conv1", "act", "binary", 1, "BipolarQuant"),
          QuantizerExport("fc.weight_quant", "fc", "weight", "ternary", 2, "Quant")]
    r = ExportReport("m.onnx", "qonnx", qs, "verified with qonnx (max diff 0)", 0.0)
    # columns 18, 7, 4 and 19 wide, two spaces apart: the rule spans 54 characters
    assert str(r) == "\n".join([
        "m.onnx (qonnx); verified with qonnx (max diff 0)",
        "quantizer           spec     bits  exported as",
        "-" * 54,
        "conv1.weight_quant  fixed:8  8     Quant (per channel)",
        "conv1.act_quant     binary   1     BipolarQuant",
        "fc.weight_quant     ternary  2     Quant"])
    empty = ExportReport("e.onnx", "qdq", [], "not verified", None)
    assert empty.table() == "\n".join(["e.onnx (qdq); not verified",
                                       "quantizer  spec  bits  exported as", "-" * 34])

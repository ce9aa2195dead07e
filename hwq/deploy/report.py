"""What hwq.deploy did, per layer: the implementation chosen, why, and what was fused into it."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class LayerDecision:
    name: str
    impl: str          # "binary", "bitserial W2A2", "int8 W8A8", or "kept" (runs the QAT layer)
    reason: str = ""   # why it was kept, or why this implementation was chosen
    bn_folded: str = ""  # name of the folded BatchNorm2d, if any
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)  # when measured
    packed_output_to: str = ""  # the binary layer this one hands packed sign bits to, if any
    relu_fused: str = ""  # name of the nn.ReLU applied in this layer's epilogue, if any
    residual_fused: str = ""  # "<block>: add" or "<block>: add + relu" done in this layer's epilogue


@dataclasses.dataclass
class DeployReport:
    """What hwq.deploy did per layer; ``kept`` lists the layers left as they were, with reasons."""

    layers: list[LayerDecision]
    traced: bool

    @property
    def kept(self) -> list[LayerDecision]:
        return [d for d in self.layers if d.impl == "kept"]

    def __str__(self) -> str:
        rows = []
        for d in self.layers:
            timed = ", ".join(f"{k} {v:.3g} ms" for k, v in d.timings_ms.items())
            rows.append(f"{d.name:<32} {d.impl:<18} {('bn ' + d.bn_folded + ' ') if d.bn_folded else ''}"
                        f"{('-> signs packed for ' + d.packed_output_to + ' ') if d.packed_output_to else ''}"
                        f"{('relu ' + d.relu_fused + ' ') if d.relu_fused else ''}"
                        f"{('residual ' + d.residual_fused + ' ') if d.residual_fused else ''}"
                        f"{d.reason}{(' [' + timed + ']') if timed else ''}")
        note = "" if self.traced else ("\n(torch.fx could not trace the model: no batch norm "
                                       "folded, no layers chained)")
        return "\n".join(rows) + note

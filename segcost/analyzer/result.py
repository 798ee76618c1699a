"""Result dataclasses of an analysis; reports render these and never compute costs.

`to_dict()` produces the ``segcost.analysis/1`` JSON schema of DESIGN.md; every count
is an exact Python int.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import asdict, dataclass, field
from typing import Any

from segcost.analyzer.conventions import convention_totals
from segcost.analyzer.layers import LayerCost, LayerTable

__all__ = ["SCHEMA", "CONVENTIONS", "AnalysisResult", "ControlFlowCost", "Coverage", "LayerCost", "LayerTable",
           "ModelSummary", "OpTypeTotal", "SubgraphCost", "TensorSummary", "Totals"]

SCHEMA = "segcost.analysis/1"

CONVENTIONS = {
    "macs": "multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, RNN cells and their "
            "quantized/fused forms; batch included",
    "flops": "2*macs + one per elementary op of everything else (bias add, BN, activation, "
             "pooling, resize, elementwise, reduction)",
    "bias": "not MACs; the bias adds of MAC layers, counted in flops",
    "flops_by_category": "per layer, flops - 2*macs split by --count category, every flop in one: an op's "
                         "in its op type's category, a MAC layer's other work (a fused attention's softmax, "
                         "a DeformConv's sampling, an LSTM's gates) and a fused op's parts in the category "
                         "of the op each stands for",
    "batchnorm": "not MACs; 2 flops per element",
    "activation": "not MACs; 1-9 flops per element by op (see `segcost ops`); Exp, Log, Erf and the "
                  "trigonometric functions too",
    "pooling": "not MACs; one flop per window element",
    "resize": "not MACs; nearest 0, linear 2*2^r-1 flops per output element; GridSample, RoiAlign "
              "sampling too",
    "elementwise": "not MACs; arithmetic, comparisons, logic, Pow/Sqrt/Reciprocal, (de)quantization: "
                   "(inputs-1) or the op's count per output element",
    "reduction": "not MACs; Reduce*, ArgMax/ArgMin, TopK, Hardmax, CumSum/CumProd, Col2Im, one-operand "
                 "Einsum: one flop per element reduced",
    "params": "initializer elements, each counted once at its first consumer",
    "control_flow": "If: the branch taken when the condition is known at the given shapes, else the branch with "
                    "more MACs; Loop/Scan: trip count x body; without a static trip "
                    "count: one trip, flagged unbounded",
}


@dataclass
class SubgraphCost:
    """One If branch or Loop/Scan body, analyzed on its own (one trip)."""

    name: str                  # the attribute: then_branch, else_branch, body
    macs: int
    flops: int
    params: int                # its own constants; outer weights are the outer graph's
    nodes: int
    unsupported: list[str] = field(default_factory=list)
    weight_bytes: int = 0      # of those params, by their dtype
    flops_by_category: dict[str, int] = field(default_factory=dict)   # flops − 2·macs by --count category


@dataclass
class ControlFlowCost:
    """How an If/Loop/Scan layer's MACs were made from its subgraphs (analyzer.control_flow)."""

    layer: str
    op_type: str
    subgraphs: list[SubgraphCost]
    trip_count: int | None     # Loop/Scan; None for If, or when unknown (then `unbounded`)
    macs: int                  # what the layer (and the totals) count
    flops: int
    counted: str               # "larger branch (then_branch)", "trips × body", "one trip (unbounded)"
    unbounded: bool = False
    params: int = 0
    weight_bytes: int = 0      # the subgraphs' own weights, counted once whatever the trip count
    flops_by_category: dict[str, int] = field(default_factory=dict)   # of `flops`, as the layer counts them


@dataclass
class Totals:
    macs: int = 0
    gmacs: float = 0.0
    flops: int = 0
    params: int = 0
    weight_bytes: int = 0
    activation_bytes: int = 0
    peak_activation_bytes: int = 0
    nodes: int = 0


@dataclass
class Coverage:
    counted: int = 0
    zero_by_convention: int = 0
    unsupported: list[str] = field(default_factory=list)     # "OpType:node"
    shape_unknown: list[str] = field(default_factory=list)   # non-MAC ops whose flops are unknown
    unknown_ops: dict[str, int] = field(default_factory=dict)  # op type → count
    unbounded: list[str] = field(default_factory=list)       # "Loop:node" without a static trip count (also counted)

    @property
    def nodes_covered_pct(self) -> float:
        total = self.counted + self.zero_by_convention + len(self.unsupported) + len(self.shape_unknown)
        return 100.0 if total == 0 else 100.0 * (self.counted + self.zero_by_convention) / total


@dataclass
class TensorSummary:
    name: str
    shape: list[int | str | None] | None
    dtype: str


@dataclass
class ModelSummary:
    path: str | None
    opset: int
    producer: str
    inputs: list[TensorSummary]
    outputs: list[TensorSummary]


@dataclass
class OpTypeTotal:
    count: int = 0
    macs: int = 0
    flops: int = 0
    params: int = 0


@dataclass
class AnalysisResult:
    model: ModelSummary
    totals: Totals
    coverage: Coverage
    layers: MutableSequence[LayerCost]   # a LayerTable from analyze(): a list of LayerCost made on first use
    by_op_type: dict[str, OpTypeTotal]
    warnings: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)   # categories also counted as MACs (analyzer.conventions)
    control_flow: list[ControlFlowCost] = field(default_factory=list)
    # layer name → its enclosing torch modules (analyzer.grouping.module_scopes), for the layers that record them
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self, include_layers: bool = True) -> dict[str, Any]:
        coverage = asdict(self.coverage)
        coverage["nodes_covered_pct"] = round(self.coverage.nodes_covered_pct, 2)
        return {
            "schema": SCHEMA,
            "model": asdict(self.model),
            "conventions": CONVENTIONS,
            "totals": asdict(self.totals),
            "coverage": coverage,
            "unknown_ops": dict(self.coverage.unknown_ops),
            # vars() instead of asdict(): layers hold only flat values and lists, and asdict's
            # recursive deep copy was a fifth of the analysis time on a 178-layer model.
            "layers": [dict(vars(layer)) for layer in self.layers] if include_layers else [],
            "by_op_type": {op_type: asdict(total) for op_type, total in self.by_op_type.items()},
            "warnings": list(self.warnings),
            "macs_by_convention": convention_totals(self, self.counted).to_dict(),
            **({"control_flow": [asdict(entry) for entry in self.control_flow]} if self.control_flow else {}),
        }

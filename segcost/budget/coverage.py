"""What an analysis did not count: the reasons its MAC count is only a lower bound.

`segcost analyze` lists unsupported ops, layers without a static shape and control flow
counted as one trip; a budget compared against such a count can pass although the model
is over it (a local function called twice counted 0 MACs and `check --max-gmacs` passed).
`count_gaps` gathers those facts once, for `check` (which fails MAC budgets on a partial
count unless allowed) and for every report that lists unsupported ops.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from segcost.analyzer import AnalysisResult
from segcost.analyzer.layers import layer_column
from segcost.analyzer.registry import SHAPE_UNKNOWN, UNSUPPORTED

DEFAULT_DOMAINS = ("", "ai.onnx")


def op_label(op_type: str, domain: str = "") -> str:
    """``Conv`` in the default ONNX domain, ``com.microsoft.nchwc:Conv`` in any other."""
    return op_type if domain in DEFAULT_DOMAINS else f"{domain}:{op_type}"


def counted_list(counts: dict[str, int]) -> str:
    """``{"Block": 2, "Pad": 1}`` -> ``"Block x2, Pad x1"`` (sorted by label)."""
    return ", ".join(f"{label} x{count}" for label, count in sorted(counts.items()))


def unsupported_op_counts(analysis: AnalysisResult) -> dict[str, int]:
    """{op label (domain-qualified outside the default domain): count} of the ops with no cost rule.

    Top-level layers carry their domain; ops inside If/Loop/Scan bodies are known only by
    op type (analyzer.result.SubgraphCost.unsupported) and are listed by it.
    """
    counts = _op_counts(analysis, UNSUPPORTED)
    if not counts and analysis.coverage.unknown_ops:   # a result without layers (e.g. from JSON)
        counts.update(analysis.coverage.unknown_ops)
    return dict(counts)


def _op_counts(analysis: AnalysisResult, status: str) -> Counter[str]:
    """{op label: count} of the layers of `status`, read by column: an analysis' LayerTable makes no
    LayerCost objects for it."""
    layers = analysis.layers
    return Counter(op_label(op_type, domain) for op_type, domain, layer_status
                   in zip(layer_column(layers, "op_type"), layer_column(layers, "domain"),
                          layer_column(layers, "status")) if layer_status == status)


@dataclass(frozen=True)
class CountGaps:
    """Why a MAC/flop count is a lower bound; empty lists and dicts when it is exact.

    Attributes:
        unsupported: {op label: count} of ops counted as 0 (no cost rule), top level.
        in_subgraphs: {op type: count} of ops inside If/Loop/Scan bodies counted as 0
            (no rule or no static shape).
        shape_unknown: {op label: count} of layers counted as 0 for want of a static shape.
        one_trip: control-flow layers whose body was counted once for an unknown or varying
            trip count, as ``"name (Loop)"``.
        warnings: every warning of the analysis, as `segcost analyze` prints them.
    """

    unsupported: dict[str, int] = field(default_factory=dict)
    in_subgraphs: dict[str, int] = field(default_factory=dict)
    shape_unknown: dict[str, int] = field(default_factory=dict)
    one_trip: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.unsupported or self.in_subgraphs or self.shape_unknown or self.one_trip)

    def reasons(self) -> list[str]:
        """One phrase per kind of gap, e.g. ``"2 unsupported ops (Block x2)"``."""
        reasons = []
        if self.unsupported:
            reasons.append(f"{sum(self.unsupported.values())} unsupported ops ({counted_list(self.unsupported)})")
        if self.in_subgraphs:
            reasons.append(f"{sum(self.in_subgraphs.values())} uncounted ops in control-flow bodies "
                           f"({counted_list(self.in_subgraphs)})")
        if self.shape_unknown:
            reasons.append(f"{sum(self.shape_unknown.values())} layers without a static shape "
                           f"({counted_list(self.shape_unknown)})")
        if self.one_trip:
            kinds = Counter(entry.rsplit("(", 1)[-1].rstrip(")") for entry in self.one_trip)
            reasons.append(", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
                           + f" counted as one trip ({', '.join(self.one_trip)})")
        return reasons

    def summary(self) -> str:
        """``"MACs are a lower bound: 2 unsupported ops (Block x2), 1 Loop counted as one trip (...)"``."""
        return "MACs are a lower bound: " + ", ".join(self.reasons()) if self.partial else ""

    def to_dict(self) -> dict:
        return {"partial": self.partial, "reason": self.summary(), "unsupported": dict(self.unsupported),
                "in_subgraphs": dict(self.in_subgraphs), "shape_unknown": dict(self.shape_unknown),
                "one_trip": list(self.one_trip), "warnings": list(self.warnings)}


def count_gaps(analysis: AnalysisResult) -> CountGaps:
    """The CountGaps of `analysis` (its layers, coverage, control_flow entries and warnings)."""
    in_subgraphs: Counter[str] = Counter()
    for entry in analysis.control_flow:
        for sub in entry.subgraphs:
            in_subgraphs.update(item.split(":", 1)[0] for item in sub.unsupported)
    shape_unknown = _op_counts(analysis, SHAPE_UNKNOWN)
    if not shape_unknown and analysis.coverage.shape_unknown:
        shape_unknown.update(item.split(":", 1)[0] for item in analysis.coverage.shape_unknown)
    one_trip = [f"{entry.layer} ({entry.op_type})" for entry in analysis.control_flow if entry.unbounded]
    return CountGaps(unsupported_op_counts(analysis), dict(in_subgraphs), dict(shape_unknown), one_trip,
                     list(analysis.warnings))

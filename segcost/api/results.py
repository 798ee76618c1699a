"""The API's result types: the dataclasses the CLI renders, plus notebook conveniences.

Each class subclasses the result the CLI's report renders (an `Analysis` *is* an
`AnalysisResult`, so every renderer accepts it) and adds `to_dict()` (the CLI's JSON
document), `to_pandas()` (one row per layer or budget) and `_repr_html_()` (a compact
summary and the top layers, for Jupyter). Nothing is recomputed here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from segcost.analyzer import AnalysisResult
from segcost.budget.evaluate import CheckResult
from segcost.errors import InputError
from segcost.pipeline import OptimizeResult
from segcost.reports import notebook
from segcost.reports.passes import optimize_report
from segcost.targets.results import TargetReport, priced_layer

__all__ = ["Analysis", "Check", "Cost", "Optimized", "from_base"]


def _frame(rows: list[dict[str, Any]]):
    """rows → pandas.DataFrame; pandas is not a dependency of segcost, so it is imported only here."""
    try:
        import pandas
    except ImportError:
        raise InputError("to_pandas() needs pandas, which segcost does not install: pip install pandas") from None
    return pandas.DataFrame.from_records(rows)


def from_base(cls, base, **extra):
    """An instance of subclass `cls` holding the same field values as `base` (no copies)."""
    values = {item.name: getattr(base, item.name) for item in fields(base)}
    return cls(**values, **extra)


@dataclass
class Analysis(AnalysisResult):
    """`segcost analyze`'s result: totals, coverage, one LayerCost per node; `target` when a target was given.

    Attributes:
        target: the per-layer estimate on the target (TargetReport), or None.
        findings: the verifier's findings when a target was given (the HTML report shows them).
    """

    target: TargetReport | None = None
    findings: list = field(default_factory=list)

    def to_dict(self, include_layers: bool = True) -> dict[str, Any]:
        """The `segcost.analysis/1` JSON document of `segcost analyze --format json` (exact ints)."""
        document = super().to_dict(include_layers)
        if self.target is not None:
            document["target"] = self.target.to_dict()
        return document

    def to_pandas(self):
        """One row per layer (the columns of `LayerCost`); with a target, its ms/cycles/bound/placement too.

        Raises:
            InputError: pandas is not installed.
        """
        rows = [dict(vars(layer)) for layer in self.layers]
        if self.target is not None:
            # a layer's estimate rows: its own, or those the target's import made of it (a fused sequence's
            # one row goes to its first node's layer, a LayerNormalization's γ/β rows to the op's): summed,
            # so target_ms sums to the model's layer time; bound and placement of its slowest row
            names = {row["name"] for row in rows}
            by_layer: dict[str, list] = {}
            for estimate in self.target.layers:
                layer = priced_layer(estimate.name, names)
                if layer is not None:
                    by_layer.setdefault(layer, []).append(estimate)
            for row in rows:
                estimates = by_layer.get(row["name"], [])
                slowest = max(estimates, key=lambda estimate: estimate.ms, default=None)
                row.update(target_ms=sum(estimate.ms for estimate in estimates) if estimates else None,
                           target_cycles=sum(estimate.cycles for estimate in estimates) if estimates else None,
                           target_bound=slowest.bound if slowest else None,
                           target_placement=slowest.placement if slowest else None)
        return _frame(rows)

    def _repr_html_(self) -> str:
        return notebook.analysis_html(self)


@dataclass
class Optimized(OptimizeResult):
    """`segcost optimize`'s result (also of `quantize`): the rewritten graph and ONNX model, pass records,
    before/after analyses, verifier findings, the onnxruntime check and, for int8, the accuracy report.

    Attributes:
        output: where the model was written (None when not written).
    """

    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `segcost optimize --report FILE`."""
        return optimize_report(self, None, self.output)  # type: ignore[arg-type] # output None: not written

    def to_pandas(self):
        """One row per pass run (name, round, nodes and MACs before/after, seconds)."""
        return _frame([{**asdict(record), "notes": "; ".join(record.notes)} for record in self.records])

    def _repr_html_(self) -> str:
        return notebook.optimize_html(self)


@dataclass
class Cost(TargetReport):
    """`segcost cost`'s result: per-layer cycles, ms, bound and placement on a target profile, with totals.

    Attributes:
        model: the model's path or label, as in the CLI's JSON.
    """

    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `segcost cost --format json`."""
        return {"model": self.model, **super().to_dict()}

    def to_pandas(self):
        """One row per layer (the columns of `LayerEstimate`)."""
        return _frame([dict(vars(layer)) for layer in self.layers])

    def _repr_html_(self) -> str:
        return notebook.cost_html(self)


@dataclass
class Check(CheckResult):
    """`segcost check`'s result: one Outcome per budget; `passed` is what the CLI's exit code says."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `segcost check --format json`."""
        return {"passed": self.passed, "outcomes": [asdict(outcome) for outcome in self.outcomes]}

    def to_pandas(self):
        """One row per budget outcome (model, budget, limit, actual, unit, passed, detail)."""
        return _frame([asdict(outcome) for outcome in self.outcomes])

    def _repr_html_(self) -> str:
        return notebook.check_html(self)

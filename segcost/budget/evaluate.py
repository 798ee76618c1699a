"""Evaluate budgets and baselines: every limit becomes one Outcome (a JUnit testcase)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcost.analyzer import AnalysisResult
from segcost.analyzer.layers import layer_column
from segcost.budget.budgets import BUILTIN_SOURCE, ModelBudget
from segcost.budget.coverage import CountGaps, count_gaps
from segcost.errors import InputError
from segcost.fileio.numbers import parse_decimal, parse_input_shapes
from segcost.fileio.reads import read_json_file

BASELINE_SCHEMA = "segcost.baseline/1"


@dataclass
class Outcome:
    """One budget of one model: the limit, the measured value, pass or fail."""

    model: str
    budget: str
    limit: float
    actual: float
    unit: str
    passed: bool
    detail: str = ""
    file: str | None = None
    partial: str = ""   # why `actual` is only a lower bound (CountGaps.summary); fails unless allowed


# Budgets measured on the MAC/flop count: a partial count (CountGaps) makes them lower bounds.
COUNT_BUDGETS = ("max_gmacs", "max_layer_gmacs", "max_latency_ms", "baseline_macs")


@dataclass
class ModelCheck:
    budget: ModelBudget
    analysis: AnalysisResult
    outcomes: list[Outcome] = field(default_factory=list)
    findings: list = field(default_factory=list)
    latency_ms: float | None = None
    gaps: CountGaps = field(default_factory=CountGaps)


@dataclass
class CheckResult:
    models: list[ModelCheck]
    baseline_outcomes: list[Outcome] = field(default_factory=list)

    @property
    def outcomes(self) -> list[Outcome]:
        return [outcome for model in self.models for outcome in model.outcomes] + self.baseline_outcomes

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)


def load_model_graph(budget: ModelBudget):
    """The IR of a budget's model: an ONNX file, or a zoo model exported on the fly (torch extra)."""
    from segcost.frontends import onnx as onnx_frontend

    shapes = parse_input_shapes(budget.input_shapes)
    if budget.source == BUILTIN_SOURCE:
        from segcost.samples import deeplabv3lite

        return onnx_frontend.load_model(deeplabv3lite(), shapes, label=budget.name)
    if budget.zoo_name is None:
        return onnx_frontend.load(budget.source, shapes)
    from segcost.frontends.torch import load_module_graph, require_torch
    from segcost.zoo.registry import get

    require_torch()
    model = get(budget.zoo_name)
    input_shape = next(iter(shapes.values())) if shapes else (1, 3, *model.input_size)
    return load_module_graph(model.build(model.num_classes), input_shape, label=budget.source)


def partial_outcome(outcome: Outcome, gaps: CountGaps, allowed: bool) -> Outcome:
    """`outcome` of a COUNT_BUDGETS budget marked with why its count is a lower bound; failed unless `allowed`."""
    if outcome.budget in COUNT_BUDGETS and gaps.partial:
        outcome.partial = gaps.summary()
        if not allowed:
            outcome.passed = False
    return outcome


def _limit(outcomes: list[Outcome], budget: ModelBudget, name: str, limit, actual: float, unit: str,
           detail: str = "", gaps: CountGaps | None = None) -> None:
    if limit is None:
        return
    outcome = Outcome(budget.name, name, float(limit), float(actual), unit, actual <= limit, detail,
                      budget.config_file)
    outcomes.append(partial_outcome(outcome, gaps or CountGaps(), budget.allow_partial))


def check_model(budget: ModelBudget) -> ModelCheck:
    """Load the budget's model and evaluate its limits (see check_graph)."""
    return check_graph(budget, load_model_graph(budget))


def check_graph(budget: ModelBudget, graph) -> ModelCheck:
    """One Outcome per limit set in `budget`, measured on `graph` (the IR of the budget's model)."""
    from segcost.analyzer import analyze

    analysis = analyze(graph)
    gaps = count_gaps(analysis)
    result = ModelCheck(budget, analysis, gaps=gaps)
    outcomes = result.outcomes
    _limit(outcomes, budget, "max_gmacs", budget.max_gmacs, analysis.totals.macs / 1e9, "GMACs",
           f"{analysis.totals.macs:,} MACs", gaps)
    _limit(outcomes, budget, "max_params_m", budget.max_params_m, analysis.totals.params / 1e6, "M params")
    if budget.max_layer_gmacs is not None and analysis.layers:
        layers = analysis.layers   # by column: an analysis' LayerTable makes no LayerCost objects for it
        macs = layer_column(layers, "macs")
        biggest = max(range(len(macs)), key=macs.__getitem__)   # the first of the largest, as max over layers
        _limit(outcomes, budget, "max_layer_gmacs", budget.max_layer_gmacs, macs[biggest] / 1e9, "GMACs",
               f"largest layer {layer_column(layers, 'name')[biggest]} ({layer_column(layers, 'op_type')[biggest]})",
               gaps)
    _limit(outcomes, budget, "max_unsupported_ops", budget.max_unsupported_ops, len(analysis.coverage.unsupported),
           "ops", ", ".join(analysis.coverage.unsupported[:5]))
    if budget.verify:   # after analyze: the verifier folds and fuses `graph` in place
        from segcost.pipeline import verifier_findings

        result.findings = verifier_findings(graph, budget.rules)
        _limit(outcomes, budget, "verify", 0, len(result.findings), "findings",
               "; ".join(f"{finding.layer}: {finding.rule}" for finding in result.findings[:5]))
    if budget.max_latency_ms is not None:
        assert budget.target, "the budgets file and the command line both refuse max_latency_ms without a target"
        result.latency_ms, latency_gaps = estimate_latency_ms(graph, budget.target)
        _limit(outcomes, budget, "max_latency_ms", budget.max_latency_ms, result.latency_ms, "ms",
               f"estimated on {budget.target}", latency_gaps)
    return result


def estimate_latency_ms(graph, target: str) -> tuple[float, CountGaps]:
    """(latency in ms on `target`, what the costed graph left uncounted).

    The latency is priced on the folded and fused graph (pipeline.estimate_on_target), so its gaps
    are that graph's: a Loop whose trip count is Shape(x)[2] is counted one trip by analyze but
    folds to 16 trips here. `graph` is fused in place.
    """
    from segcost.analyzer import analyze
    from segcost.pipeline import estimate_on_target, target_pipeline

    fused = target_pipeline(graph, target)
    latency = float(estimate_on_target(fused, target, fuse=False).totals.latency_ms)
    return latency, count_gaps(analyze(fused))


def baseline_key(name: str) -> str:
    """A model's key in a baseline: `./a/m.onnx`, `a/m.onnx` and its absolute path are one key.

    The name is normalised (os.path.normpath, "/" separators) and an absolute path inside the
    working directory is made relative to it; names that are not paths ("lite", "zoo:X") are unchanged.
    """
    normal = os.path.normpath(name)
    if os.path.isabs(normal):
        relative = os.path.relpath(normal, os.getcwd())
        if relative != ".." and not relative.startswith(".." + os.sep):
            normal = relative
    return Path(normal).as_posix()


def _inputs(analysis: AnalysisResult) -> dict[str, list]:
    return {tensor.name: list(tensor.shape or []) for tensor in analysis.model.inputs}


def baseline_snapshot(checks: list[ModelCheck]) -> dict:
    models = {}
    for check in checks:
        analysis = check.analysis
        models[baseline_key(check.budget.name)] = {
            "source": check.budget.source, "input_shapes": check.budget.input_shapes, "inputs": _inputs(analysis),
            "totals": {"macs": analysis.totals.macs, "params": analysis.totals.params,
                       "flops": analysis.totals.flops, "nodes": analysis.totals.nodes},
            "layers": [{"name": layer.name, "op_type": layer.op_type, "macs": layer.macs, "params": layer.params}
                       for layer in analysis.layers],
        }
    return {"schema": BASELINE_SCHEMA, "models": models}


def read_baseline(path: str) -> dict:
    """A baseline JSON written by `segcost baseline save`, with every total checked (check_baseline).

    Raises:
        InputError: naming the file: not a small regular JSON file (fileio.reads.read_json_file;
            NaN/Infinity/out-of-range floats and integers past Python's digit limit included), or
            what check_baseline refuses.
    """
    return check_baseline(read_json_file(path, "baseline"), path)


def check_baseline(document: Any, path: str) -> dict:
    """`document` if it is a baseline `read_baseline` accepts; `baseline save` checks its snapshot here too.

    Totals are exact integers >= 0 of any size: counts are exact Python integers end to end, and a
    model declared at 2^40 x 2^40 has a 27-digit MAC count (Python's json reads it exactly; a reader
    that maps JSON numbers to doubles does not above 2^53). The writer and the reader share this one
    check, so a saved baseline always loads back.

    Raises:
        InputError: naming `path`: wrong schema, or a model whose totals are not integers >= 0, or
            whose inputs are not name -> shape lists.
    """
    if not isinstance(document, dict) or document.get("schema") != BASELINE_SCHEMA:
        raise InputError(f"{path}: not a segcost baseline (schema {BASELINE_SCHEMA!r} expected)")
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise InputError(f"{path}: models must be an object of model name -> entry")
    for name, entry in models.items():
        totals = entry.get("totals") if isinstance(entry, dict) else None
        if not isinstance(totals, dict):
            raise InputError(f"{path}: models[{name!r}] has no totals object")
        for metric in ("macs", "params"):
            value = totals.get(metric)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{path}: models[{name!r}].totals.{metric} must be an integer >= 0, got {value!r}")
        inputs = entry.get("inputs", {})
        if not isinstance(inputs, dict) or not all(isinstance(shape, list) for shape in inputs.values()):
            raise InputError(f"{path}: models[{name!r}].inputs must be an object of input name -> shape list")
    return document


def _same_inputs(check: ModelCheck, previous: dict, baseline_path: str) -> None:
    """Refuse (InputError) a baseline recorded at other input shapes: its MACs are another model's.

    Baselines record the analysed inputs ("inputs"); older ones only the --input-shape strings.
    """
    recorded = previous.get("inputs")
    current: dict | list = _inputs(check.analysis)
    if recorded is None:
        recorded, current = previous.get("input_shapes") or [], check.budget.input_shapes
        if not recorded:
            return   # nothing recorded: the model's own shapes, as now unless the file changed
    if recorded != current:
        raise InputError(f"{baseline_path}: {check.budget.name} was recorded at input {_shapes_text(recorded)}, "
                         f"this check measures {_shapes_text(current)}; MACs at different shapes are not "
                         f"comparable: check at the recorded shape or save the baseline again")


def _shapes_text(shapes) -> str:
    if isinstance(shapes, dict):
        return ", ".join(f"{name}={'x'.join(map(str, shape))}" for name, shape in shapes.items()) or "none"
    return ", ".join(map(str, shapes)) or "the model's own"


def parse_percent(text: str) -> float:
    """'2%' or '2' -> 2.0; a finite, non-negative percentage in ASCII digits (fileio.numbers.parse_decimal)."""
    number = text.strip()
    try:
        value = parse_decimal(number[:-1] if number.endswith("%") else number, "--max-increase")
    except InputError:
        raise InputError(f"--max-increase {text!r}: expected a percentage such as 2%") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"--max-increase {text!r}: must be a finite, non-negative percentage")
    return value


def compare_baseline(checks: list[ModelCheck], baseline: dict, max_increase_pct: float,
                     baseline_path: str) -> list[Outcome]:
    """One outcome per model and metric (MACs, params): fails when it grew more than allowed."""
    outcomes = []
    known = {baseline_key(name): entry for name, entry in baseline.get("models", {}).items()}
    if checks and not any(baseline_key(check.budget.name) in known for check in checks):
        raise InputError(f"{baseline_path} has no entry for {', '.join(check.budget.name for check in checks)} "
                         f"(it has: {', '.join(known) or 'nothing'})")
    for check in checks:
        previous = known.get(baseline_key(check.budget.name))
        if previous is None:
            continue  # a new model has no baseline yet; its absolute budgets still apply
        _same_inputs(check, previous, baseline_path)
        for metric, actual in (("macs", check.analysis.totals.macs), ("params", check.analysis.totals.params)):
            before = previous["totals"][metric]
            if before:
                growth = 100.0 * (actual - before) / before
                outcome = Outcome(check.budget.name, f"baseline_{metric}", max_increase_pct, growth, "% increase",
                                  growth <= max_increase_pct,
                                  f"{before:,} -> {actual:,} ({growth:+.2f}%) vs {baseline_path}")
            else:   # no percentage of 0: any growth from 0 exceeds 0 x (1 + max_increase); compared as counts
                unit = "MACs" if metric == "macs" else "params"
                outcome = Outcome(check.budget.name, f"baseline_{metric}", 0.0, float(actual), unit, actual == 0,
                                  f"0 -> {actual:,} vs {baseline_path} (the baseline has 0 {unit}: "
                                  f"any growth exceeds it, whatever --max-increase)")
            outcome.file = check.budget.config_file
            outcomes.append(partial_outcome(outcome, check.gaps, check.budget.allow_partial))
    return outcomes

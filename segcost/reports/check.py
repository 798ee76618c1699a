"""Render budget checks (table, JSON, JUnit XML, GitHub annotations, Markdown) and model diffs."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import asdict

from segcost.budget.diff import ModelDiff
from segcost.budget.evaluate import CheckResult, ModelCheck, Outcome
from segcost.fileio.writes import json_text
from segcost.reports.tables import markdown_cell, plain_text, text_table
from segcost.reports.units import human

CHECK_FORMATS = ("table", "json", "junit", "github", "md")


def _value(outcome: Outcome, value: float) -> str:
    if outcome.unit in ("ops", "findings", "MACs", "params"):
        return f"{int(value):,} {outcome.unit}"
    if outcome.unit == "% increase":
        return f"{value:+.2f}%"
    # three decimals, or three significant digits below 0.1: a 0.0002 GMACs limit is not "0.000 GMACs"
    return f"{value:.3f} {outcome.unit}" if value == 0 or abs(value) >= 0.1 else f"{value:.3g} {outcome.unit}"


def _model_notes(model: ModelCheck) -> list[str]:
    """Why the model's count is a lower bound, and the analysis's warnings (as `segcost analyze` gives them)."""
    notes = []
    if model.gaps.partial:
        verdict = "allowed (allow_partial)" if model.budget.allow_partial else \
            "MAC/latency budgets fail; --allow-partial (allow_partial = true) accepts it"
        notes.append(f"{model.budget.name}: {model.gaps.summary()} — {verdict}")
    notes.extend(f"{model.budget.name}: warning: {warning}" for warning in model.gaps.warnings)
    return [plain_text(note) for note in notes]


def _notes(result: CheckResult) -> list[str]:
    return [note for model in result.models for note in _model_notes(model)]


def _detail(outcome: Outcome) -> str:
    return f"{outcome.partial}; {outcome.detail}" if outcome.partial else outcome.detail


def _verdict(result: CheckResult) -> str:
    outcomes = result.outcomes
    failed = [outcome for outcome in outcomes if not outcome.passed]
    if not failed:
        return f"all {len(outcomes)} budgets hold"
    partial = sum(1 for outcome in failed if outcome.partial and outcome.actual <= outcome.limit)
    return f"{len(outcomes)} budgets, {len(failed) - partial} exceeded" + \
        (f", {partial} failed on a partial count" if partial else "")


def render_check(result: CheckResult, fmt: str = "table") -> str:
    """The check in `fmt` (CHECK_FORMATS); model text is made inert (tables.plain_text, markdown_cell)."""
    if fmt == "json":
        return json_text({"passed": result.passed, "outcomes": [asdict(outcome) for outcome in result.outcomes],
                          "models": [{"model": model.budget.name, "allow_partial": model.budget.allow_partial,
                                      "coverage": model.gaps.to_dict()} for model in result.models]})
    if fmt == "junit":
        return render_junit(result)
    if fmt == "github":
        return render_github(result)
    rows = [[outcome.model, outcome.budget, _value(outcome, outcome.actual), _value(outcome, outcome.limit),
             "ok" if outcome.passed else "FAIL", _detail(outcome)] for outcome in result.outcomes]
    table = text_table(rows, ["model", "budget", "actual", "limit", "result", "detail"], markdown=fmt == "md")
    notes, verdict = _notes(result), _verdict(result)
    if fmt == "md":
        icon = "✅" if result.passed else "❌"
        listed = "".join(f"- {markdown_cell(note)}\n" for note in notes)
        return f"### {icon} segcost budget check: {verdict}\n\n{table}\n" + (f"\n{listed}" if listed else "")
    return f"{table}\n" + "".join(f"note: {note}\n" for note in notes) + f"{verdict}\n"


def render_junit(result: CheckResult) -> str:
    """One <testsuite> per model, one <testcase> per budget; a failed budget is a <failure>.

    A partial count and the analysis's warnings go to the suite's <system-out>. All text passes
    through plain_text: XML 1.0 cannot hold control characters, even escaped.
    """
    suites = ElementTree.Element("testsuites", name="segcost check")
    by_model: dict[str, list[Outcome]] = {}
    for outcome in result.outcomes:
        by_model.setdefault(outcome.model, []).append(outcome)
    notes_by_model = {model.budget.name: _model_notes(model) for model in result.models}
    total_failures = 0
    for model, outcomes in by_model.items():
        failures = sum(1 for outcome in outcomes if not outcome.passed)
        total_failures += failures
        suite = ElementTree.SubElement(suites, "testsuite", name=plain_text(model), tests=str(len(outcomes)),
                                       failures=str(failures), errors="0")
        for outcome in outcomes:
            case = ElementTree.SubElement(suite, "testcase", classname=plain_text(f"segcost.{model}"),
                                          name=outcome.budget)
            if not outcome.passed:
                relation = ">" if outcome.actual > outcome.limit else "<= (partial count)"
                failure = ElementTree.SubElement(
                    case, "failure", message=plain_text(f"{outcome.budget}: {_value(outcome, outcome.actual)} "
                                                        f"{relation} {_value(outcome, outcome.limit)}"))
                failure.text = plain_text(_detail(outcome))
        if notes_by_model.get(model):
            ElementTree.SubElement(suite, "system-out").text = "\n".join(notes_by_model[model])
    suites.set("tests", str(len(result.outcomes)))
    suites.set("failures", str(total_failures))
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def render_github(result: CheckResult) -> str:
    """GitHub Actions workflow commands: ::error for failed budgets, ::notice for the rest, ::warning for notes."""
    lines = []

    def command(level: str, parameters: list[str], message: str) -> None:
        message = plain_text(message).replace("%", "%25")
        lines.append(f"::{level} {','.join(parameters)}::{message}")

    for outcome in result.outcomes:
        level = "notice" if outcome.passed else "error"
        parameters = ([f"file={outcome.file}"] if outcome.file else []) + [f"title=segcost {outcome.budget}"]
        command(level, parameters, f"{outcome.model} {outcome.budget}: {_value(outcome, outcome.actual)} "
                                   f"(limit {_value(outcome, outcome.limit)}) {_detail(outcome)}".strip())
    for note in _notes(result):
        command("warning", ["title=segcost coverage"], note)
    return "\n".join(lines) + "\n"


def render_diff(diff: ModelDiff, label_a: str, label_b: str, fmt: str = "table", top: int | None = None) -> str:
    changes = [change for change in diff.changes if change.macs_delta or change.matched_by in ("added", "removed")
               or change.params_a != change.params_b]
    changes.sort(key=lambda change: -abs(change.macs_delta))
    if top is not None:
        changes = changes[:top]
    if fmt == "json":
        return json_text({"a": label_a, "b": label_b, "totals_a": diff.totals_a, "totals_b": diff.totals_b,
                          "changes": [asdict(change) | {"macs_delta": change.macs_delta} for change in changes]})
    rows = [[change.name_a or "", change.name_b or "", change.op_type, change.matched_by, human(change.macs_a),
             human(change.macs_b), f"{change.macs_delta:+,}"] for change in changes]
    totals = []
    for key in ("macs", "params", "flops", "nodes"):
        before, after = diff.totals_a[key], diff.totals_b[key]
        percent = f" ({100 * (after - before) / before:+.2f}%)" if before else ""
        totals.append(f"{key}: {before:,} -> {after:,}{percent}")
    table = text_table(rows, [plain_text(label_a), plain_text(label_b), "op", "matched", "MACs A", "MACs B",
                              "MACs change"], markdown=fmt == "md")
    unchanged = len(diff.changes) - len([c for c in diff.changes if c.macs_delta or c.matched_by in
                                         ("added", "removed") or c.params_a != c.params_b])
    return f"{table}\n{unchanged} matched layers unchanged\n" + "\n".join(totals) + "\n"

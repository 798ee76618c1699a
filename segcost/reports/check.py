"""Render budget checks (table, JSON, JUnit XML, GitHub annotations, Markdown) and model diffs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict

from segcost.budget.diff import ModelDiff
from segcost.budget.evaluate import CheckResult, Outcome
from segcost.reports.tables import markdown_rows
from segcost.reports.units import human

CHECK_FORMATS = ("table", "json", "junit", "github", "md")


def _value(outcome: Outcome, value: float) -> str:
    if outcome.unit in ("ops", "findings"):
        return f"{int(value)} {outcome.unit}"
    if outcome.unit == "% increase":
        return f"{value:+.2f}%"
    return f"{value:.3f} {outcome.unit}"


def render_check(result: CheckResult, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps({"passed": result.passed, "outcomes": [asdict(outcome) for outcome in result.outcomes]},
                          indent=2) + "\n"
    if fmt == "junit":
        return render_junit(result)
    if fmt == "github":
        return render_github(result)
    from tabulate import tabulate

    rows = [[outcome.model, outcome.budget, _value(outcome, outcome.actual), _value(outcome, outcome.limit),
             "ok" if outcome.passed else "FAIL", outcome.detail] for outcome in result.outcomes]
    failed = sum(1 for outcome in result.outcomes if not outcome.passed)
    verdict = (f"{len(result.outcomes)} budgets, {failed} exceeded" if failed else
               f"all {len(result.outcomes)} budgets hold")
    table = tabulate(markdown_rows(rows) if fmt == "md" else rows,
                     headers=["model", "budget", "actual", "limit", "result", "detail"],
                     tablefmt="github" if fmt == "md" else "simple", disable_numparse=True)
    if fmt == "md":
        icon = "❌" if failed else "✅"
        return f"### {icon} segcost budget check: {verdict}\n\n{table}\n"
    return f"{table}\n{verdict}\n"


def render_junit(result: CheckResult) -> str:
    """One <testsuite> per model, one <testcase> per budget; a failed budget is a <failure>."""
    suites = ElementTree.Element("testsuites", name="segcost check")
    by_model: dict[str, list[Outcome]] = {}
    for outcome in result.outcomes:
        by_model.setdefault(outcome.model, []).append(outcome)
    total_failures = 0
    for model, outcomes in by_model.items():
        failures = sum(1 for outcome in outcomes if not outcome.passed)
        total_failures += failures
        suite = ElementTree.SubElement(suites, "testsuite", name=model, tests=str(len(outcomes)),
                                       failures=str(failures), errors="0")
        for outcome in outcomes:
            case = ElementTree.SubElement(suite, "testcase", classname=f"segcost.{model}", name=outcome.budget)
            if not outcome.passed:
                failure = ElementTree.SubElement(
                    case, "failure", message=f"{outcome.budget}: {_value(outcome, outcome.actual)} > "
                                             f"{_value(outcome, outcome.limit)}")
                failure.text = outcome.detail
    suites.set("tests", str(len(result.outcomes)))
    suites.set("failures", str(total_failures))
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def render_github(result: CheckResult) -> str:
    """GitHub Actions workflow commands: ::error for exceeded budgets, ::notice for the rest."""
    lines = []
    for outcome in result.outcomes:
        level = "notice" if outcome.passed else "error"
        parameters = ([f"file={outcome.file}"] if outcome.file else []) + [f"title=segcost {outcome.budget}"]
        message = (f"{outcome.model} {outcome.budget}: {_value(outcome, outcome.actual)} "
                   f"(limit {_value(outcome, outcome.limit)}) {outcome.detail}").strip()
        message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        lines.append(f"::{level} {','.join(parameters)}::{message}")
    return "\n".join(lines) + "\n"


def render_diff(diff: ModelDiff, label_a: str, label_b: str, fmt: str = "table", top: int | None = None) -> str:
    changes = [change for change in diff.changes if change.macs_delta or change.matched_by in ("added", "removed")
               or change.params_a != change.params_b]
    changes.sort(key=lambda change: -abs(change.macs_delta))
    if top is not None:
        changes = changes[:top]
    if fmt == "json":
        return json.dumps({"a": label_a, "b": label_b, "totals_a": diff.totals_a, "totals_b": diff.totals_b,
                           "changes": [asdict(change) | {"macs_delta": change.macs_delta} for change in changes]},
                          indent=2) + "\n"
    from tabulate import tabulate

    rows = [[change.name_a or "", change.name_b or "", change.op_type, change.matched_by, human(change.macs_a),
             human(change.macs_b), f"{change.macs_delta:+,}"] for change in changes]
    totals = []
    for key in ("macs", "params", "flops", "nodes"):
        before, after = diff.totals_a[key], diff.totals_b[key]
        percent = f" ({100 * (after - before) / before:+.2f}%)" if before else ""
        totals.append(f"{key}: {before:,} -> {after:,}{percent}")
    table = tabulate(markdown_rows(rows) if fmt == "md" else rows,
                     headers=[label_a, label_b, "op", "matched", "MACs A", "MACs B", "MACs change"],
                     tablefmt="github" if fmt == "md" else "simple", disable_numparse=True)
    unchanged = len(diff.changes) - len([c for c in diff.changes if c.macs_delta or c.matched_by in
                                         ("added", "removed") or c.params_a != c.params_b])
    return f"{table}\n{unchanged} matched layers unchanged\n" + "\n".join(totals) + "\n"

"""Compact HTML for Jupyter's `_repr_html_`: a summary line and the top rows, nothing computed.

Plain tables and inline styles only (notebooks sanitise scripts); the full report is
`segcost analyze --format html`.
"""

from __future__ import annotations

from collections.abc import Collection
from html import escape

from segcost.reports.units import dims, human, human_bytes, points

TOP = 10
_STYLE = "border-collapse:collapse;font-size:12px"


def _table(headers: list[str], rows: list[list], numeric: Collection[int] = ()) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(text)}</th>" for text in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px;text-align:{'right' if index in numeric else 'left'}'>"
                         f"{escape(str(cell))}</td>" for index, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table style='{_STYLE}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _title(kind: str, label: str, summary: str) -> str:
    return f"<div><b>segcost {escape(kind)}</b> {escape(label)}<br><span>{escape(summary)}</span></div>"


def analysis_html(result) -> str:
    """Totals, coverage and the TOP layers by MACs of an Analysis (with the target latency when present)."""
    totals, coverage = result.totals, result.coverage
    inputs = ", ".join(f"{tensor.name} {dims(tensor.shape)}" for tensor in result.model.inputs)
    summary = (f"{totals.macs / 1e9:.3f} GMACs ({totals.macs:,} MACs), {human(totals.params)} params, "
               f"peak activations {human_bytes(totals.peak_activation_bytes)}, {totals.nodes} nodes, "
               f"{coverage.nodes_covered_pct:.1f}% covered; input {inputs}")
    if result.target is not None:
        target_totals = result.target.totals
        summary += (f"; on {result.target.profile_name}: {target_totals.latency_ms:.2f} ms "
                    f"({target_totals.fallback_layers} layers on the fallback core)")
    top = sorted(result.layers, key=lambda layer: (-layer.macs, layer.name))[:TOP]
    rows = [[layer.name, layer.op_type, layer.kind, dims(layer.output_shape), human(layer.macs),
             f"{100 * layer.macs / totals.macs:.1f}" if totals.macs else "0.0", human(layer.params)] for layer in top]
    table = _table(["layer", "op", "kind", "output", "MACs", "MACs %", "params"], rows, {4, 5, 6})
    note = f"<div style='font-size:11px'>top {len(top)} of {len(result.layers)} layers by MACs</div>"
    return _title("analysis", result.model.path or "model", summary) + table + note


def optimize_html(result) -> str:
    """Pass runs that changed the graph, MACs/nodes before and after, findings and the numerical check."""
    before, after = result.before.totals, result.after.totals
    summary = (f"nodes {before.nodes} -> {after.nodes}, MACs {before.macs:,} -> {after.macs:,}, "
               f"{len(result.findings)} verifier findings")
    if result.max_abs_diff is not None:
        summary += f", onnxruntime max |diff| {result.max_abs_diff:.3g}"
    if result.accuracy is not None and result.accuracy.miou_drop is not None:
        summary += f", int8 mIoU drop {points(result.accuracy.miou_drop)} points"
    rows = [[record.name, record.iteration, f"{record.nodes_before} -> {record.nodes_after}",
             "; ".join(record.notes)] for record in result.records if record.modified]
    return _title("optimize", result.output or "", summary) + _table(["pass", "round", "nodes", "notes"], rows)


def cost_html(report) -> str:
    """Latency, fps and placement totals and the TOP slowest layers of a target estimate."""
    totals = report.totals
    summary = (f"{totals.latency_ms:.2f} ms ({totals.fps:.1f} fps), utilisation {totals.utilisation_pct:.1f}%, "
               f"{totals.fallback_layers} layers on the fallback core")
    rows = [[layer.name, layer.op_type, layer.placement, f"{layer.ms:.3f}", layer.bound, f"{layer.utilisation_pct:.1f}"]
            for layer in report.slowest(TOP)]
    return (_title("cost", report.profile_name, summary)
            + _table(["layer", "op", "placement", "ms", "bound", "util %"], rows, {3, 5}))


def check_html(result) -> str:
    """Every budget outcome with its verdict."""
    failed = sum(1 for outcome in result.outcomes if not outcome.passed)
    summary = f"{len(result.outcomes)} budgets, {failed} exceeded" if failed else \
        f"all {len(result.outcomes)} budgets hold"
    rows = [[outcome.model, outcome.budget, f"{outcome.actual:g} {outcome.unit}", f"{outcome.limit:g}",
             "ok" if outcome.passed else "FAIL", outcome.detail] for outcome in result.outcomes]
    return _title("check", "", summary) + _table(["model", "budget", "actual", "limit", "result", "detail"], rows)

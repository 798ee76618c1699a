"""Render pass-pipeline summaries, before/after costs and verifier findings."""

from __future__ import annotations

import json
from dataclasses import asdict

from segcost.passes import Finding, PassRecord
from segcost.reports.units import human, human_bytes


def render_records(records: list[PassRecord]) -> str:
    from tabulate import tabulate

    rows = [[record.name, record.iteration, "yes" if record.modified else "", f"{record.nodes_before} -> "
             f"{record.nodes_after}", human(record.macs_before), human(record.macs_after),
             f"{record.seconds * 1000:.1f}", "; ".join(note for note in record.notes if not note.startswith("not "))]
            for record in records]
    return tabulate(rows, headers=["pass", "round", "changed", "nodes", "MACs before", "MACs after", "ms", "notes"],
                    disable_numparse=True)


def render_before_after(before, after) -> str:
    from tabulate import tabulate

    def row(label, old, new, fmt=human):
        return [label, fmt(old), fmt(new), f"{new - old:+,}"]

    rows = [row("nodes", before.totals.nodes, after.totals.nodes, str),
            row("MACs", before.totals.macs, after.totals.macs, lambda v: f"{v:,}"),
            row("FLOPs", before.totals.flops, after.totals.flops),
            row("params", before.totals.params, after.totals.params),
            row("peak activations", before.totals.peak_activation_bytes, after.totals.peak_activation_bytes,
                human_bytes)]
    op_types = sorted(set(before.by_op_type) | set(after.by_op_type))
    for op_type in op_types:
        old = before.by_op_type.get(op_type)
        new = after.by_op_type.get(op_type)
        rows.append(row(f"  {op_type} nodes", old.count if old else 0, new.count if new else 0, str))
    return tabulate(rows, headers=["", "before", "after", "change"], disable_numparse=True)


def render_findings(findings: list[Finding], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps({"findings": [asdict(finding) for finding in findings], "count": len(findings)},
                          indent=2) + "\n"
    if not findings:
        return "verifier: no findings\n"
    from tabulate import tabulate

    rows = [[finding.layer, finding.op_type, finding.rule, finding.reason] for finding in findings]
    return tabulate(rows, headers=["layer", "op", "rule", "reason"], tablefmt="github" if fmt == "md" else "simple",
                    disable_numparse=True) + f"\n{len(findings)} findings\n"

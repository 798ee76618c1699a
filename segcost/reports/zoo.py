"""Render the zoo reproduction table (table, Markdown, CSV, JSON)."""

from __future__ import annotations

import io

from segcost.fileio.csvtext import SafeDictWriter
from segcost.fileio.writes import json_text
from segcost.zoo.table import TABLE_COLUMNS, TableRow

REASON_WIDTH = 60   # the terminal table wraps reasons at this many characters; md/json/csv keep them whole


def render_zoo_table(rows: list[TableRow], fmt: str = "table", notes: dict[str, str] | None = None) -> str:
    """The table in `fmt`; `notes` (dataset → explanation shared by its rows) are printed once below it
    (JSON: each record whose reason points at a note carries it as "note")."""
    notes = notes or {}
    records = [row.as_record() for row in rows]
    if fmt == "json":
        for record in records:
            if record["reason"] and record["dataset"] in notes and f"{record['dataset']} note" in record["reason"]:
                record["note"] = notes[record["dataset"]]
        return json_text(records)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = SafeDictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({key: "" if value is None else value for key, value in record.items()})
        return buffer.getvalue()
    from tabulate import tabulate

    def cell(value, digits):
        return "" if value is None else f"{value:.{digits}f}"

    body = [[r["family"], r["dataset"], r["model"], r["input_size"], cell(r["published_gmacs"], 3),
             cell(r["computed_gmacs"], 3), cell(r["delta_pct"], 2), r["reason"]] for r in records]
    headers = ["family", "dataset", "model", "input", "published GMACs", "segcost GMACs", "delta %", "reason"]
    matched = sum(1 for r in records if r["delta_pct"] is not None and abs(r["delta_pct"]) <= 1.0)
    compared = sum(1 for r in records if r["delta_pct"] is not None)
    summary = f"\n{matched} of {compared} rows with a published figure within 1%; {len(records)} rows in all\n"
    used = [(dataset, text) for dataset, text in notes.items()
            if any(f"{dataset} note" in record["reason"] for record in records)]
    bullet = "- " if fmt == "md" else ""
    note_lines = "".join(f"{bullet}{dataset} note: {text}\n" for dataset, text in used)
    widths = None if fmt == "md" else [None] * (len(headers) - 1) + [REASON_WIDTH]
    table = tabulate(body, headers=headers, tablefmt="github" if fmt == "md" else "simple", disable_numparse=True,
                     maxcolwidths=widths)
    return table + "\n" + summary + ("\n" + note_lines if note_lines else "")

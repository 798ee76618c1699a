"""The hand-written Markdown table (reports.tables) is laid out exactly as tabulate's "github" format."""

from __future__ import annotations

import random

from tabulate import tabulate

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.reports import analysis
from segcost.reports.tables import markdown_cell, markdown_rows, text_table
from segcost.samples import deeplabv3lite


def _random_table(rng: random.Random) -> tuple[list[list], list[str]]:
    pieces = ["a", " ", "x1", "-", "", "  y ", "{}", "%", "0.0", "1e5", "True", "None", "1,000", "|", ":", "`",
              "é", "\n", "\t", "\x1b[31m", "中"]
    headers = ["".join(rng.choice(["h", "#", "ab", " ", "|"]) for _ in range(rng.randint(1, 4))).strip() or "h"
               for _ in range(rng.randint(1, 5))]
    rows = [[rng.choice([None, rng.randint(-10, 10**6), "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))])
             for _ in headers] for _ in range(rng.randint(0, 6))]
    return rows, headers


def test_markdown_tables_are_laid_out_as_tabulate_does():
    rng = random.Random(1)
    for _ in range(3000):
        rows, headers = _random_table(rng)
        expected = tabulate(markdown_rows(rows), headers=[markdown_cell(header) for header in headers],
                            tablefmt="github", disable_numparse=True)
        assert text_table(rows, headers, markdown=True) == expected, (rows, headers)


def test_markdown_cells_cannot_change_the_table_or_embed_content():
    """A layer name is untrusted text: it must not add columns, end rows, or render a link/image/HTML."""
    name = "evil|x\n![t](https://e.example/p.png) <img src=x> [l](u) `c`"
    table = text_table([[name, 1]], ["layer", "MACs"], markdown=True)
    rows = table.splitlines()
    assert len(rows) == 3   # header, rule, one row: the newline did not end the row
    assert rows[2].count("|") - rows[2].count("\\|") == 3   # two columns' borders only
    for raw in ("!", "[", "<", "`"):   # every one escaped: no link, image, HTML or code span
        assert all(table[index - 1] == "\\" for index, char in enumerate(table) if char == raw)


def test_a_model_report_in_markdown_is_tabulates_table():
    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32)))
    text = analysis.render(result, "md")
    rows = [[index, layer.name, layer.op_type, layer.kind if layer.kind != "other" else "",
             analysis._shape_text(layer), analysis.dims(layer.output_shape), analysis.human(layer.macs),
             analysis._share(layer.macs, result.totals.macs), analysis.human(layer.params),
             analysis.human_bytes(layer.activation_bytes)] for index, layer in enumerate(result.layers, start=1)]
    headers = ["#", "layer", "op", "kind", "kernel", "output", "MACs", "MACs %", "params", "activations"]
    assert tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) in text

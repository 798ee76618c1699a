"""The hand-written Markdown table (reports.tables) is laid out exactly as tabulate's "github" format."""

from __future__ import annotations

from tabulate import tabulate

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.reports import analysis
from segcost.reports.tables import text_table
from segcost.samples import deeplabv3lite


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

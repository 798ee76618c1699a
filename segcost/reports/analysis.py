"""Render an AnalysisResult as table, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import count, islice
from json.encoder import encode_basestring_ascii  # the C function when json's accelerator is there
from operator import mod

from segcost.analyzer.conventions import CATEGORIES, convention_line, convention_totals
from segcost.analyzer.layers import ROW_FIELDS, LayerSignature, LayerTable, make_layer
from segcost.analyzer.result import AnalysisResult, LayerCost
from segcost.budget.coverage import counted_list, unsupported_op_counts
from segcost.fileio.writes import json_text
from segcost.reports.tables import plain_text
from segcost.reports.tables import text_table as _table
from segcost.reports.units import dims, human, human_bytes

FORMATS = ("table", "json", "csv", "md")

CSV_COLUMNS = ("name", "op_type", "kind", "group", "kernel", "stride", "input_shapes", "output_shape", "macs",
               "flops", "bias_flops", "params", "weight_bytes", "activation_bytes", "status")


def render(result: AnalysisResult, fmt: str = "table", top: int | None = None, group_by: str | None = None) -> str:
    if fmt == "json":
        return "".join(render_json_chunks(result))
    if fmt == "csv":
        return render_csv(result, group_by)
    return render_text(result, markdown=(fmt == "md"), top=top, group_by=group_by)


def _selected_layers(result: AnalysisResult, top: int | None) -> list[tuple[int, LayerCost]]:
    numbered = list(enumerate(result.layers, start=1))
    if top is None:
        return numbered
    ranked = sorted(numbered, key=lambda item: (-item[1].macs, -item[1].flops, item[0]))
    return ranked[:top]


def _shape_text(layer: LayerCost) -> str:
    parts = []
    if layer.kernel:
        parts.append("x".join(map(str, layer.kernel)))
    if layer.stride and any(stride != 1 for stride in layer.stride):
        parts.append("s" + "x".join(map(str, layer.stride)))
    if layer.group and layer.group > 1:
        parts.append(f"g{layer.group}")
    return " ".join(parts)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def render_text(result: AnalysisResult, markdown: bool = False, top: int | None = None,
                group_by: str | None = None) -> str:
    """The report; with `group_by` ("op_type", "kind", "prefix[:DEPTH]") one row per group instead of per layer."""
    totals = result.totals
    lines = []
    model = result.model
    title = f"segcost analyze: {model.path or 'model'}  (opset {model.opset}"
    title += f", {model.producer})" if model.producer else ")"
    # Markdown: a blank line after the heading, and the header lines as list items, so that
    # GitHub does not merge them into one paragraph.
    lines.extend([f"## {title}", ""] if markdown else [title])
    for label, tensors in (("input", model.inputs), ("output", model.outputs)):
        for tensor in tensors:
            lines.append(f"- {label} `{tensor.name}` {tensor.dtype} {dims(tensor.shape)}" if markdown else
                         f"{label:6s} {tensor.name}  {tensor.dtype}  {dims(tensor.shape)}")
    lines.append(f"{'- ' if markdown else ''}conventions: {convention_line(result.counted)}")
    lines = [plain_text(line) for line in lines]   # the producer and tensor names come from the model
    lines.append("")
    if group_by:
        rows = [[name, total.count, human(total.macs), _share(total.macs, totals.macs), human(total.flops),
                 human(total.params)] for name, total in _groups(result, group_by).items()]
        lines.append(_table(rows, [group_by.replace("_", " "), "nodes", "MACs", "MACs %", "FLOPs", "params"],
                            markdown))
    else:
        rows = [[index, layer.name, layer.op_type, layer.kind if layer.kind != "other" else "", _shape_text(layer),
                 dims(layer.output_shape), human(layer.macs), _share(layer.macs, totals.macs), human(layer.params),
                 human_bytes(layer.activation_bytes)]
                for index, layer in _selected_layers(result, top)]
        headers = ["#", "layer", "op", "kind", "kernel", "output", "MACs", "MACs %", "params", "activations"]
        lines.append(_table(rows, headers, markdown))
        if top is not None and top < len(result.layers):
            if markdown:
                lines.append("")   # else GitHub reads the note as one more table row
            lines.append(f"(top {top} of {len(result.layers)} layers by MACs)")
    lines.append("")
    lines.extend(_totals_lines(result, markdown))
    return "\n".join(lines) + "\n"


def _totals_lines(result: AnalysisResult, markdown: bool) -> list[str]:
    totals, coverage = result.totals, result.coverage
    bullet = "- " if markdown else ""
    lines = [
        f"{bullet}total: {totals.macs / 1e9:.3f} GMACs ({totals.macs:,} MACs), {totals.flops / 1e9:.3f} GFLOPs",
        f"{bullet}params: {totals.params / 1e6:.3f} M ({human_bytes(totals.weight_bytes)} of weights)",
        f"{bullet}activations: peak {human_bytes(totals.peak_activation_bytes)} live "
        f"(sum of layer traffic {human_bytes(totals.activation_bytes)})",
        f"{bullet}coverage: {totals.nodes} nodes: {coverage.counted} counted, {coverage.zero_by_convention} zero by "
        f"convention, {len(coverage.unsupported)} unsupported, {len(coverage.shape_unknown)} without shape "
        f"({coverage.nodes_covered_pct:.1f}% covered)",
    ]
    by_convention = convention_totals(result, result.counted)
    lines.append(f"{bullet}elementary ops by category (not MACs unless counted): " + ", ".join(
        f"{name} {human(by_convention.subtotals[name])}" for name in CATEGORIES))
    if result.counted:
        parts = " + ".join(f"{name} {by_convention.subtotals[name]:,}" for name in result.counted)
        lines.append(f"{bullet}MACs with {', '.join(result.counted)} counted: {by_convention.macs / 1e9:.3f} G "
                     f"({by_convention.macs:,} = conv/gemm {totals.macs:,} + {parts})")
    if coverage.unknown_ops:
        listed = counted_list(unsupported_op_counts(result))   # domain-qualified outside ai.onnx
        lines.append(f"{bullet}unsupported ops (counted as 0): {listed}")
    for entry in result.control_flow:
        branches = ", ".join(f"{sub.name} {sub.macs:,}" for sub in entry.subgraphs)
        trips = f", {entry.trip_count} trips" if entry.trip_count is not None else ""
        flag = " — UNBOUNDED: no static trip count, the total is not an upper bound" if entry.unbounded else ""
        lines.append(f"{bullet}control flow {entry.layer} ({entry.op_type}): {entry.macs:,} MACs counted as "
                     f"{entry.counted}{trips} (per subgraph: {branches}){flag}")
    lines.extend(f"{bullet}warning: {warning}" for warning in result.warnings)
    return [plain_text(line) for line in lines]   # layer names in them come from the model


def _groups(result: AnalysisResult, group_by: str) -> dict:
    from segcost.analyzer.grouping import group_layers, parse_group_by

    key, depth = parse_group_by(group_by)
    return result.by_op_type if key == "op_type" else group_layers(result.layers, key, depth)


def groups_dict(result: AnalysisResult, group_by: str) -> dict:
    """The `"groups"` member a JSON report gets with --group-by: the key and one entry per group."""
    return {"key": group_by, "rows": {name: vars(total) for name, total in _groups(result, group_by).items()}}


def render_csv(result: AnalysisResult, group_by: str | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if group_by:
        writer.writerow([group_by.partition(":")[0], "count", "macs", "flops", "params"])
        for name, total in _groups(result, group_by).items():
            writer.writerow([name, total.count, total.macs, total.flops, total.params])
        return buffer.getvalue()
    writer.writerow(CSV_COLUMNS)
    for layer in result.layers:
        row = []
        for column in CSV_COLUMNS:
            value = getattr(layer, column)
            if column == "input_shapes":
                value = " ".join(dims(shape) for shape in value)
            elif isinstance(value, list):
                value = dims(value)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buffer.getvalue()


def render_json_chunks(result: AnalysisResult):
    """The JSON document piece by piece, one layer per line.

    Equal to ``result.to_dict()`` when parsed, but a 100k-layer report never exists as one
    dict and one string in memory at once. Layers are written compactly (json's C encoder
    only runs without indentation: 4 s less at 100k layers), one per line for grep and diff.
    """
    document = result.to_dict(include_layers=False)
    del document["layers"]
    head = json_text(document)[:-1]
    # "layers" goes where to_dict puts it: just before "by_op_type"
    before, marker, after = head.partition('\n  "by_op_type":')
    yield before
    yield '\n  "layers": ['
    rows, separator = _layer_rows(result.layers), "\n    "
    while True:   # chunks of many layers: fewer writes
        chunk = list(islice(rows, _LAYERS_PER_CHUNK))
        if not chunk:
            break
        yield separator + ",\n    ".join(chunk)
        separator = ",\n    "
    yield "\n  ]," if result.layers else "],"
    yield marker + after + "\n"


_LAYERS_PER_CHUNK = 1000


def _layer_rows(layers: Sequence[LayerCost]) -> Iterator[str]:
    """Each layer as the compact JSON text of ``vars(layer)``.

    From a LayerTable that made no LayerCost objects yet (analyzer.layers), each distinct
    LayerSignature is encoded once, as a %-template holding the per-layer values' places, and
    a row is that template filled with the layer's name, tensor names (JSON strings) and
    integers: every step a C-level map, no Python code per layer. The template is the encoder's
    own text of a LayerCost with marker values, so the rows are those of the objects
    (tests/test_layer_table.py compares them).
    """
    encode = _compact_encoder()
    if not isinstance(layers, LayerTable) or layers.materialized:
        return map(encode, map(vars, layers))
    templates = [_row_template(signature, encode) for signature in layers.signatures]
    string = encode_basestring_ascii
    tensor_lists = partial(map, string)
    values = zip(map(string, layers.names), map(", ".join, map(tensor_lists, layers.inputs)),
                 map(", ".join, map(tensor_lists, layers.outputs)), layers.params, layers.weight_bytes,
                 layers.activation_bytes)
    return map(mod, map(templates.__getitem__, layers.signature_index), values)


def _row_template(signature: LayerSignature, encode) -> str:
    """`encode(vars(layer))` of a layer of `signature`, with "%s" where its per-layer values go (in
    ROW_FIELDS order; inputs and outputs between the list brackets) and every other "%" doubled."""
    for attempt in count():
        marks = [f"\x00{attempt}{field}" for field in ROW_FIELDS]
        text = encode(vars(make_layer(signature, marks[0], [marks[1]], [marks[2]], *marks[3:])))  # type: ignore[arg-type]
        quoted = [encode(mark) for mark in marks]
        if all(text.count(mark) == 1 for mark in quoted):   # no model text holds a marker (else: other markers)
            break
    text = text.replace("%", "%%")
    for mark in quoted:
        text = text.replace(mark, "%s")
    return text


def _compact_encoder():
    """A function equal to ``json.dumps`` with its default arguments, for many small documents.

    json.dumps builds a new C encoder for every call (JSONEncoder.iterencode); at 100k
    layers that set-up was half of the JSON time. This builds it once with the arguments
    iterencode passes for dumps' defaults (ASCII, ", " and ": "), except that NaN and Infinity
    are refused (ValueError) as fileio.writes.json_text refuses them, and without the
    circular-reference check: a layer holds only flat values and lists built for it, so the
    check could never fire, and its bookkeeping per list and dict was a fifth of the encoding
    time. Where the C accelerator is missing json.dumps itself is used.
    """
    from json import encoder

    c_make_encoder = getattr(encoder, "c_make_encoder", None)   # CPython's C accelerator; not in typeshed
    if c_make_encoder is None:
        return partial(json.dumps, allow_nan=False)
    defaults = json.JSONEncoder()
    make = c_make_encoder(None, defaults.default, encoder.encode_basestring_ascii, None,
                                  defaults.key_separator, defaults.item_separator, False, False, False)
    return lambda document: "".join(make(document, 0))

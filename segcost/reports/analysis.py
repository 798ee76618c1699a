"""Render an AnalysisResult as table, Markdown, CSV or JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import chain, count, islice
from json.encoder import encode_basestring_ascii  # the C function when json's accelerator is there
from operator import add, mod

from segcost.analyzer.conventions import CATEGORIES, convention_line, convention_totals, counted_macs
from segcost.analyzer.layers import ROW_FIELDS, LayerSignature, LayerTable, layer_column, make_layer
from segcost.analyzer.result import AnalysisResult, LayerCost
from segcost.budget.coverage import counted_list, unsupported_op_counts
from segcost.fileio.csvtext import SafeWriter
from segcost.fileio.writes import json_text
from segcost.reports.tables import plain_text
from segcost.reports.tables import text_table as _table
from segcost.reports.units import dims, human, human_bytes

FORMATS = ("table", "json", "csv", "md")

CSV_COLUMNS = ("name", "op_type", "kind", "group", "kernel", "stride", "input_shapes", "output_shape", "macs",
               "flops", "bias_flops", "flops_by_category", "params", "weight_bytes", "activation_bytes", "status")


def render(result: AnalysisResult, fmt: str = "table", top: int | None = None, group_by: str | None = None) -> str:
    if fmt == "json":
        return "".join(render_json_chunks(result))
    if fmt == "csv":
        return render_csv(result, group_by)
    return render_text(result, markdown=(fmt == "md"), top=top, group_by=group_by)


def _layer_table_rows(result: AnalysisResult, top: int | None) -> list[list]:
    """The per-layer rows of the text report, in order or the `top` by MACs (then FLOPs, then position).

    Read by column (analyzer.layers.layer_column): a LayerTable makes no LayerCost for it, and
    each distinct value (a shape, a MAC count) is formatted once.
    """
    layers = result.layers
    column = partial(layer_column, layers)
    macs = column("macs")
    positions: Iterable[int] = range(len(macs))
    if top is not None:
        flops = column("flops")
        positions = sorted(positions, key=lambda position: (-macs[position], -flops[position], position))[:top]
    total = result.totals.macs
    kinds = [kind if kind != "other" else "" for kind in column("kind")]
    kernels = list(map(_kernel_text, column("kernel"), column("stride"), column("group")))
    outputs, params, activations = column("output_shape"), column("params"), column("activation_bytes")
    names, op_types = column("name"), column("op_type")
    macs_text, share = _formatted(human, macs), _formatted(partial(_share, whole=total), macs)
    params_text, activations_text = _formatted(human, params), _formatted(human_bytes, activations)
    # --count: what each row adds to the counted total (analyzer.conventions.counted_macs), after MACs %
    counted = counted_macs(layers, result.counted) if result.counted else None
    counted_text = _formatted(human, counted) if counted is not None else str
    return [[position + 1, names[position], op_types[position], kinds[position], kernels[position],
             dims(outputs[position]), macs_text(macs[position]), share(macs[position]),
             *([counted_text(counted[position])] if counted is not None else []), params_text(params[position]),
             activations_text(activations[position])] for position in positions]


def _formatted(format_value: Callable[[int], str], values: list[int]) -> Callable[[int], str]:
    """`format_value`, computed once per distinct value when all are ints (a float equal to an int
    could print differently, so then every value is formatted on its own)."""
    distinct = set(values)
    if all(type(value) is int for value in distinct):
        return {value: format_value(value) for value in distinct}.__getitem__
    return format_value


def _kernel_text(kernel, stride, group) -> str:
    """ "3x3 s2x2 g4": the kernel, a stride other than 1, a group above 1."""
    parts = []
    if kernel:
        parts.append("x".join(map(str, kernel)))
    if stride and any(step != 1 for step in stride):
        parts.append("s" + "x".join(map(str, stride)))
    if group and group > 1:
        parts.append(f"g{group}")
    return " ".join(parts)


def _shape_text(layer: LayerCost) -> str:
    return _kernel_text(layer.kernel, layer.stride, layer.group)


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
        rows = _layer_table_rows(result, top)
        headers = ["#", "layer", "op", "kind", "kernel", "output", "MACs", "MACs %",
                   *(["counted MACs"] if result.counted else []), "params", "activations"]
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
        why = "no static trip count" if entry.trip_count is None else "carried shapes change per trip"
        flag = f" — UNBOUNDED: {why}, the total is not an upper bound" if entry.unbounded else ""
        lines.append(f"{bullet}control flow {entry.layer} ({entry.op_type}): {entry.macs:,} MACs counted as "
                     f"{entry.counted}{trips} (per subgraph: {branches}){flag}")
    lines.extend(f"{bullet}warning: {warning}" for warning in result.warnings)
    return [plain_text(line) for line in lines]   # layer names in them come from the model


def _groups(result: AnalysisResult, group_by: str) -> dict:
    from segcost.analyzer.grouping import group_layers, parse_group_by

    key, depth = parse_group_by(group_by)
    return result.by_op_type if key == "op_type" else group_layers(result.layers, key, depth, result.scopes)


def groups_dict(result: AnalysisResult, group_by: str) -> dict:
    """The `"groups"` member a JSON report gets with --group-by: the key and one entry per group."""
    return {"key": group_by, "rows": {name: vars(total) for name, total in _groups(result, group_by).items()}}


def render_csv(result: AnalysisResult, group_by: str | None = None) -> str:
    buffer = io.StringIO()
    writer = SafeWriter(buffer, lineterminator="\n")
    if group_by:
        writer.writerow([group_by.partition(":")[0], "count", "macs", "flops", "params"])
        for name, total in _groups(result, group_by).items():
            writer.writerow([name, total.count, total.macs, total.flops, total.params])
        return buffer.getvalue()
    writer.writerow(CSV_COLUMNS)
    layers = result.layers
    if isinstance(layers, LayerTable) and not layers.materialized:
        writer.writerows(_csv_rows_of_table(layers))
        return buffer.getvalue()
    for layer in layers:
        writer.writerow([_csv_cell(column, getattr(layer, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _csv_cell(column: str, value, sequences: type | tuple[type, ...] = list):
    """A CSV cell: shapes and kernels as "1x3x8x8" ("input_shapes" space-separated), None as "",
    flops_by_category as "bias=256 resize=1792" (a dict, or a signature's pairs)."""
    if column == "input_shapes":
        return " ".join(dims(shape) for shape in value)
    if column == "flops_by_category":
        return " ".join(f"{name}={flops}" for name, flops in (value.items() if isinstance(value, dict) else value))
    if isinstance(value, sequences):
        return dims(value)
    return "" if value is None else value


def _csv_rows_of_table(table: LayerTable) -> Iterator[tuple]:
    """The CSV rows of a LayerTable before it made LayerCost objects: each signature's cells made once
    (its lists are tuples here, written as the objects' lists are), and each row joined at C speed.

    CSV_COLUMNS is name, the signature's columns, params, weight_bytes, activation_bytes, status
    (tests/test_layer_table.py compares these rows with the objects').
    """
    per_layer = ("name", "params", "weight_bytes", "activation_bytes")
    signature_columns = [column for column in CSV_COLUMNS if column not in per_layer]
    cells = [tuple(_csv_cell(column, getattr(signature, column), (list, tuple)) for column in signature_columns)
             for signature in table.signatures]
    middle, last = [cell[:-1] for cell in cells], [cell[-1:] for cell in cells]
    index = table.signature_index
    return map(add, map(add, zip(table.names), map(middle.__getitem__, index)),
               map(add, zip(table.params, table.weight_bytes, table.activation_bytes), map(last.__getitem__, index)))


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
    separator = "\n    "
    for chunk in _layer_chunks(result.layers):   # many layers per chunk: fewer writes
        yield separator + chunk
        separator = ",\n    "
    yield "\n  ]," if result.layers else "],"
    yield marker + after + "\n"


_LAYERS_PER_CHUNK = 1000


def _layer_chunks(layers: Sequence[LayerCost]) -> Iterator[str]:
    """Each layer as the compact JSON text of ``vars(layer)``, _LAYERS_PER_CHUNK layers per chunk joined by
    ",\\n    " (one per line).

    From a LayerTable that made no LayerCost objects yet (analyzer.layers), each distinct
    LayerSignature is encoded once, as a %-template holding the per-layer values' places, and
    a chunk is its rows' templates joined and filled with their layers' names, tensor names
    (JSON strings) and integers at once: every step a C-level map, no Python code per layer,
    one string per chunk (one per layer made 100k layers 93 instead of 78 ms). The template is
    the encoder's own text of a LayerCost with marker values, so the rows are those of the
    objects (tests/test_layer_table.py compares them).
    """
    encode = _compact_encoder()
    if not isinstance(layers, LayerTable) or layers.materialized:
        rows = map(encode, map(vars, layers))
        while chunk := list(islice(rows, _LAYERS_PER_CHUNK)):
            yield ",\n    ".join(chunk)
        return
    templates = [_row_template(signature, encode) for signature in layers.signatures]
    string = encode_basestring_ascii
    tensor_lists = partial(map, string)
    join_rows = ",\n    ".join
    for start in range(0, len(layers), _LAYERS_PER_CHUNK):
        part = slice(start, start + _LAYERS_PER_CHUNK)
        values = zip(map(string, layers.names[part]), map(", ".join, map(tensor_lists, layers.inputs[part])),
                     map(", ".join, map(tensor_lists, layers.outputs[part])), layers.params[part],
                     layers.weight_bytes[part], layers.activation_bytes[part])
        yield join_rows(map(templates.__getitem__, layers.signature_index[part])) % tuple(chain.from_iterable(values))


def render_indented_json_chunks(result: AnalysisResult, extra: dict | None = None) -> Iterator[str]:
    """``json_text(result.to_dict() | extra)`` piece by piece: the whole document indented (the --group-by
    JSON report), but the layers written from the LayerTable's signatures as render_json_chunks does.

    json.dumps with an indent runs its pure-Python encoder: 100k layers as one document took
    seconds and twice the analysis' memory. Here the rest of the document (small) goes through
    json_text, with "layers" empty, and each layer is written as json_text writes it in that place.
    """
    document = result.to_dict(include_layers=False)
    document.update(extra or {})
    before, marker, after = json_text(document).partition(_EMPTY_LAYERS)   # the top level's only "layers"
    yield before
    rows, separator = _indented_layer_rows(result.layers), '\n  "layers": [\n    '
    while True:
        chunk = list(islice(rows, _LAYERS_PER_CHUNK))
        if not chunk:
            break
        yield separator + ",\n    ".join(chunk)
        separator = ",\n    "
    yield "\n  ],\n" if result.layers else marker
    yield after


_EMPTY_LAYERS = '\n  "layers": [],\n'
_LAYER_INDENT = "\n    "   # json_text's indentation of a layer: an item of a list two levels deep


def _indented_layer_rows(layers: Sequence[LayerCost]) -> Iterator[str]:
    """Each layer as json_text writes it in the document's "layers" (see render_indented_json_chunks)."""
    if not isinstance(layers, LayerTable) or layers.materialized:
        return (json_text(vars(layer))[:-1].replace("\n", _LAYER_INDENT) for layer in layers)
    templates = [_indented_row_template(signature) for signature in layers.signatures]
    values = zip(map(encode_basestring_ascii, layers.names), map(_indented_names, layers.inputs),
                 map(_indented_names, layers.outputs), layers.params, layers.weight_bytes, layers.activation_bytes)
    return map(mod, map(templates.__getitem__, layers.signature_index), values)


def _indented_names(names: Sequence[str]) -> str:
    """A layer's inputs or outputs as json_text writes the list there (items four levels deep)."""
    return "[\n        " + ",\n        ".join(map(encode_basestring_ascii, names)) + "\n      ]" if names else "[]"


def _indented_row_template(signature: LayerSignature) -> str:
    """_row_template's counterpart for an indented layer: inputs and outputs are whole-value places."""
    def render(marks: list[str]) -> tuple[str, list[str]]:
        layer = vars(make_layer(signature, marks[0], [], [], *marks[3:]))  # type: ignore[arg-type]
        layer.update(inputs=marks[1], outputs=marks[2])
        return json_text(layer)[:-1].replace("\n", _LAYER_INDENT), list(map(encode_basestring_ascii, marks))

    return _marked_template(render)


def _row_template(signature: LayerSignature, encode) -> str:
    """`encode(vars(layer))` of a layer of `signature`, with "%s" where its per-layer values go (in
    ROW_FIELDS order; inputs and outputs between the list brackets) and every other "%" doubled."""
    def render(marks: list[str]) -> tuple[str, list[str]]:
        layer = make_layer(signature, marks[0], [marks[1]], [marks[2]], *marks[3:])  # type: ignore[arg-type]
        return encode(vars(layer)), [encode(mark) for mark in marks]

    return _marked_template(render)


def _marked_template(render: Callable[[list[str]], tuple[str, list[str]]]) -> str:
    """A %-template from `render(marks)` -> (text with one marker per ROW_FIELDS place, the markers as written):
    markers no model text holds (else other ones), each replaced by "%s", every other "%" doubled."""
    for attempt in count():
        marks = [f"\x00{attempt}{field}" for field in ROW_FIELDS]
        text, quoted = render(marks)
        if all(text.count(mark) == 1 for mark in quoted):
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

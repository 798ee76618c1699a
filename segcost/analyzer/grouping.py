"""Subtotals of an analysis by op type, layer kind or layer-name prefix (`analyze --group-by`).

Every layer falls in exactly one group, so the groups' integer MACs, FLOPs and params add up
to the totals exactly. A prefix is the first DEPTH parts of a layer name, split on "/" when
the name has one (torch.onnx names: "/encoder/features.1/conv/Conv") and on "." otherwise
("encoder.block1.expand"); a name with no more parts than DEPTH is its own group. Nodes
without a name of their own — an empty name, or one generated from the op type as torch.onnx
("Identity_20") and segcost's loader ("Conv_7", "Conv_7__1") make them — have no prefix to
share: they group under one "(unnamed OP)" row per op type, so an smp export's 24 weight
Identity nodes are one row, not 24.

torch.onnx's dynamo exporter names nodes by op and counter ("node_Conv_498"), but records
each node's module path in its metadata_props: `pkg.torch.onnx.name_scopes` is the repr of
a list of the root module's "" , the qualified name of every enclosing module outermost
first ("encoder", "encoder.layer2", "encoder.layer2.0", ...) and last the FX node's name
(torch/onnx/_internal/exporter/_core.py, `_get_node_namespace`). A layer that has it is
grouped by its DEPTH-th enclosing module ("encoder.layer2" at DEPTH 2), or its innermost one
when it is nested less deep; so a dynamo export's stages are the legacy export's
("/encoder/layer2") with the same MACs, named by the modules' qualified names.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import compress, repeat

from segcost.analyzer.layers import SIGNATURE_FIELDS, LayerTable, layer_column
from segcost.analyzer.result import LayerCost, OpTypeTotal
from segcost.errors import InputError

GROUP_KEYS = ("op_type", "kind", "prefix")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"   # node metadata key of torch.onnx's dynamo exporter
_MAX_SCOPES_TEXT = 1 << 16   # longer metadata is not a module path: not parsed
# torch's usual repr of the list: quoted names without quotes, backslashes, line breaks, NULs or surrogates,
# ", " between them.
# Such a literal's strings are the text between the quotes, so it is read without ast (10 µs a node, a third
# of analyze() on a dynamo export); any other form goes to ast.literal_eval.
_PLAIN_LIST = re.compile(r"\[(?:'[^'\\\n\r\x00\ud800-\udfff]*'(?:, '[^'\\\n\r\x00\ud800-\udfff]*')*)?\]")
_PLAIN_NAME = re.compile(r"'([^'\\\n\r\x00\ud800-\udfff]*)'")


def parse_group_by(text: str) -> tuple[str, int]:
    """"op_type", "kind", "prefix" or "prefix:DEPTH" → (key, depth); depth is 1 unless given."""
    key, colon, depth_text = text.partition(":")
    if key not in GROUP_KEYS or (colon and key != "prefix"):
        raise InputError(f"--group-by {text!r}: expected op_type, kind, prefix or prefix:DEPTH")
    if not colon:
        return key, 1
    if not (depth_text.isascii() and depth_text.isdigit()) or int(depth_text) < 1:
        raise InputError(f"--group-by {text!r}: DEPTH must be a positive integer")
    return key, int(depth_text)


def is_generated_name(name: str, op_type: str) -> bool:
    """Whether `name` is empty or made from `op_type` and a counter ("Identity_20", "Conv_7__1", and the
    dynamo exporter's "node_Shape_0")."""
    return not name or re.fullmatch(rf"(?:node_)?{re.escape(op_type)}_+\d+(?:__\d+)?", name) is not None


def module_scopes(metadata_props: Mapping[str, str]) -> tuple[str, ...]:
    """The qualified names of a node's enclosing torch modules, outermost first ("encoder", "encoder.layer2", ...).

    Read from torch.onnx's dynamo exporter's `pkg.torch.onnx.name_scopes` node metadata (a
    Python list literal: the root module "", each enclosing module's qualified name, the FX node's
    name), with ast.literal_eval, which evaluates literals only. () without it, for a node at the
    model's top level, and for metadata that is not such a list (it is the file's, not torch's, to vouch for).
    Metadata Python cannot parse (a malformed literal, a bad escape such as "\\N{x}") is () too: grouping
    falls back to the layer's name, silently — the parser's own SyntaxWarning/DeprecationWarning for an
    invalid escape ("\\d", which literal_eval still reads as backslash-d) is suppressed, as the file is
    not the user's Python code. Never raises.
    """
    text = metadata_props.get(NAME_SCOPES)
    if not text or len(text) > _MAX_SCOPES_TEXT:
        return ()
    scopes: object = _PLAIN_NAME.findall(text) if _PLAIN_LIST.fullmatch(text) else _literal(text)
    if not (isinstance(scopes, list) and len(scopes) >= 3 and scopes[0] == ""
            and all(isinstance(scope, str) and scope for scope in scopes[1:])):
        return ()
    return tuple(scopes[1:-1])


def _literal(text: str) -> object:
    """ast.literal_eval(text) without its parser's warnings; None when it is not a literal Python reads."""
    # catch_warnings swaps the process-wide filters for the call (not thread-safe before 3.14's context-aware
    # warnings); a lost warning elsewhere during these microseconds is the price of not printing a parser
    # warning about a model file's metadata on every analyze
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None


def layer_prefix(name: str, depth: int, op_type: str = "", scopes: tuple[str, ...] = ()) -> str:
    """A layer's --group-by prefix: its `depth`-th enclosing module when `scopes` (module_scopes) has any (the
    innermost when fewer), else name_prefix of its name."""
    if scopes:
        return scopes[min(depth, len(scopes)) - 1]
    return name_prefix(name, depth, op_type)


def name_prefix(name: str, depth: int, op_type: str = "") -> str:
    """The first `depth` parts of `name`; "(unnamed OP)" for a generated name of an `op_type` node."""
    if op_type and is_generated_name(name, op_type):
        return f"(unnamed {op_type})"
    separator = "/" if "/" in name else "."
    parts = [part for part in name.split(separator) if part]
    if len(parts) <= depth:
        return name
    return (separator if name.startswith(separator) else "") + separator.join(parts[:depth])


def group_layers(layers: Iterable[LayerCost], key: str = "op_type", depth: int = 1,
                 scopes: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, OpTypeTotal]:
    """Group name → totals, most MACs first (then FLOPs, then name).

    `scopes`: layer name → its module_scopes, for "prefix" (AnalysisResult.scopes). Read from the
    layers' columns (analyzer.layers.layer_column), so an analysis' LayerTable makes no LayerCost
    objects for it.
    """
    if isinstance(layers, LayerTable) and not layers.materialized and key in SIGNATURE_FIELDS:
        by_signature = _signature_groups(layers, key)
        if by_signature is not None:
            return dict(sorted(by_signature.items(), key=lambda item: (-item[1].macs, -item[1].flops, item[0])))
    if key == "prefix" and scopes:
        names = layer_column(layers, "name")
        labels = list(map(layer_prefix, names, repeat(depth), layer_column(layers, "op_type"),
                          map(scopes.get, names, repeat(()))))
    elif key == "prefix":
        labels = list(map(name_prefix, layer_column(layers, "name"), repeat(depth), layer_column(layers, "op_type")))
    else:
        labels = layer_column(layers, key)
    members: dict[str, list[int]] = {}   # label → the positions of its layers
    for position, label in enumerate(labels):
        group = members.get(label)
        if group is None:
            members[label] = [position]
        else:
            group.append(position)
    # sums over each group's layers at C speed (map over the columns), not four updates per layer
    macs, flops, params = (layer_column(layers, name).__getitem__ for name in ("macs", "flops", "params"))
    totals = {name: OpTypeTotal(len(group), sum(map(macs, group)), sum(map(flops, group)), sum(map(params, group)))
              for name, group in members.items()}
    return dict(sorted(totals.items(), key=lambda item: (-item[1].macs, -item[1].flops, item[0])))


def _signature_groups(table: LayerTable, key: str) -> dict[str, OpTypeTotal] | None:
    """group_layers' totals for a signature field, from each distinct signature's layer count (no Python
    code per layer: Counter and compress run in C); None when a signature's MACs or FLOPs are not ints
    (then a count times a value need not equal the sum layer by layer)."""
    signatures, index_of = table.signatures, table.signature_index
    macs, flops = [signature.macs for signature in signatures], [signature.flops for signature in signatures]
    if not all(type(value) is int for value in (*macs, *flops)):
        return None
    counts = Counter(index_of)
    members: dict[str, list[int]] = {}   # label → its signatures' indices
    for index in counts:
        members.setdefault(getattr(signatures[index], key), []).append(index)
    totals = {}
    for label, indices in members.items():
        if len(indices) == len(counts):
            params = sum(table.params)
        else:
            chosen = set(indices)
            params = sum(compress(table.params, map(chosen.__contains__, index_of)))
        totals[label] = OpTypeTotal(sum(counts[index] for index in indices),
                                    sum(counts[index] * macs[index] for index in indices),
                                    sum(counts[index] * flops[index] for index in indices), params)
    return totals

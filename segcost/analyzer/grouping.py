"""Subtotals of an analysis by op type, layer kind or layer-name prefix (`analyze --group-by`).

Every layer falls in exactly one group, so the groups' integer MACs, FLOPs and params add up
to the totals exactly. A prefix is the first DEPTH parts of a layer name, split on "/" when
the name has one (torch.onnx names: "/encoder/features.1/conv/Conv") and on "." otherwise
("encoder.block1.expand"); a name with no more parts than DEPTH is its own group. Nodes
without a name of their own — an empty name, or one generated from the op type as torch.onnx
("Identity_20") and segcost's loader ("Conv_7", "Conv_7__1") make them — have no prefix to
share: they group under one "(unnamed OP)" row per op type, so an smp export's 24 weight
Identity nodes are one row, not 24.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from operator import attrgetter

from segcost.analyzer.result import LayerCost, OpTypeTotal
from segcost.errors import InputError

GROUP_KEYS = ("op_type", "kind", "prefix")


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
    """Whether `name` is empty or made from `op_type` and a counter ("Identity_20", "Conv_7__1")."""
    return not name or re.fullmatch(rf"{re.escape(op_type)}_+\d+(?:__\d+)?", name) is not None


def name_prefix(name: str, depth: int, op_type: str = "") -> str:
    """The first `depth` parts of `name`; "(unnamed OP)" for a generated name of an `op_type` node."""
    if op_type and is_generated_name(name, op_type):
        return f"(unnamed {op_type})"
    separator = "/" if "/" in name else "."
    parts = [part for part in name.split(separator) if part]
    if len(parts) <= depth:
        return name
    return (separator if name.startswith(separator) else "") + separator.join(parts[:depth])


def group_layers(layers: Iterable[LayerCost], key: str = "op_type", depth: int = 1) -> dict[str, OpTypeTotal]:
    """Group name → totals, most MACs first (then FLOPs, then name)."""
    labels: dict[str, Callable[[LayerCost], str]] = {
        "op_type": attrgetter("op_type"),
        "kind": attrgetter("kind"),
        "prefix": lambda layer: name_prefix(layer.name, depth, layer.op_type),
    }
    label = labels[key]
    members: dict[str, list[LayerCost]] = {}
    for layer in layers:
        name = label(layer)
        group = members.get(name)
        if group is None:
            members[name] = [layer]
        else:
            group.append(layer)
    # sums over each group's layers at C speed (map over attrgetter), not four updates per layer
    macs, flops, params = attrgetter("macs"), attrgetter("flops"), attrgetter("params")
    totals = {name: OpTypeTotal(len(group), sum(map(macs, group)), sum(map(flops, group)), sum(map(params, group)))
              for name, group in members.items()}
    return dict(sorted(totals.items(), key=lambda item: (-item[1].macs, -item[1].flops, item[0])))

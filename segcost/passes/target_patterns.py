"""Op sequences TI's toolchain imports as one accelerator layer, though their ops alone do not run.

TI's supported-ops table (edgeai-tidl-tools docs/supported_ops_rts_versions.md @ 2378ce12, quoted
in segcost/targets/tidl-rules.toml) lists two layers by an ONNX op *sequence*, not an op type:

* "layernorm-width": row 26, TIDL_LayernormLayer, "ReduceMean-Sub-Pow(2)-ReduceMean-Add-Sqrt-Div",
  "Only supports the width axis (axis=-1)". docs/tidl_fsg_vtfr.md: "Individual operators such
  as pow, sqrt, reducemean and div are not supported in isolation".
* "gelu-erf": row 2, "... ELU & GELU get imported as batchnorm"; docs/tidl_fsg_vtfr.md (GELU):
  "Individual operators such as Erf, Div are not supported in isolation". The sequence is
  GELU's exact form as exporters write it, x · 0.5 · (1 + erf(x / √2)): Div(x, c) (or
  Mul(x, c)) → Erf → Add(·, c) → Mul with x (either side of a Mul by the constant 0.5; after it,
  torch's form, as the picture of tidl_fsg_vtfr.md @ 95ba2c7e, docs/images/transformer/GELU.png, ends).

`fused_groups` finds each matched sequence once per graph (its node keys, in graph order); the
verifier checks its nodes as the one layer they become (which has no limit beyond the match
itself), not op by op (`fused_layers`), and the cost model prices each group as that one layer. A sequence that
does not match exactly (another axis, a missing step) keeps each op's own findings.
"""

from __future__ import annotations

from typing import NamedTuple

from segcost.ir import Graph
from segcost.ir.graph import Node
from segcost.ir.opforms import constant_value, normalize_axes, read_operand

__all__ = ["PATTERNS", "FusedGroup", "fused_groups", "fused_layers"]

PATTERNS = ("layernorm-width", "gelu-erf")


class FusedGroup(NamedTuple):
    """One matched sequence: the pattern's name and its node keys in topological order."""

    pattern: str
    keys: tuple[str, ...]


def fused_groups(graph: Graph, patterns: frozenset[str]) -> list[FusedGroup]:
    """Each sequence of `patterns` in `graph`, in the order of its Div (LayerNorm) or Erf (GELU) node; a node is
    in one group at most (a later match sharing a node with an earlier one is left out: one node, one layer).

    Raises:
        InputError: a ReduceMean axis out of range for its input.
    """
    groups: list[FusedGroup] = []
    taken: set[str] = set()
    for group in _matches(graph, patterns):
        if not taken.intersection(group.keys):
            taken.update(group.keys)
            groups.append(group)
    return groups


def fused_layers(graph: Graph, patterns: frozenset[str]) -> dict[str, str]:
    """Node key → name of the pattern it is part of, for each sequence of `patterns` in `graph`.

    Raises:
        InputError: a ReduceMean axis out of range for its input.
    """
    return {key: group.pattern for group in _matches(graph, patterns) for key in group.keys}


def _matches(graph: Graph, patterns: frozenset[str]) -> list[FusedGroup]:
    """Every match of `patterns`, overlapping ones included, keys in topological order."""
    order = graph.topological_order()
    position = {key: index for index, key in enumerate(order)}
    found = []
    for key in order:
        node = graph.node(key)
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Div" and "layernorm-width" in patterns:
            found.append(FusedGroup("layernorm-width", tuple(_layernorm(graph, key, node))))
        if node.op_type == "Erf" and "gelu-erf" in patterns:
            found.append(FusedGroup("gelu-erf", tuple(_gelu(graph, key, node))))
    return [FusedGroup(group.pattern, tuple(sorted(group.keys, key=position.__getitem__)))
            for group in found if group.keys]


def _made_by(graph: Graph, tensor: str, op_type: str) -> tuple[str, Node] | None:
    key = graph.producer(tensor)
    if key is None:
        return None
    node = graph.node(key)
    return (key, node) if node.op_type == op_type and node.domain in ("", "ai.onnx") and node.inputs else None


def _scalar(graph: Graph, tensor: str) -> float | None:
    value = constant_value(graph, tensor)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _width_mean(graph: Graph, key: str, node: Node) -> bool:
    """A ReduceMean over the last axis only, keeping dims."""
    shape = graph.shape(node.inputs[0])
    axes = read_operand(graph, key, "axes").ints()
    if shape is None or not axes or int(node.attrs.get("keepdims", 1)) != 1:
        return False
    return normalize_axes(axes, len(shape), f"node {key!r} (ReduceMean) axes") == (len(shape) - 1,)


def _layernorm(graph: Graph, key: str, div: Node) -> list[str]:
    """Keys of ReduceMean-Sub-Pow(2)-ReduceMean-Add-Sqrt-Div ending in `div`, over axis -1; [] if no match."""
    if len(div.inputs) != 2:
        return []
    centred, denominator = div.inputs
    sqrt = _made_by(graph, denominator, "Sqrt")
    add = _made_by(graph, sqrt[1].inputs[0], "Add") if sqrt else None
    if sqrt is None or add is None or len(add[1].inputs) != 2:
        return []
    variance = next((tensor for tensor in add[1].inputs if _scalar(graph, tensor) is None), None)
    if variance is None or sum(_scalar(graph, tensor) is not None for tensor in add[1].inputs) != 1:
        return []
    mean_of_squares = _made_by(graph, variance, "ReduceMean")
    power = _made_by(graph, mean_of_squares[1].inputs[0], "Pow") if mean_of_squares else None
    sub = _made_by(graph, centred, "Sub")
    if mean_of_squares is None or power is None or sub is None or len(power[1].inputs) != 2 \
            or power[1].inputs[0] != centred or _scalar(graph, power[1].inputs[1]) != 2.0 or len(sub[1].inputs) != 2:
        return []
    x, mean = sub[1].inputs
    first_mean = _made_by(graph, mean, "ReduceMean")
    if first_mean is None or first_mean[1].inputs[0] != x:
        return []
    if not all(_width_mean(graph, mean_key, node) for mean_key, node in (first_mean, mean_of_squares)):
        return []
    return [first_mean[0], sub[0], power[0], mean_of_squares[0], add[0], sqrt[0], key]


def _gelu(graph: Graph, key: str, erf: Node) -> list[str]:
    """Keys of Div(x, c)|Mul(x, c) → Erf → Add(·, c) → Mul(x-side) [→ Mul 0.5]; [] if no match."""
    scale = _made_by(graph, erf.inputs[0], "Div") or _made_by(graph, erf.inputs[0], "Mul")
    if not scale or len(scale[1].inputs) != 2 or _scalar(graph, scale[1].inputs[1]) is None:
        return []
    x = scale[1].inputs[0]
    adds = [(k, graph.node(k)) for k in graph.consumers(erf.outputs[0])]
    if len(adds) != 1 or adds[0][1].op_type != "Add" or not any(
            _scalar(graph, tensor) is not None for tensor in adds[0][1].inputs):
        return []
    keys = [scale[0], key, adds[0][0]]
    for mul_key in graph.consumers(adds[0][1].outputs[0]):
        mul = graph.node(mul_key)
        if mul.op_type != "Mul" or len(mul.inputs) != 2:
            continue
        other = next(tensor for tensor in mul.inputs if tensor != adds[0][1].outputs[0])
        half = _made_by(graph, other, "Mul")
        if other == x:
            return [*keys, mul_key, *_trailing_half(graph, mul)]
        if half is not None and x in half[1].inputs:
            return [*keys, mul_key, half[0]]
    return []


def _trailing_half(graph: Graph, mul: Node) -> list[str]:
    """[key] of the Mul by 0.5 that is the only reader of `mul`'s output (TI's GELU picture ends in it), else []."""
    readers = graph.consumers(mul.outputs[0])
    if len(readers) != 1:
        return []
    half = graph.node(readers[0])
    if half.op_type != "Mul" or half.domain not in ("", "ai.onnx") or len(half.inputs) != 2:
        return []
    constant = next((tensor for tensor in half.inputs if tensor != mul.outputs[0]), None)
    return [readers[0]] if constant is not None and _scalar(graph, constant) == 0.5 else []

"""Subgraph attributes (If branches, Loop/Scan bodies) as the IR sees them.

A subgraph may read any tensor of the scopes around it by name, without listing it as a
node input (ONNX IR spec, "Names Within a Graph": outer-scope names are visible in nested
graphs). onnxruntime calls these the node's *implicit inputs*; the IR records them in
``Node.implicit_inputs`` so that they are graph edges like any other input: a pass that
removes, renames or folds a tensor sees that the If/Loop/Scan reads it.

Works on decoded ``onnx.GraphProto`` objects without importing onnx (the IR stays
importable without onnx's C extension); attribute kinds are read from ``Node.attr_types``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# onnx.AttributeProto.GRAPH and .GRAPHS (onnx.proto); written out to keep onnx out of the IR.
GRAPH_ATTRIBUTE = 5
GRAPHS_ATTRIBUTE = 10


def subgraph_attributes(attrs: dict[str, Any], attr_types: dict[str, int]) -> Iterator[tuple[str, int, Any]]:
    """(attribute name, index in a GRAPHS list or -1, GraphProto) for every graph-valued attribute."""
    for name, value in attrs.items():
        kind = attr_types.get(name)
        if kind == GRAPH_ATTRIBUTE:
            yield name, -1, value
        elif kind == GRAPHS_ATTRIBUTE:
            for index, graph in enumerate(value):
                yield name, index, graph


def _defined(graph_proto: Any) -> set[str]:
    """Names a GraphProto defines itself: its inputs, initializers and node outputs."""
    names = {value.name for value in graph_proto.input}
    names.update(tensor.name for tensor in graph_proto.initializer)
    names.update(sparse.values.name for sparse in graph_proto.sparse_initializer)
    for node in graph_proto.node:
        names.update(node.output)
    return names


def attribute_graphs(node_proto: Any) -> Iterator[Any]:
    """The GraphProtos of `node_proto`'s GRAPH and GRAPHS attributes (If branches, Loop/Scan bodies), in order."""
    for attribute in node_proto.attribute:
        if attribute.type == GRAPH_ATTRIBUTE:
            yield attribute.g
        elif attribute.type == GRAPHS_ATTRIBUTE:
            yield from attribute.graphs


def outer_scope_reads(graph_proto: Any) -> list[str]:
    """Tensors `graph_proto` (or a graph nested in it) reads but does not define, in first-use order.

    Includes an output that names an outer tensor directly (an If branch returning `x`).
    """
    defined = _defined(graph_proto)
    reads: dict[str, None] = {}
    for node in graph_proto.node:
        for tensor in node.input:
            if tensor and tensor not in defined:
                reads[tensor] = None
        for nested in attribute_graphs(node):
            for tensor in outer_scope_reads(nested):
                if tensor not in defined:
                    reads[tensor] = None
    for value in graph_proto.output:
        if value.name not in defined:
            reads[value.name] = None
    return list(reads)


def implicit_inputs(attrs: dict[str, Any], attr_types: dict[str, int]) -> list[str]:
    """Outer-scope tensors read by all subgraph attributes of one node, in first-use order."""
    reads: dict[str, None] = {}
    for _, _, graph_proto in subgraph_attributes(attrs, attr_types):
        reads.update(dict.fromkeys(outer_scope_reads(graph_proto)))
    return list(reads)


def rename_outer_read(graph_proto: Any, old: str, new: str) -> Any:
    """A copy of `graph_proto` reading outer tensor `new` wherever it read outer tensor `old`.

    The copy keeps the caller's (parsed file's) message untouched. A nested graph that
    defines `old` itself shadows the outer name and is left alone there.
    """
    copy = type(graph_proto)()
    copy.CopyFrom(graph_proto)
    _rename_in_place(copy, old, new)
    return copy


def rename_implicit_input(node: Any, old: str, new: str) -> None:
    """Make every subgraph of IR node `node` read outer tensor `new` instead of `old` (copies, see above)."""
    for name, index, graph_proto in list(subgraph_attributes(node.attrs, node.attr_types)):
        renamed = rename_outer_read(graph_proto, old, new)
        if index < 0:
            node.attrs[name] = renamed
        else:
            node.attrs[name] = [*node.attrs[name][:index], renamed, *node.attrs[name][index + 1:]]
    node.implicit_inputs = list(dict.fromkeys(new if tensor == old else tensor for tensor in node.implicit_inputs))


def _rename_in_place(graph_proto: Any, old: str, new: str) -> None:
    if old in _defined(graph_proto):
        return
    for node in graph_proto.node:
        for index, tensor in enumerate(node.input):
            if tensor == old:
                node.input[index] = new
        for nested in attribute_graphs(node):
            _rename_in_place(nested, old, new)
    for value in graph_proto.output:
        if value.name == old:
            value.name = new


__all__ = ["GRAPHS_ATTRIBUTE", "GRAPH_ATTRIBUTE", "implicit_inputs", "outer_scope_reads", "rename_implicit_input",
           "rename_outer_read", "subgraph_attributes"]

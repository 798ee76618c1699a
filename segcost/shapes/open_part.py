"""The part of a model that a chain round's shape inference has to revisit (shapes.evaluate).

After a round turns evaluated tensors into constants, only nodes with an open output can
gain a shape: every other node's output is already static, and onnx shape inference,
which runs forward, would derive it again unchanged. Re-inferring the whole model each
round cost MaskFormer 5 whole runs; its open part is half the model in the first round
(865 of 1637 nodes) and 4 nodes in the last.

The part holds the nodes with an open output, plus what onnx's data propagation reads
through them: the static scalars and vectors computed by Shape/Gather/Concat/... chains
that feed them (walked back to their `Shape`/`Size` nodes, whose values follow from their input's
type). Everything else it reads comes in as a graph input carrying the type the previous
inference gave it, or as an initializer. Given the same input types and the same data,
onnx infers the same output types for a node, so the part's inferred shapes are those of
the whole model's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import onnx

_SUBGRAPHS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


class Row(NamedTuple):
    """A node's fields, read once: every read of a protobuf field builds a new Python object,
    and each chain round walks the whole graph several times (MaskFormer: 4 rounds, 1.7k nodes)."""
    position: int   # in shell.graph.node
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def read_rows(shell: onnx.ModelProto) -> list[Row]:
    """A Row for each node of `shell`, in order."""
    return [Row(index, node.op_type, node.domain, tuple(node.input), tuple(node.output))
            for index, node in enumerate(shell.graph.node)]


def open_part(shell: onnx.ModelProto, rows: list[Row], open_rows: list[Row], producer: Mapping[str, Row],
              types: Mapping[str, onnx.ValueInfoProto], initializers: Mapping[str, onnx.TensorProto],
              vector: Callable[[str], bool], max_nodes: int) -> onnx.ModelProto | None:
    """A model of the nodes of `shell` that inference must revisit, or None when the whole model should be used.

    `rows` describe shell.graph.node (rows[i].position == i), `open_rows` those with an open
    output, `producer` the live row of each tensor; `types` hold each tensor's last inferred
    ValueInfo and `initializers` shell's by name (with tensors evaluated since); `vector(tensor)`
    tells a tensor data propagation may carry a value through (a static scalar or short
    vector). None when the part would have more than `max_nodes` nodes, a member node holds
    a subgraph (its body may read outer tensors that are not its inputs) or reads a tensor
    with no inferred type.
    """
    members = {row.position for row in open_rows}
    stack = [name for row in open_rows for name in row.inputs if name]
    while stack:
        row = producer.get(stack.pop())
        if row is None or row.position in members or row.domain not in ("", "ai.onnx"):
            continue
        if not all(vector(name) for name in row.outputs if name):
            continue   # a tensor of rank 2 or more carries no propagated value: it comes in typed
        members.add(row.position)
        if len(members) > max_nodes:
            return None
        if row.op_type not in ("Shape", "Size"):   # their value follows from their input's type
            stack.extend(name for name in row.inputs if name)
    if len(members) > max_nodes:
        return None
    nodes = shell.graph.node
    order = sorted(members)
    defined: set[str] = set()
    for position in order:
        if any(attribute.type in _SUBGRAPHS for attribute in nodes[position].attribute):
            return None
        defined.update(rows[position].outputs)
    part = onnx.ModelProto()
    part.ir_version = shell.ir_version
    part.opset_import.extend(shell.opset_import)
    part.functions.extend(shell.functions)
    part.graph.node.extend(nodes[position] for position in order)
    for position in order:
        for name in rows[position].inputs:
            if not name or name in defined:
                continue
            defined.add(name)
            if name in initializers:
                part.graph.initializer.append(initializers[name])
            elif name in types:
                part.graph.input.append(types[name])
            else:
                return None
    return part

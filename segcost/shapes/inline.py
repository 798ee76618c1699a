"""An If branch as nodes of the inference copy (shapes.branches): its names prefixed, its outputs written
onto the If's."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.ir.subgraphs import attribute_graphs

__all__ = ["inlined_branch"]

# Branch constants up to this many elements go into the inference copy with their data (shape
# arithmetic reads them); larger ones as typed inputs, like the model's own weights.
_INLINE_ELEMENTS = 1 << 16


def _defined(graph: onnx.GraphProto, names: set[str]) -> set[str]:
    """Add to `names` the tensors `graph` and the graphs nested in it define (inputs, initializers, outputs)."""
    names.update(value.name for value in graph.input)
    names.update(init.name for init in graph.initializer)
    names.update(sparse.values.name for sparse in graph.sparse_initializer)
    for proto in graph.node:
        names.update(name for name in proto.output if name)
        for nested in attribute_graphs(proto):
            _defined(nested, names)
    return names


def _rename(graph: onnx.GraphProto, names: Mapping[str, str], prefix: str) -> None:
    """Rename, in place, the tensors of `graph` and its nested graphs by `names`; prefix its nodes' names."""
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = names.get(sparse.values.name, sparse.values.name)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = names.get(value.name, value.name)
    for proto in graph.node:
        if proto.name:
            proto.name = prefix + proto.name
        proto.input[:] = [names.get(name, name) for name in proto.input]
        proto.output[:] = [names.get(name, name) for name in proto.output]
        for nested in attribute_graphs(proto):
            _rename(nested, names, prefix)


def inlined_branch(branch: onnx.GraphProto, prefix: str, outputs: list[str], shell: onnx.ModelProto
                   ) -> tuple[list[onnx.NodeProto], dict[str, str], dict[str, np.ndarray]]:
    """(the branch's nodes, its names prefixed, then Identity nodes onto the If's `outputs`; {old name: new name};
    {new name: value} of its one-element constants). Its constants are added to `shell` (small ones with their
    data, others as typed inputs).

    onnx.compose.add_prefix_graph is not used: it renames a nested graph's outputs even when they pass an outer
    tensor through, and a nested graph's reads of the branch's initializers not at all (onnx 1.23).
    """
    # every name the branch defines, at any depth, is prefixed (so no clash with the outer graph); an outer
    # tensor it reads or passes through as an output keeps its name
    names = {name: prefix + name for name in _defined(branch, set())}
    copy = onnx.GraphProto()
    copy.CopyFrom(branch)
    _rename(copy, names, prefix)
    constants = {}
    for init in copy.initializer:
        elements = int(np.prod(tuple(init.dims), dtype=np.int64))
        if elements <= _INLINE_ELEMENTS:
            shell.graph.initializer.append(init)
            if elements == 1 and init.data_location != init.EXTERNAL:
                constants[init.name] = numpy_helper.to_array(init)
        else:
            shell.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    nodes = list(copy.node)
    for source, target in zip(branch.output, outputs):
        if target:   # an output the branch produces (prefixed), or an outer tensor it passes through as is
            nodes.append(helper.make_node("Identity", [names.get(source.name, source.name)], [target],
                                          name=f"{prefix}output/{target}"))
    return nodes, names, constants

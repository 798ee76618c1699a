"""Well-formedness check of the IR (the counterpart of torch.fx's ``graph.lint()``).

Run by the loader after building the IR and by the PassManager after each pass.
"""

from __future__ import annotations

from typing import NoReturn

from segcost.errors import GraphError
from segcost.ir.graph import Graph, Node


def verify_graph(graph: Graph, reads: list[tuple[str, str]] | None = None) -> None:
    """Raise GraphError unless the graph is a DAG whose every consumed tensor has a source.

    A source is a producing node, a graph input or an initializer. Graph outputs must have
    a source too. The first problem found is reported with the node and tensor names.

    `reads`, from the ONNX reader (ir.onnx_io.from_model with verify=True): the (node key,
    tensor) reads, in node order, of a graph whose nodes were inserted in file order, of the
    tensors no earlier node produces. Every other read is forward in file order, so only these
    are checked (with what the full walk over every input finds).
    """
    available = set(graph.inputs) | set(graph.initializers)
    produced = graph._producer  # the producer index itself: one lookup per input of 100k nodes
    nodes = graph.nodes
    order: dict[str, int] | None = None
    forward = True   # every edge goes forward in file order (checked in the same walk over the inputs)
    if reads is not None:
        for key, tensor in reads:
            if produced.get(tensor) is not None:
                forward = False   # produced by this node or a later one
            elif tensor not in available:
                _refuse_read(key, nodes[key], tensor)
    else:
        order = {key: node.meta.get("order", 0) for key, node in nodes.items()}
        for key, node in nodes.items():
            rank = order[key]
            for tensor in node.all_inputs:
                if not tensor:
                    continue
                producer = produced.get(tensor)
                if producer is None:
                    if tensor not in available:
                        _refuse_read(key, node, tensor)
                elif forward and order[producer] >= rank:
                    forward = False
    for tensor in graph.outputs:
        if tensor not in available and graph.producer(tensor) is None:
            raise GraphError(f"graph output {tensor!r} is not produced by any node")
    if forward:
        graph.keep_file_order(order)   # acyclic, and the analysis' schedule: no second walk
        return
    import networkx as nx  # deferred: only a graph stored out of order needs networkx's cycle search

    if not nx.is_directed_acyclic_graph(graph.dag):
        cycle = nx.find_cycle(graph.dag)
        path = " -> ".join(edge[0] for edge in cycle) + f" -> {cycle[0][0]}"
        raise GraphError(f"graph has a cycle: {path}")


def _refuse_read(key: str, node: Node, tensor: str) -> NoReturn:
    raise GraphError(f"node {key!r} ({node.op_type}) reads tensor {tensor!r}"
                     f"{' in a subgraph' if tensor not in node.inputs else ''}, which no node, "
                     "graph input or initializer provides")

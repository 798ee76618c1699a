"""A budget on what model-local functions expand to, checked before any library expands them.

onnx.shape_inference, onnx's inliner and onnxruntime expand every call of a model-local
function (FunctionProto) into its body. A few hundred bytes of functions where f_i calls
f_{i+1} twice expand to 2**depth nodes: inference of such a file runs for hours inside C
code that holds the GIL (Ctrl-C cannot stop it) and the inliner exhausts memory. The
expanded size is computed here by counting, each function once (memoized), in time linear
in the file, and a model over MAX_EXPANDED_NODES is refused; so is a function that calls
itself, directly or not, which no runtime can expand.
"""

from __future__ import annotations

import onnx

from segcost.errors import InputError

MAX_EXPANDED_NODES = 1_000_000  # nodes that function calls add once inlined (subgraphs included)


def check_function_expansion(model: onnx.ModelProto, label: str | None = None, budget: int = MAX_EXPANDED_NODES) -> int:
    """Nodes the model-local function calls expand to; InputError beyond `budget` or for recursion.

    A call costs its body's expanded size; a node with subgraphs (If/Loop/Scan) costs its
    subgraphs' nodes. Returns the total added by calls in the main graph.
    """
    prefix = f"{label}: " if label else ""
    functions = {(function.domain, function.name, function.overload): function for function in model.functions}
    if not functions:
        return 0
    sizes: dict[tuple[str, str, str], int] = {}
    active: set[tuple[str, str, str]] = set()

    def expanded(nodes) -> tuple[int, int]:
        """(nodes once inlined, of which added by function calls)."""
        total = added = 0
        for node in nodes:
            key = (node.domain, node.op_type, node.overload)
            if key in functions:
                size = function_size(key)
                total += size
                added += size
            else:
                total += 1
            for attribute in node.attribute:
                graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else \
                    attribute.graphs if attribute.type == onnx.AttributeProto.GRAPHS else ()
                for graph in graphs:
                    inner_total, inner_added = expanded(graph.node)
                    total += inner_total
                    added += inner_added
            if added > budget:
                raise InputError(f"{prefix}model-local functions expand to more than {budget:,} nodes "
                                 f"(at node {node.name or node.op_type!r}); refused before expanding them")
        return total, added

    def function_size(key) -> int:
        size = sizes.get(key)
        if size is None:
            if key in active:
                raise InputError(f"{prefix}model-local function {key[1]!r} (domain {key[0]!r}) calls itself; "
                                 "it cannot be expanded")
            active.add(key)
            size = sizes[key] = expanded(functions[key].node)[0]
            active.discard(key)
        return size

    try:
        return expanded(model.graph.node)[1]
    except RecursionError:
        raise InputError(f"{prefix}model-local functions or subgraphs are nested too deeply") from None

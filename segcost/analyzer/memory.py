"""Activation memory: the peak of live buffers over a topological schedule.

A buffer is allocated when its producer runs and freed after its last consumer ran
(graph inputs live from the start, graph outputs to the end). Weights are excluded.
This is the liveness-based figure embedded runtimes approach with buffer reuse; it is
never larger than the plain sum of all activation buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from segcost.ir import Graph, Node


def peak_activation_bytes(graph: Graph, nodes: Sequence[Node], tensor_bytes: Callable[[str], int],
                          constants: set[str], buffer_sizes: Sequence[BufferSizes] | None = None) -> int:
    """Peak live activation bytes when `nodes` run in this (topological) order.

    Each step first allocates the outputs of its node that are not live yet (nor constants),
    the peak is taken, then it frees the tensors read there for the last time and the outputs
    nobody reads later (never a graph output). `tensor_bytes(name)` gives a buffer's size.
    `buffer_sizes`, per node, are (the sizes of its inputs, then of the tensors its subgraphs
    read; the sizes of its outputs), None for a constant or an omitted tensor: what the analysis
    walk found (a table look-up per tensor less), else found here.

    A graph whose every tensor has one producer, none of them a graph input (what the Graph
    and the loader's verify_graph keep), is swept backwards (`_peak_backwards`): a tensor's
    first sighting from the end is its last use, so no table of last uses is needed and the
    live set stays small. Any other graph is replayed forwards (`_peak_forwards`); both give
    the same figure (tests/test_peak_memory.py).
    """
    peak = _peak_backwards(graph, nodes, tensor_bytes, constants, buffer_sizes)
    return peak if peak is not None else _peak_forwards(graph, nodes, tensor_bytes, constants)


# (sizes of a node's inputs and subgraph reads, sizes of its outputs): None for a constant or omitted tensor
BufferSizes = tuple[tuple[int | None, ...], tuple[int | None, ...]]


def node_buffer_sizes(node: Node, tensor_bytes: Callable[[str], int], constants: set[str]) -> BufferSizes:
    """(bytes of each of node.all_inputs, bytes of each of its outputs), None for a constant or an omitted tensor."""
    return (tuple([None if not tensor or tensor in constants else tensor_bytes(tensor) for tensor in node.all_inputs]),
            tuple([None if not tensor or tensor in constants else tensor_bytes(tensor) for tensor in node.outputs]))


def _peak_backwards(graph: Graph, nodes: Sequence[Node], tensor_bytes: Callable[[str], int], constants: set[str],
                    buffer_sizes: Sequence[BufferSizes] | None = None) -> int | None:
    """The peak from a sweep from the last node to the first, or None when the graph needs the forward replay
    (a tensor produced twice; a node produces a graph input, even an unnamed one; a tensor is read, or is a
    graph output, that nothing produces). `buffer_sizes`: see peak_activation_bytes (found here when not
    given). The sweep finds a tensor produced twice itself (a set of the outputs swept: 100k nodes' outputs
    gathered into a list and a set before the sweep were a quarter of the peak's time)."""
    if buffer_sizes is None:
        buffer_sizes = [node_buffer_sizes(node, tensor_bytes, constants) for node in nodes]
    graph_inputs = set(graph.inputs)
    # live: the buffers live across the boundary before the step being looked at; graph outputs to the end
    live = {tensor: tensor_bytes(tensor) for tensor in graph.outputs if tensor and tensor not in constants}
    current = sum(live.values())
    peak = None
    pop = live.pop
    # the graph inputs and the outputs of the steps swept so far: none may be produced (again)
    taken = set(graph_inputs)
    seen, see = taken.__contains__, taken.add
    for node, (input_sizes, output_sizes) in zip(reversed(nodes), reversed(buffer_sizes)):
        during = current   # live while this step runs
        for tensor, size in zip(node.all_inputs if node.implicit_inputs else node.inputs, input_sizes):
            if size is not None and tensor not in live:   # its last use: live from here back
                live[tensor] = size
                current += size
                during += size
        for tensor, size in zip(node.outputs, output_sizes):
            if seen(tensor):   # a graph input (even unnamed) or a tensor produced twice
                return None
            if tensor:   # "" is an omitted output: any number of them
                see(tensor)
            born = pop(tensor, None)
            if born is not None:   # produced here: not live before this step
                current -= born
            elif size is not None:   # read by no later step: live during this one only
                during += size
        if peak is None or during > peak:
            peak = during
    if not graph_inputs.issuperset(live):
        return None
    # graph inputs that never became live above (unread, constant, unnamed) are live throughout
    always = sum(tensor_bytes(tensor) for tensor in dict.fromkeys(graph.inputs) if tensor not in live)
    initial = always + sum(live.values())   # before the first step: every graph input
    return initial if peak is None else max(initial, peak + always)


def _peak_forwards(graph: Graph, nodes: Sequence[Node], tensor_bytes: Callable[[str], int],
                   constants: set[str]) -> int:
    """The peak replayed node by node, for any graph (a tensor produced twice is allocated while not live)."""
    # the last step reading each tensor (a tensor an If/Loop/Scan subgraph reads lives until that node)
    last_use = {tensor: step for step, node in enumerate(nodes) for tensor in node.all_inputs
                if tensor and tensor not in constants}
    pinned = set(graph.outputs)
    live = {tensor: tensor_bytes(tensor) for tensor in graph.inputs}
    current = sum(live.values())
    peak = current
    last_step = last_use.get
    for step, node in enumerate(nodes):
        outputs = node.outputs
        for tensor in outputs:
            if tensor and tensor not in constants and tensor not in live:
                size = live[tensor] = tensor_bytes(tensor)
                current += size
        if current > peak:
            peak = current
        # Freed after this step: inputs read here for the last time, and outputs nobody reads
        # (a consumer always runs after its producer, so an output's last use is later or none).
        # A tensor named twice is freed once: it is no longer live the second time.
        for tensor in node.all_inputs if node.implicit_inputs else node.inputs:
            if last_step(tensor) == step and tensor in live and tensor not in pinned:
                current -= live.pop(tensor)
        for tensor in outputs:
            if tensor in live and tensor not in pinned and last_step(tensor, -1) <= step:
                current -= live.pop(tensor)
    return peak

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
                          constants: set[str]) -> int:
    """Peak live activation bytes when `nodes` run in this (topological) order."""
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

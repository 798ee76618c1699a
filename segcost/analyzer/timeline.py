"""Activation memory over the schedule: live bytes after each layer, and what is live at the peak.

The same liveness rule as analyzer.memory.peak_activation_bytes (a buffer lives from its
producer to its last consumer; graph inputs from the start, graph outputs to the end;
weights excluded), kept per step for the HTML report's memory plot. The peak of this
timeline equals `totals.peak_activation_bytes` (tested); memory.py keeps its own loop
because it runs on every analysis, where this per-step record is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segcost.analyzer.tables import tensor_tables
from segcost.ir import Graph


@dataclass
class MemoryTimeline:
    """Live activation bytes per schedule step.

    Attributes:
        layers: layer (node) names in schedule order.
        live_bytes: bytes live while each layer runs (its inputs and outputs included).
        peak_step: index of the first step at the peak.
        live_at_peak: (tensor, bytes) live at the peak, largest first.
    """

    layers: list[str] = field(default_factory=list)
    live_bytes: list[int] = field(default_factory=list)
    peak_step: int = 0
    live_at_peak: list[tuple[str, int]] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return self.live_bytes[self.peak_step] if self.live_bytes else 0


def activation_timeline(graph: Graph) -> MemoryTimeline:
    """Live activation bytes at each step of `graph`'s topological schedule (tensors of unknown size count 0)."""
    order = graph.topological_order()
    nodes = [graph.node(key) for key in order]
    sizes = tensor_tables(graph)[1]
    constants = set(graph.initializers)
    for node in nodes:
        if node.op_type == "Constant" and not node.domain:
            constants.update(node.outputs)
    last_use: dict[str, int] = {}
    for step, node in enumerate(nodes):
        for tensor in node.inputs:
            if tensor and tensor not in constants:
                last_use[tensor] = step
    pinned = set(graph.outputs)
    live = {tensor: sizes[tensor] for tensor in graph.inputs}
    current = sum(live.values())
    timeline = MemoryTimeline(layers=list(order))
    peak = -1
    for step, node in enumerate(nodes):
        for tensor in node.outputs:
            if tensor and tensor not in constants and tensor not in live:
                live[tensor] = sizes[tensor]
                current += live[tensor]
        timeline.live_bytes.append(current)
        if current > peak:
            peak, timeline.peak_step = current, step
            timeline.live_at_peak = sorted(live.items(), key=lambda item: (-item[1], item[0]))
        for tensor in (*node.inputs, *node.outputs):
            if tensor in live and tensor not in pinned and last_use.get(tensor, -1) <= step:
                current -= live.pop(tensor)
    return timeline

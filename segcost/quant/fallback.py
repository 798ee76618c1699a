"""Layers kept in float because int8 cannot represent their input: Concats of mismatched ranges,
and tensors holding ±Inf or NaN.

A Concat's output has one scale (per-tensor activations, which onnxruntime and TIDL use):
an input whose calibrated range is R× smaller than the Concat's keeps 8 − log2 R bits, and
the layer reading the Concat sees that input at that precision whatever the quantizer does
with its scales (measured: smp MAnet-ResNet34 with random weights, decoder skip inputs
1/53 and 1/183 of their Concat's range, argmax agreement 87.8%). When R exceeds
FLOAT_FALLBACK_RATIO (fewer than 3 bits left), the Concat and the layers reading it are
kept in float and named in the notes; the rest of the model is int8.

A tensor that holds ±Inf or NaN on the calibration data (an additive attention mask,
`masked_fill(mask, -inf)` before a Softmax, as in HF Mask2Former's masked attention) has no
int8 representation at any scale: int8 has no infinity, and onnxruntime would calibrate it
to scale = inf (segcost.quant.ranges.collect_ranges). Its producer and every reader are kept
in float, so the tensor is never quantized (onnxruntime's QDQ quantizer puts a Q/DQ pair on
a tensor only for a quantized node that writes or reads it) and the Softmax sees the true
-inf (exp(-inf) = 0).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from segcost.ir import Graph

FLOAT_FALLBACK_RATIO = 32.0   # log2(32) = 5 of 8 bits lost: the input keeps fewer than 3


def _ranges(path: Path) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(path)
    ranges = {}
    for name in data:
        low, high = data[name].range_value
        ranges[name] = (min(float(np.min(low)), 0.0), max(float(np.max(high)), 0.0))  # onnxruntime's ranges include 0
    return ranges


def mismatched_concats(graph: Graph, ranges_path: Path, ratio: float = FLOAT_FALLBACK_RATIO
                       ) -> tuple[list[str], list[str]]:
    """(node names to keep in float, notes) for Concats with an input > `ratio`× narrower than the output."""
    ranges = _ranges(ranges_path)
    keep: list[str] = []
    notes: list[str] = []
    for key in graph.topological_order():
        node = graph.node(key)
        if node.op_type != "Concat" or node.outputs[0] not in ranges:
            continue
        low, high = ranges[node.outputs[0]]
        worst, narrowest = 0.0, None
        for tensor in node.inputs:
            if tensor in ranges:
                width = ranges[tensor][1] - ranges[tensor][0]
                if width <= 0:   # all zeros over the calibration data (smp's zero feature): exact at any scale
                    continue
                factor = (high - low) / width
                if factor > worst:
                    worst, narrowest = factor, tensor
        if worst <= ratio:
            continue
        readers = [graph.node(user).name or user for user in graph.consumers(node.outputs[0])]
        keep += [node.name or key, *readers]
        assert narrowest is not None, "worst > ratio >= 0 means some input set it"
        producer = graph.producer(narrowest)
        source = (graph.node(producer).name or producer) if producer else narrowest
        notes.append(f"kept in float: {node.name or key} and {', '.join(readers)} (input from {source} spans "
                     f"1/{worst:.0f} of the Concat's range: int8 would keep {max(0.0, 8 - math.log2(worst)):.1f} bits)")
    return list(dict.fromkeys(keep)), notes


def nonfinite_tensors(graph: Graph, nonfinite: dict[str, int]) -> tuple[list[str], list[str]]:
    """(node names to keep in float, notes) for the tensors of `nonfinite` ({tensor: count of NaN/±Inf
    values over the calibration data}, segcost.quant.ranges.CalibratedRanges): each one's producer
    and readers, so no Q/DQ pair is placed on it (module docstring). One note per chain of such
    tensors sharing a node (mask → Add → Softmax)."""
    chains: list[tuple[list[str], list[str]]] = []   # (tensors, node names), merged where they share a node
    for tensor in nonfinite:
        producer = graph.producer(tensor)
        names = [graph.node(key).name or key for key in [*([producer] if producer else []),
                                                          *graph.consumers(tensor)]]
        if not names:
            continue
        joined = [chain for chain in chains if set(chain[1]) & set(names)]
        tensors = [name for chain in joined for name in chain[0]] + [tensor]
        nodes = list(dict.fromkeys([name for chain in joined for name in chain[1]] + names))
        chains = [chain for chain in chains if chain not in joined] + [(tensors, nodes)]
    notes = [f"kept in float: {', '.join(nodes)} (NaN/±Inf on the calibration data, which int8 cannot represent at "
             f"any scale, in " + ", ".join(f"{tensor!r}: {nonfinite[tensor]:,} values" for tensor in tensors) + ")"
             for tensors, nodes in chains]
    return list(dict.fromkeys(name for _, nodes in chains for name in nodes)), notes

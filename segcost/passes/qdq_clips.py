"""Activations the quantizer removed, whose clipping their QuantizeLinear now carries.

With asymmetric activations (`--target cpu`), onnxruntime's QDQ quantizer removes a Relu or
Clip that follows a quantized layer and quantizes the layer's output with the activation's
range instead (QDQRemovableActivation, onnxruntime/python/tools/quantization/operators/
activation.py, and `try_replacing_upstream_output`): the layer's output is renamed to the
activation's output, and a range [0, max] gives zero point q_min, so quantizing clips the
negatives exactly as the Relu did. From then on the clip lives only in that scale and zero
point: any later change that widens the range past the activation's bounds — sharing a
Concat's signed scale (zero point ~120), rounding to a power of two — lets through values
the float model clamps (measured: Relu → Concat with a signed sibling, SQNR 2.4 dB).

* `removed_clips(float_graph, int8_graph)` — each such activation, keyed by the tensor of
  the int8 graph its QuantizeLinear reads (the carrier), with its bounds [lo, hi] (Relu:
  [0, ∞); Clip: its constant min/max). The carrier is the activation's output, or — when that
  output is a graph output — the `<output>_QuantizeLinear_Input` the quantizer renamed the
  layer's result to (Q → DQ → output follow it); removal is found by node name, so a removed
  activation is never skipped because its tensor was renamed.
* `unlocated_clips(float_graph, int8_graph, clips)` — removed activations with no carrier or
  no constant bounds: nothing can check or restore them, so they are reported as failures.
* ShareConcatScalesPass keeps these tensors out of any group whose range exceeds the
  bounds (the edge into the Concat is requantized instead, which clips there).
* `RestoreClipsPass(clips)` — where the QuantizeLinear cannot express the bounds (its range
  always includes 0, so a Clip with min > 0 or max < 0 is never carried: measured 40% of
  outputs below a 0.25 floor) or a later pass widened the range (a power-of-two scale cannot
  represent ReLU6's [0, 6]: 2^-5 gives [0, 7.97]), the activation goes back in front of its
  QuantizeLinear.
* `lost_clips(int8_graph, clips)` — the post-check: a clip is lost when its tensor's
  QuantizeLinear represents values more than half a step outside [lo, hi].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

from segcost.errors import InputError
from segcost.ir import Graph, Initializer, Node
from segcost.ir.opforms import read_operand
from segcost.passes._infra import PassBase, PassResult
from segcost.passes.qdq import DEQUANTIZE, QUANTIZE, _constant

__all__ = ["CLIP_OPS", "RemovedClip", "RestoreClipsPass", "lost_clips", "removed_clips", "representable_range",
           "unlocated_clips"]

# The activations onnxruntime's QDQ quantizer may remove (QDQRemovableActivation in
# onnxruntime/quantization/registry.py; tests/quant/test_removed_clips.py checks the installed registry).
CLIP_OPS = ("Relu", "Clip")


@dataclass(frozen=True)
class RemovedClip:
    """A Relu/Clip the quantizer removed; `lo`, `hi` are its bounds (−∞/∞ when unbounded)."""

    activation: str     # the removed node's name
    op_type: str
    lo: float
    hi: float


def _bounds(graph: Graph, key: str) -> tuple[float, float] | None:
    node = graph.node(key)
    if node.op_type == "Relu":
        return 0.0, math.inf
    try:
        low, high = read_operand(graph, key, "min"), read_operand(graph, key, "max")
        lo = float(low.scalar()) if low.known else (-math.inf if not low.given else None)  # type: ignore[arg-type]
        hi = float(high.scalar()) if high.known else (math.inf if not high.given else None)  # type: ignore[arg-type]
    except InputError:
        return None
    return None if lo is None or hi is None else (lo, hi)


def _carrier(graph: Graph, tensor: str) -> str | None:
    """The tensor of the int8 `graph` whose QuantizeLinear carries a removed activation with output `tensor`.

    `tensor` itself when the layer before the activation now produces it; for a graph output the
    quantizer renames the layer's result to `<tensor>_QuantizeLinear_Input` and adds Q → DQ →
    `tensor`, so the carrier is that Q's input. None when neither form is found.
    """
    producer = graph.producer(tensor)
    if producer is not None and graph.node(producer).op_type == DEQUANTIZE:
        quantize = graph.producer(graph.node(producer).inputs[0])
        if quantize is None or graph.node(quantize).op_type != QUANTIZE:
            return None
        tensor = graph.node(quantize).inputs[0]
        producer = graph.producer(tensor)
    if producer is None or graph.node(producer).op_type in (*CLIP_OPS, QUANTIZE, DEQUANTIZE):
        return None
    if not any(graph.node(user).op_type == QUANTIZE for user in graph.consumers(tensor)):
        return None
    return tensor


def _removed(float_graph: Graph, int8_graph: Graph) -> list[tuple[str, Node]]:
    """(key, node) of each Relu/Clip of `float_graph` that has no node of the same name in `int8_graph`."""
    kept = {int8_graph.node(key).name or key for key in int8_graph.dag}
    removed = []
    for key in float_graph.dag:
        node = float_graph.node(key)
        if node.op_type in CLIP_OPS and node.outputs and node.domain in ("", "ai.onnx") \
                and (node.name or key) not in kept:
            removed.append((key, node))
    return removed


def removed_clips(float_graph: Graph, int8_graph: Graph) -> dict[str, RemovedClip]:
    """{carrier tensor: RemovedClip} for each Relu/Clip of `float_graph` the quantizer removed from `int8_graph`
    (matched by node name) whose clipping a QuantizeLinear now carries (`_carrier`) and whose bounds are constant."""
    clips: dict[str, RemovedClip] = {}
    for key, node in _removed(float_graph, int8_graph):
        carrier = _carrier(int8_graph, node.outputs[0])
        bounds = _bounds(float_graph, key)
        if carrier is not None and bounds is not None:
            clips[carrier] = RemovedClip(node.name or key, node.op_type, *bounds)
    return clips


def unlocated_clips(float_graph: Graph, int8_graph: Graph, clips: dict[str, RemovedClip]) -> list[str]:
    """One message per Relu/Clip of `float_graph` missing from `int8_graph` that `clips` does not account for.

    Such an activation (no QuantizeLinear found that carries it, or bounds that are not
    constants) cannot be checked or put back: the int8 model may not clip where the float one does.
    """
    accounted = {clip.activation for clip in clips.values()}
    return [f"{node.op_type} {node.name or key} was removed by onnxruntime's quantizer and segcost cannot check "
            f"that the int8 model still clips {node.outputs[0]!r} (no QuantizeLinear carrying it, or bounds that are "
            "not constants); keep it in float with --exclude-nodes"
            for key, node in _removed(float_graph, int8_graph) if (node.name or key) not in accounted]


def representable_range(graph: Graph, q_key: str) -> tuple[float, float, float] | None:
    """(lowest, highest, scale) a per-tensor QuantizeLinear can output, in real units; None if not constant."""
    node = graph.node(q_key)
    scale = _constant(graph, node.inputs[1])
    zero = _constant(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return None
    info = np.iinfo(zero.dtype)
    step, zero_point = float(scale.reshape(())), int(zero.reshape(()))
    return (info.min - zero_point) * step, (info.max - zero_point) * step, step


def _unclipped(graph: Graph, tensor: str, clip: RemovedClip) -> tuple[float, float] | None:
    """The range a QuantizeLinear of `tensor` passes if over half a step beyond the clip's bounds; else None."""
    producer = graph.producer(tensor)
    if producer is not None and graph.node(producer).op_type in CLIP_OPS:
        return None   # the activation is in the graph (again)
    for user in graph.consumers(tensor):
        window = representable_range(graph, user) if graph.node(user).op_type == QUANTIZE else None
        if window is not None:
            lowest, highest, step = window
            if lowest < clip.lo - step / 2 or highest > clip.hi + step / 2:
                return lowest, highest
    return None


class RestoreClipsPass(PassBase):
    """Put a removed Relu/Clip back in front of its QuantizeLinear where that no longer clips to its bounds.

    Attributes:
        clips: {tensor: RemovedClip} from `removed_clips`.
    """

    name = "restore-clips"

    def __init__(self, clips: dict[str, RemovedClip] | None = None) -> None:
        self.clips = dict(clips or {})

    def call(self, graph: Graph) -> PassResult:
        restored = []
        for tensor, clip in self.clips.items():
            producer = graph.producer(tensor)
            if producer is None or _unclipped(graph, tensor, clip) is None:
                continue
            before = f"{tensor}_before_{clip.op_type.lower()}"
            graph.rename_output(producer, tensor, before)
            inputs, attrs = [before], {}
            if clip.op_type == "Clip" and graph.info.opset < 11:   # Clip-6: bounds are attributes
                attrs = {"min": clip.lo, "max": clip.hi}
            elif clip.op_type == "Clip":
                for bound, value in (("min", clip.lo), ("max", clip.hi)):
                    name = f"{tensor}_{bound}"
                    graph.initializers[name] = Initializer.from_array(name, np.array(value, np.float32))
                    inputs.append(name)
            graph.add_node(Node(name=clip.activation, op_type=clip.op_type, inputs=inputs, outputs=[tensor],
                                attrs=attrs, attr_types={name: onnx.AttributeProto.FLOAT for name in attrs}))
            restored.append(clip.activation)
        notes = [f"restored {len(restored)} activations whose clipping a scale change had undone: "
                 + ", ".join(restored)] if restored else []
        return PassResult(graph, bool(restored), notes)


def lost_clips(graph: Graph, clips: dict[str, RemovedClip]) -> list[str]:
    """One message per removed activation whose QuantizeLinear no longer clips to its bounds."""
    problems = []
    for tensor, clip in clips.items():
        window = _unclipped(graph, tensor, clip)
        if window is not None:
            problems.append(f"{clip.op_type} {clip.activation} was folded into the quantization of {tensor!r}, "
                            f"which now passes [{window[0]:.3g}, {window[1]:.3g}] instead of clipping to "
                            f"[{clip.lo:g}, {clip.hi:g}]")
    return problems

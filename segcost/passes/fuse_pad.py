"""Fold a zero-constant Pad into the `pads` of the Conv or AveragePool reading it, as onnxruntime does.

Conv and AveragePool pad their input with zeros themselves (``pads``: begin values of the
spatial axes, then end values). ``Pad(x, p, 0) → Conv(pads=q)`` therefore computes exactly
``Conv(x, pads=q + p_spatial)``: the same output shape, the same MACs, the same values. An
AveragePool must then count the padding in its divisor (``count_include_pad = 1``), which it
can only do when its own padding, if any, is counted too.

The conditions are onnxruntime's level-1 ``PadFusion`` rewrite
(onnxruntime/core/optimizer/pad_fusion.cc: ``SatisfyCondition`` and ``Apply``) as
onnxruntime 1.32 applies it — each checked against its optimized graph (``SessionOptions.
optimized_model_filepath`` at ORT_ENABLE_BASIC) in tests/passes/test_fuse_pad.py:

1. Pad in ``constant`` mode with at most 3 inputs (an ``axes`` input is refused), its
   output read by exactly one node, once, and not a graph output;
2. ``pads`` and ``constant_value`` constant (an initializer the file also lists as a graph
   input is an overridable default, not a constant, for onnxruntime); the value absent, or
   every byte of it zero (-0.0 is refused; the opset < 11 attribute ``value`` compares == 0);
3. pads on the batch and channel axes zero, and no pad negative (a crop);
4. the consumer a Conv or AveragePool (onnxruntime 1.32 no longer folds into MaxPool: a
   MaxPool ignores its padding, the Pad's zeros take part in the max), with one output and
   ``auto_pad`` absent or NOTSET; an AveragePool with ``count_include_pad = 0`` only when
   it pads nothing itself (it then gets ``count_include_pad = 1``);
5. or the consumer a Cast (read by exactly one node, not a graph output) whose consumer
   meets 4 — the Cast then reads the unpadded tensor (opset >= 11 Pads only, as in
   onnxruntime: a Cast of zero is zero).

Onnxruntime checks the Pad's and the consumer's opset versions against lists; 1.32 folds
every version from Pad-2/Conv-1 to Pad-25/Conv-22/AveragePool-22 (measured), so no version
is checked here.
"""

from __future__ import annotations

import numpy as np
import onnx

from segcost.ir import Graph
from segcost.ir.opforms import read_operand
from segcost.passes._infra import PassBase, PassResult
from segcost.passes.fuse_batchnorm import MatchResult

__all__ = ["FusePadPass"]

POOLING_INTO = ("Conv", "AveragePool")   # onnxruntime 1.32's PadFusion consumers (MaxPool was dropped)
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FusePadPass(PassBase):
    """Zero-constant, spatial, non-negative Pad → Conv/AveragePool becomes the consumer's own padding.

    Cases (the module docstring gives each condition and its source):
      1. Pad → Conv: the Conv's pads grow by the Pad's spatial pads; the Pad is removed.
      2. Pad → AveragePool: the same, and ``count_include_pad = 1``.
      3. Pad → Cast → Conv/AveragePool: the Cast reads the Pad's input instead.
    Refusals are recorded with their reason in `explanations` (and the pass notes).
    """

    name = "fuse-pad"

    def __init__(self):
        self.explanations: list[tuple[str, str]] = []

    def call(self, graph: Graph) -> PassResult:
        self.explanations = []
        folded = 0
        for key in graph.topological_order():
            node = graph.node(key)
            if node.op_type != "Pad" or node.domain not in _DEFAULT_DOMAINS:
                continue
            match, pads = self.check(graph, key)
            if not match.ok:
                self.explanations.append((key, match.reason))
                continue
            self.rewrite(graph, key, pads)
            folded += 1
        notes = [f"folded {folded} Pad nodes into the padding of the convolution/pooling reading them"] if folded \
            else []
        notes += [f"not folded {key}: {reason}" for key, reason in self.explanations]
        return PassResult(graph, bool(folded), notes)

    def check(self, graph: Graph, key: str) -> tuple[MatchResult, list[int]]:
        """(whether Pad `key` folds, with the reason if not; its pads when it does)."""
        pad = graph.node(key)
        if _text(pad.attrs.get("mode", "constant")) != "constant":
            return MatchResult.fail(f"mode {_text(pad.attrs['mode'])!r} is not 'constant'"), []
        if len(pad.inputs) > 3:
            return MatchResult.fail("an axes input is given"), []
        reader = _one_reader(graph, pad.outputs[0])
        if reader is None:
            return MatchResult.fail("its output is not read by exactly one node, once, or is a graph output"), []
        pads = read_operand(graph, key, "pads")
        value = read_operand(graph, key, "constant_value")
        overridable = set(graph.info.initializer_inputs)
        if pads.value is None or pads.tensor in overridable:
            return MatchResult.fail("pads are not constant"), []
        if value.given and (value.value is None or value.tensor in overridable):
            return MatchResult.fail("the constant value is not constant"), []
        if value.tensor is not None and value.value is not None:
            if any(np.asarray(value.value).tobytes()):
                return MatchResult.fail(f"the constant value {value.floats()} is not 0"), []
        elif value.value is not None and float(np.asarray(value.value).reshape(-1)[0]) != 0.0:
            return MatchResult.fail(f"the constant value {value.floats()} is not 0"), []
        amounts = list(pads.ints() or ())
        half = len(amounts) // 2
        if len(amounts) < 6 or len(amounts) % 2:
            return MatchResult.fail(f"{len(amounts)} pads do not cover batch, channel and spatial axes"), []
        if amounts[0] or amounts[1] or amounts[half] or amounts[half + 1]:
            return MatchResult.fail("it pads the batch or channel axis"), []
        if any(amount < 0 for amount in amounts):
            return MatchResult.fail("a pad is negative (a crop)"), []
        consumer = graph.node(reader)
        if consumer.op_type == "Cast" and consumer.domain in _DEFAULT_DOMAINS:
            if "pads" in pad.attrs:
                return MatchResult.fail("a Pad before opset 11 is not folded through a Cast"), []
            following = _one_reader(graph, consumer.outputs[0])
            if following is None:
                return MatchResult.fail("the Cast after it is not read by exactly one node, once"), []
            consumer = graph.node(following)
        reason = _consumer_refusal(consumer, half - 2)
        if reason:
            return MatchResult.fail(reason), []
        return MatchResult(True), amounts

    def rewrite(self, graph: Graph, key: str, amounts: list[int]) -> None:
        pad = graph.node(key)
        reader = graph.consumers(pad.outputs[0])[0]
        target_key = graph.consumers(graph.node(reader).outputs[0])[0] if graph.node(reader).op_type == "Cast" \
            else reader
        target = graph.node(target_key)
        half, spatial = len(amounts) // 2, len(amounts) // 2 - 2
        own = list(target.attrs.get("pads") or [0] * (2 * spatial))
        target.attrs["pads"] = [own[axis] + amounts[2 + axis] for axis in range(spatial)] + \
                               [own[spatial + axis] + amounts[half + 2 + axis] for axis in range(spatial)]
        target.attr_types["pads"] = onnx.AttributeProto.INTS
        if target.op_type == "AveragePool":
            target.attrs["count_include_pad"] = 1
            target.attr_types["count_include_pad"] = onnx.AttributeProto.INT
        source, padded = pad.inputs[0], pad.outputs[0]
        graph.remove_node(key)
        graph.replace_input(reader, padded, source)
        graph.tensors.pop(padded, None)
        if reader != target_key:   # the Cast's output now has the unpadded shape
            cast_output = graph.node(reader).outputs[0]
            info, shape = graph.tensors.get(cast_output), graph.shape(source)
            if info is not None:
                info.shape = shape
        target.meta["created_by"] = self.name


def _one_reader(graph: Graph, tensor: str) -> str | None:
    """The one node reading `tensor` as its first input and nowhere else; None otherwise or for a graph output."""
    readers = graph.consumers(tensor)
    if len(readers) != 1 or tensor in graph.outputs:
        return None
    node = graph.node(readers[0])
    return readers[0] if node.all_inputs.count(tensor) == 1 and node.inputs[:1] == [tensor] else None


def _consumer_refusal(consumer, spatial: int) -> str:
    """Why `consumer` cannot take the padding of `spatial` axes ("" when it can)."""
    if consumer.op_type not in POOLING_INTO or consumer.domain not in _DEFAULT_DOMAINS:
        return f"it is read by {consumer.op_type}, not Conv or AveragePool"
    if len([tensor for tensor in consumer.outputs if tensor]) > 1:
        return f"{consumer.op_type} has more than one output"
    if _text(consumer.attrs.get("auto_pad", "NOTSET")) != "NOTSET":
        return f"{consumer.op_type} has auto_pad {_text(consumer.attrs['auto_pad'])}"
    own = list(consumer.attrs.get("pads") or [0] * (2 * spatial))
    if len(own) != 2 * spatial:
        return f"{consumer.op_type} has {len(own)} pads for {spatial} spatial axes"
    if consumer.op_type == "AveragePool" and not consumer.attrs.get("count_include_pad", 0) and any(own):
        return "AveragePool pads itself and does not count padding (count_include_pad = 0)"
    return ""

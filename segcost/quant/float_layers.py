"""Keep a float layer of a QDQ model float in onnxruntime (its WeightBiasQuantization would quantize it).

A layer segcost leaves in float between int8 layers (`--exclude-nodes`, `--mixed`, a layer kept
for accuracy) is written as onnxruntime's quantizer writes an excluded node:
`DequantizeLinear → Conv(float weight, float bias) → QuantizeLinear`. At session creation
(graph optimization level 1, "basic", on by default; every execution provider) onnxruntime's
`WeightBiasQuantization` transformer (onnxruntime/core/optimizer/qdq_transformer/
weight_bias_quantization.cc; registered in graph_transformer_utils.cc unless the session sets
`session.disable_quant_qdq`; onnxruntime 1.32 here) turns exactly that into a QDQ node unit: it quantizes the
float weight to int8 with ONE per-tensor symmetric scale (and the bias to int32), and the
Conv then runs as a QLinearConv. It does so for a Conv, ConvTranspose or Gemm when

1. input 0 comes from a DequantizeLinear with a per-tensor scale (`optimizer_utils::IsScalar`:
   rank 0, or shape [1]),
2. its output reaches a QuantizeLinear through a chain of single readers that may hold Relu
   or Clip only, and
3. its weight is a float32 initializer (a dequantized weight is the int8 case, where only a
   float bias is quantized).

The "float" layer is then int8, with per-tensor weights — worse than the per-channel int8 it
replaced, much worse after cross-layer equalization has spread its channels' ranges (smp FPN,
MobileNetV4 encoder: one excluded Conv took the output from 26.4 to 9.7 dB).

onnxruntime's QDQPropagationTransformer runs first and moves a DequantizeLinear forward (a
QuantizeLinear back) across MaxPool, Reshape, Transpose, Squeeze, Unsqueeze and Slice on a
single-reader path, so a layer behind such ops meets the conditions too.

`pin_float_layers` breaks condition 1 without changing any value: the layer reads its own
DequantizeLinear with the same scale and zero point repeated along the channel axis (a
per-axis DequantizeLinear, opset 13), which the transformer leaves alone; no other fusion
applies either (onnxruntime's QDQ selectors need a per-tensor input scale and a dequantized
weight), so the layer runs as a float Conv on the dequantized input, as written. Done on
the ModelProto because both the int8 model segcost writes and the `--mixed` variants it
measures (segcost.quant.mixed_variants.float_variant, which never builds an IR) need it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.quant.prepare import PER_CHANNEL_MIN_OPSET, model_opset

__all__ = ["PROPAGATED", "WEIGHT_QUANTIZED_OPS", "is_pinned_input", "pin_float_layers", "pin_notes"]

# Ops onnxruntime's WeightBiasQuantization quantizes (their weight is input 1, their bias input 2).
WEIGHT_QUANTIZED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})
_ACTIVATIONS = frozenset({"Relu", "Clip"})   # allowed between the layer and its QuantizeLinear (condition 2)
# Ops onnxruntime's QDQPropagationTransformer moves a DequantizeLinear forward / a QuantizeLinear back across
# (qdq_propagation.cc, CanNodePropagate): a float layer behind one of them meets condition 1 or 2 after it.
PROPAGATED = frozenset({"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice"})
PINNED_SUFFIX = "_float_input"   # the name of a layer's own DequantizeLinear: <layer>_float_input


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    """A detached copy (one that outlives clearing the repeated field holding the node)."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def is_pinned_input(scale: np.ndarray | None) -> bool:
    """Whether a DequantizeLinear with this `scale` leaves its readers in float in onnxruntime (not per-tensor)."""
    return scale is not None and scale.size > 1


def _single_reader(tensor: str, readers: dict[str, list[onnx.NodeProto]], outputs: set[str]
                   ) -> onnx.NodeProto | None:
    users = readers.get(tensor, [])
    return users[0] if len(users) == 1 and tensor not in outputs else None


def _reaches_quantize(node: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]], outputs: set[str]) -> bool:
    """Condition 2: a chain of single readers ends at a QuantizeLinear. Relu/Clip may sit on it, and the ops
    QDQPropagationTransformer (level basic, before WeightBiasQuantization) moves a QuantizeLinear back across."""
    current = node
    while len(current.output) == 1:
        user = _single_reader(current.output[0], readers, outputs)
        if user is None:
            return False
        if user.op_type == "QuantizeLinear":
            return True
        if user.op_type not in _ACTIVATIONS | PROPAGATED:
            return False
        current = user
    return False


def _dequantize_of(tensor: str, producers: dict[str, onnx.NodeProto], readers: dict[str, list[onnx.NodeProto]],
                   outputs: set[str]) -> tuple[onnx.NodeProto | None, bool]:
    """(the DequantizeLinear onnxruntime will find in front of the layer reading `tensor`, whether it reads it
    directly); across PROPAGATED ops only if QDQPropagationTransformer moves it forward (a single reader each)."""
    producer = producers.get(tensor)
    direct = True
    while producer is not None and producer.op_type in PROPAGATED and producer.input \
            and _single_reader(tensor, readers, outputs) is not None:
        tensor, direct = producer.input[0], False
        producer = producers.get(tensor)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None, direct
    if not direct and _single_reader(tensor, readers, outputs) is None:
        return None, direct   # a DequantizeLinear with other readers is not propagated
    return producer, direct


def _declared_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    infos = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    return {info.name: [dim.dim_value if dim.HasField("dim_value") else None
                        for dim in info.type.tensor_type.shape.dim]
            for info in infos if info.type.tensor_type.HasField("shape")}


def _channels(node: onnx.NodeProto, weight: onnx.TensorProto) -> tuple[int, int]:
    """(axis, length) of the layer's input 0 that its weight reads along (channels; Gemm: K)."""
    attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    dims = list(weight.dims)
    if node.op_type == "Gemm":   # A is [M, K] (transA=0) or [K, M]; K from B
        return (0 if attrs.get("transA", 0) else 1), (dims[1] if attrs.get("transB", 0) else dims[0])
    # Conv: W is [C_out, C_in/group, k...]; ConvTranspose: [C_in, C_out/group, k...]
    return 1, (dims[1] * int(attrs.get("group", 1)) if node.op_type == "Conv" else dims[0])


def _axis_and_size(channels: tuple[int, int] | None, shape: list[int | None] | None) -> tuple[int, int] | None:
    """(axis, length) to repeat the scale along: a length > 1 (length 1 is per-tensor again)."""
    if channels is not None and channels[1] > 1:
        return channels
    for index, dim in enumerate(shape or []):   # a 1-channel input: any other static dim > 1
        if dim is not None and dim > 1:
            return index, dim
    return None


def pin_float_layers(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Give each float Conv/ConvTranspose/Gemm that onnxruntime would quantize its own per-axis
    DequantizeLinear (module docstring); `model` is changed in place.

    Returns (names of the layers pinned, names of those it could not pin: opset < 13, or no
    axis of length > 1 known — these run with per-tensor int8 weights in onnxruntime).
    """
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    outputs = {output.name for output in graph.output}
    per_axis = model_opset(model) >= PER_CHANNEL_MIN_OPSET   # a DequantizeLinear's `axis` attribute
    shapes: dict[str, list[int | None]] | None = None
    pinned: list[str] = []
    replaced: set[str] = set()
    unpinned: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        weight = constants.get(node.input[1]) if len(node.input) > 1 else None
        if (node.op_type not in WEIGHT_QUANTIZED_OPS or node.domain not in ("", "ai.onnx") or weight is None
                or weight.data_type != onnx.TensorProto.FLOAT):
            nodes.append(node)
            continue
        dequantize, direct = _dequantize_of(node.input[0], producers, readers, outputs)
        scale = constants.get(dequantize.input[1]) if dequantize is not None else None
        if scale is None or is_pinned_input(numpy_helper.to_array(scale)) \
                or not _reaches_quantize(node, readers, outputs):
            nodes.append(node)
            continue
        assert dequantize is not None, "scale is only set for a DequantizeLinear"
        if shapes is None:
            shapes = _declared_shapes(model)
        where = _axis_and_size(_channels(node, weight) if direct else None, shapes.get(dequantize.output[0]))
        if where is None or not per_axis:
            unpinned.append(node.name)
            nodes.append(node)
            continue
        axis, size = where
        name = f"{node.name or node.output[0]}{PINNED_SUFFIX}"
        inputs = [dequantize.input[0]]
        for index, suffix in ((1, "_scale"), (2, "_zero_point")):
            if len(dequantize.input) > index and dequantize.input[index]:
                value = numpy_helper.to_array(constants[dequantize.input[index]]).reshape(-1)[:1]
                graph.initializer.append(numpy_helper.from_array(np.repeat(value, size), name + suffix))
                inputs.append(name + suffix)
        if _single_reader(dequantize.output[0], readers, outputs) is not None:   # its DequantizeLinear alone
            replaced.update(dequantize.input[1:])
            dequantize.CopyFrom(helper.make_node("DequantizeLinear", inputs, list(dequantize.output),
                                                 name=dequantize.name, axis=axis))
        else:   # shared (so read directly): a copy for this layer, placed just before it
            nodes.append(helper.make_node("DequantizeLinear", inputs, [name], name=name, axis=axis))
            node.input[0] = name
        pinned.append(node.name)
        nodes.append(node)
    if len(nodes) != len(graph.node):
        kept = [_copy(node) for node in nodes]
        del graph.node[:]
        graph.node.extend(kept)
    if pinned:   # a replaced per-tensor scale or zero point nothing reads any more
        read = {tensor for node in graph.node for tensor in node.input}
        for index in reversed(range(len(graph.initializer))):
            if graph.initializer[index].name in replaced and graph.initializer[index].name not in read:
                del graph.initializer[index]
    return pinned, unpinned


def pin_notes(pinned: list[str], unpinned: list[str]) -> list[str]:
    """Report lines for segcost.quant.float_layers.pin_float_layers' result."""
    notes = []
    if pinned:
        notes.append(f"{len(pinned)} float layer(s) between int8 layers read their own per-axis DequantizeLinear, so "
                     "that onnxruntime runs them in float (its WeightBiasQuantization would quantize their weights "
                     f"per tensor): {', '.join(pinned)}")
    if unpinned:
        notes.append(f"{len(unpinned)} float layer(s) between int8 layers run with per-tensor int8 weights in "
                     f"onnxruntime (WeightBiasQuantization; opset < 13 or no channel axis known): "
                     f"{', '.join(unpinned)}")
    return notes

"""Make a float model quantizable by onnxruntime's QDQ quantizer, and undo it afterwards.

* opset < 13: per-channel DequantizeLinear (the `axis` attribute) needs opset 13. The model
  is upgraded with `onnx.version_converter` (the ONNX project's own converter); if that
  fails, weights fall back to per-tensor scales, with a note.
* float16 models: `to_float32` makes the float32 copy that is quantized (onnxruntime's CPU
  int8 kernels and fusions take float32 scales); `with_float16_io` gives the int8 model the
  float16 inputs and outputs back, through Casts.
* grouped ConvTranspose (weights [C_in, C_out/group, kH, kW]): per-channel scales run along
  axis 1, so there are C_out/group of them and output channel c uses scale[c mod
  C_out/group]. onnxruntime computes the bias scale as s_x·s_w (C_out/group values) and
  fails on the C_out biases (a numpy broadcast error). The bias is detached before the
  quantizer runs and added back after as int32 with C_out scales s_x·tile(s_w, group)
  (ONNX ConvTranspose: output channel c = g·(C_out/group) + j uses W[:, j] of group g).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from segcost.errors import InputError
from segcost.ir import Graph, Initializer, Node

PER_CHANNEL_MIN_OPSET = 13


@dataclass
class Prepared:
    model: onnx.ModelProto
    per_channel: bool
    detached_biases: dict[str, str] = field(default_factory=dict)   # ConvTranspose node name -> bias initializer
    notes: list[str] = field(default_factory=list)


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset version (0 when it imports none)."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def prepare_for_quantizer(model: onnx.ModelProto, per_channel: bool) -> Prepared:
    """Return a copy of `model` that onnxruntime's quantizer handles, and what to restore after."""
    prepared = Prepared(model, per_channel)
    if per_channel and model_opset(model) < PER_CHANNEL_MIN_OPSET:
        from onnx import version_converter

        try:
            prepared.model = version_converter.convert_version(model, PER_CHANNEL_MIN_OPSET)
            onnx.checker.check_model(prepared.model)
            prepared.notes.append(f"opset {model_opset(model)} upgraded to {PER_CHANNEL_MIN_OPSET} "
                                  "(per-channel DequantizeLinear needs 13)")
        except Exception as error:  # noqa: BLE001 - the converter raises many types for ops it cannot map
            prepared.per_channel = False
            prepared.notes.append(f"opset {model_opset(model)} could not be upgraded to {PER_CHANNEL_MIN_OPSET} "
                                  f"({type(error).__name__}); weights use per-tensor scales")
    if prepared.per_channel:
        copy = None
        for index, node in enumerate(prepared.model.graph.node):
            group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
            if node.op_type != "ConvTranspose" or group == 1 or len(node.input) < 3 or not node.input[2]:
                continue
            if copy is None:
                copy = onnx.ModelProto()
                copy.CopyFrom(prepared.model)
            target = copy.graph.node[index]
            prepared.detached_biases[target.name] = target.input[2]
            del target.input[2]
        if copy is not None:
            prepared.model = copy
    return prepared


def reattach_biases(graph: Graph, prepared: Prepared, float_model: onnx.ModelProto) -> int:
    """Give each detached ConvTranspose its bias back, as int32 with C_out scales; returns the count."""
    constants = {init.name: init for init in float_model.graph.initializer}
    by_name = {graph.node(key).name: key for key in graph.dag}
    restored = 0
    for node_name, bias_name in prepared.detached_biases.items():
        key = by_name.get(node_name)
        if key is None or bias_name not in constants:
            continue
        node = graph.node(key)
        x_scale, w_scale = (_dq_scale(graph, tensor) for tensor in node.inputs[:2])
        bias = numpy_helper.to_array(constants[bias_name]).astype(np.float64)
        if x_scale is None or w_scale is None:
            graph.initializers[bias_name] = Initializer.from_array(bias_name, bias.astype(np.float32))
            graph.append_input(key, bias_name)  # the weight was not quantized: bias stays float
            restored += 1
            continue
        scale = (float(x_scale.reshape(-1)[0]) * np.resize(w_scale.astype(np.float64).reshape(-1), bias.size))
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        quantized = np.clip(np.round(bias / scale.astype(np.float64)), -2**31, 2**31 - 1).astype(np.int32)
        names = (f"{bias_name}_quantized", f"{bias_name}_quantized_scale", f"{bias_name}_quantized_zero_point")
        arrays: tuple[np.ndarray, ...] = (quantized, scale, np.zeros(bias.size, np.int32))
        for name, array in zip(names, arrays):
            graph.initializers[name] = Initializer.from_array(name, array)
        graph.add_node(Node(name=f"{bias_name}_DequantizeLinear", op_type="DequantizeLinear", inputs=list(names),
                            outputs=[bias_name], attrs={"axis": 0}, attr_types={"axis": onnx.AttributeProto.INT}))
        graph.append_input(key, bias_name)
        restored += 1
    return restored


def _dq_scale(graph: Graph, tensor: str) -> np.ndarray | None:
    producer = graph.producer(tensor)
    if producer is None or graph.node(producer).op_type != "DequantizeLinear":
        return None
    scale = graph.initializers.get(graph.node(producer).inputs[1])
    return None if scale is None else scale.array


FLOAT16, FLOAT = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
_FLOAT32_SUFFIX = "_float32"


def is_float16(model: onnx.ModelProto) -> bool:
    """True when the model computes in float16 (a float16 graph input or initializer)."""
    return any(value.type.tensor_type.elem_type == FLOAT16 for value in model.graph.input) or any(
        init.data_type == FLOAT16 for init in model.graph.initializer)


def _tensor_to_float32(tensor: onnx.TensorProto) -> None:
    if tensor.data_type == FLOAT16:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))


def to_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a float16 model computing in float32: initializers, Constant values, Cast targets,
    `dtype` attributes and the declared types of inputs, outputs and value_info.

    Raises InputError for a graph with subgraphs (If/Loop/Scan): not converted here; export
    the model in float32 (PyTorch: model.float() before torch.onnx.export) and quantize that.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    for init in graph.initializer:
        _tensor_to_float32(init)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT
    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise InputError(f"int8 of a float16 model: node {node.name!r} ({node.op_type}) has a subgraph, "
                                 "which segcost does not convert to float32; export the model in float32 "
                                 "(PyTorch: model.float() before torch.onnx.export) and quantize that")
            if attr.type == onnx.AttributeProto.TENSOR:
                _tensor_to_float32(attr.t)
            elif attr.type == onnx.AttributeProto.INT and attr.name in ("to", "dtype") and attr.i == FLOAT16:
                attr.i = FLOAT
    return copy


def with_float16_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a float32 (int8 QDQ) model whose float inputs and outputs are float16, through Casts."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inputs = {value.name for value in graph.input if value.type.tensor_type.elem_type == FLOAT}
    outputs = {value.name for value in graph.output if value.type.tensor_type.elem_type == FLOAT} - inputs
    for node in graph.node:
        node.input[:] = [name + _FLOAT32_SUFFIX if name in inputs else name for name in node.input]
        node.output[:] = [name + _FLOAT32_SUFFIX if name in outputs else name for name in node.output]
    front = [onnx.helper.make_node("Cast", [name], [name + _FLOAT32_SUFFIX], name=f"{name}_to_float32", to=FLOAT)
             for name in sorted(inputs)]
    back = [onnx.helper.make_node("Cast", [name + _FLOAT32_SUFFIX], [name], name=f"{name}_to_float16", to=FLOAT16)
            for name in sorted(outputs)]
    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    for value in [*graph.input, *graph.output]:
        if value.name in inputs | outputs:
            value.type.tensor_type.elem_type = FLOAT16
    for value in graph.value_info:
        if value.name in inputs | outputs:
            value.name = value.name + _FLOAT32_SUFFIX
    return copy

"""What the int8 model costs: the fused float graph with the int8 graph's storage types.

Analysing the QDQ graph itself overstates an int8 model: every activation is a float
tensor between a DequantizeLinear and its consumer, and every scale and zero point is an
initializer counted as a parameter. A runtime that fuses QDQ (onnxruntime's QLinearConv,
TIDL) stores the quantized activations at 1 byte per element and uses the scales only as
per-layer constants. So the int8 analysis is the float graph's (same layers, same exact
MACs) with the types the int8 graph gives each tensor:

* activations that have a QuantizeLinear → the zero point's type (1 byte per element);
* weights that the quantizer stored as integers (``<name>_quantized``) → that type
  (int8 weights, int32 biases); params are the same element counts as in float: the view
  lists them in ``info.stored_weights``, so the analyzer reads them as the float weights
  they stand for (an integer constant is otherwise a param only as a quantized weight
  input, analyzer.weights.is_weight);
* everything left in float (excluded layers, the output tail) keeps its float size.
"""

from __future__ import annotations

import copy
import dataclasses

from segcost.ir import Graph, Initializer, TensorInfo

QUANTIZED_SUFFIX = "_quantized"          # onnxruntime's name for an integer copy of a weight
RENAMED_OUTPUT_SUFFIX = "_QuantizeLinear_Input"  # onnxruntime renames a quantized graph output's producer


def int8_view(float_graph: Graph, int8_graph: Graph) -> Graph:
    """A shallow copy of `float_graph` whose tensors carry the storage types of `int8_graph`.

    Only `tensors`, `initializers` and `info` are new; nodes and edges are shared (do not mutate).
    """
    view = copy.copy(float_graph)
    view.tensors = dict(float_graph.tensors)
    view.initializers = dict(float_graph.initializers)
    for node in int8_graph.dag.nodes.values():
        node = node["node"]
        if node.op_type != "QuantizeLinear" or node.inputs[0] in int8_graph.initializers or len(node.inputs) < 3:
            continue
        zero = int8_graph.initializers.get(node.inputs[2])
        tensor = node.inputs[0]
        if tensor.endswith(RENAMED_OUTPUT_SUFFIX) and tensor not in view.tensors:
            tensor = tensor[: -len(RENAMED_OUTPUT_SUFFIX)]
        info = view.tensors.get(tensor)
        if zero is not None and info is not None:
            view.tensors[tensor] = TensorInfo(tensor, zero.dtype, info.shape)
    stored = set(float_graph.info.stored_weights)
    for name, init in int8_graph.initializers.items():
        original = name[: -len(QUANTIZED_SUFFIX)] if name.endswith(QUANTIZED_SUFFIX) else None
        if original is None or original not in view.initializers:
            continue
        stored.add(original)
        view.initializers[original] = Initializer(original, init.dtype, view.initializers[original].shape,
                                                  array=None)
        if original in view.tensors:
            view.tensors[original] = TensorInfo(original, init.dtype, view.tensors[original].shape)
    view.info = dataclasses.replace(float_graph.info, stored_weights=frozenset(stored))
    return view

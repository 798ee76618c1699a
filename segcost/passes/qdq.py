"""Passes over a QDQ (QuantizeLinear/DequantizeLinear) graph: power-of-two scales, shared Concat scales.

* `PowerOfTwoScalesPass` — first-generation TIDL devices need every scale to be 2^k.
  Scales are rounded *up* (s′ = 2^⌈log₂ s⌉ ≥ s) so no value that fitted before saturates;
  constant weights are requantized to the new scale, and every int32 bias onnxruntime
  quantizes (Conv, ConvTranspose, Gemm and the normalizations — BatchNormalization,
  InstanceNormalization, LayerNormalization: operators/conv.py, gemm.py, norm.py, all with
  scale = s_x·s_w of inputs 0 and 1) is requantized to the product of its new input and
  weight scales. Any other constant behind a DequantizeLinear is requantized to its own
  scale rounded up, so that every scale of the written graph is 2^k (`non_pow2_scales`
  checks it).
* `ShareConcatScalesPass` (segcost.passes.qdq_share) — Concat scale sharing as a
  whole-graph constraint problem.
"""

from __future__ import annotations

import numpy as np

from segcost.ir import Graph, Initializer
from segcost.passes._infra import PassBase, PassResult

__all__ = ["PowerOfTwoScalesPass", "non_pow2_scales", "requantize_biases"]

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"
# Ops onnxruntime's QDQ quantizer gives an int32 bias at input 2 with scale s_x·s_w of inputs 0 and 1.
BIAS_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "BatchNormalization", "InstanceNormalization",
                      "LayerNormalization"})
_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int32): (-2**31, 2**31 - 1)}


def _nodes(graph: Graph, op_type: str) -> list[str]:
    return [key for key in graph.topological_order() if graph.node(key).op_type == op_type]


def _constant(graph: Graph, tensor: str) -> np.ndarray | None:
    init = graph.initializers.get(tensor)
    return None if init is None else init.array


def _set_constant(graph: Graph, name: str, array: np.ndarray) -> None:
    graph.initializers[name] = Initializer.from_array(name, np.asarray(array))


def pow2_ceil(scale: np.ndarray) -> np.ndarray:
    return np.exp2(np.ceil(np.log2(scale.astype(np.float64)))).astype(scale.dtype)


def _is_pow2(scale: np.ndarray) -> bool:
    exponent = np.log2(scale.astype(np.float64))
    return bool(np.all(exponent == np.round(exponent)))


def _requantize(values: np.ndarray, zero_point: np.ndarray | None, old_scale: np.ndarray, new_scale: np.ndarray,
                axis: int) -> np.ndarray:
    shape = [1] * values.ndim
    if old_scale.ndim == 1 and old_scale.size > 1:
        shape[axis] = old_scale.size
    old, new = old_scale.reshape(shape).astype(np.float64), new_scale.reshape(shape).astype(np.float64)
    zp = zero_point.reshape(shape).astype(np.float64) if zero_point is not None else 0.0
    real = (values.astype(np.float64) - zp) * old
    low, high = _INT_RANGES[values.dtype]
    return np.clip(np.round(real / new) + zp, low, high).astype(values.dtype)


def requantize_biases(graph: Graph) -> int:
    """Set each int32 bias's scale to s_x·s_w of its BIAS_OPS node (after scale changes); returns the count."""
    changed = 0
    for key in graph.topological_order():
        node = graph.node(key)
        if node.op_type not in BIAS_OPS or len(node.inputs) < 3 or not node.inputs[2]:
            continue
        producers = [graph.producer(tensor) for tensor in node.inputs[:3]]
        dequantizers = [graph.node(producer) for producer in producers if producer is not None]
        if len(dequantizers) != 3 or any(dq.op_type != DEQUANTIZE for dq in dequantizers):
            continue
        x_dq, w_dq, b_dq = dequantizers
        bias, bias_scale = _constant(graph, b_dq.inputs[0]), _constant(graph, b_dq.inputs[1])
        x_scale, w_scale = _constant(graph, x_dq.inputs[1]), _constant(graph, w_dq.inputs[1])
        if bias is None or bias_scale is None or x_scale is None or w_scale is None or bias.dtype != np.int32:
            continue
        product = x_scale.astype(np.float64) * w_scale.astype(np.float64)
        if product.size != bias_scale.size:
            continue  # a layout this pass does not know; left as the quantizer wrote it
        wanted = product.astype(bias_scale.dtype).reshape(bias_scale.shape)
        if np.array_equal(wanted, bias_scale):
            continue
        bias_zero = _constant(graph, b_dq.inputs[2]) if len(b_dq.inputs) > 2 and b_dq.inputs[2] else None
        _set_constant(graph, b_dq.inputs[0], _requantize(bias, bias_zero, bias_scale, wanted, 0))
        _set_constant(graph, b_dq.inputs[1], wanted)
        changed += 1
    return changed


class PowerOfTwoScalesPass(PassBase):
    """Round every Q/DQ scale up to a power of two, requantizing constant weights and biases."""

    name = "pow2-scales"

    def call(self, graph: Graph) -> PassResult:
        rounded: set[str] = set()
        requantized = 0
        before: dict[str, np.ndarray] = {}   # scales as they were: constants sharing one are all requantized from it
        for key in _nodes(graph, DEQUANTIZE):
            node = graph.node(key)
            values = _constant(graph, node.inputs[0])
            scale = before.get(node.inputs[1], _constant(graph, node.inputs[1]))
            if values is None or scale is None or values.dtype == np.int32 or _is_pow2(scale):
                continue  # activations are handled through their scale initializers below; biases last
            before.setdefault(node.inputs[1], scale)
            zero_point = _constant(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
            new_scale = pow2_ceil(scale)
            _set_constant(graph, node.inputs[0], _requantize(values, zero_point, scale, new_scale,
                                                             int(node.attrs.get("axis", 1))))
            _set_constant(graph, node.inputs[1], new_scale)
            rounded.add(node.inputs[1])
            requantized += 1
        for op_type in (QUANTIZE, DEQUANTIZE):
            for key in _nodes(graph, op_type):
                node = graph.node(key)
                scale_name = node.inputs[1]
                scale = _constant(graph, scale_name)
                if scale is None or scale_name in rounded or _is_pow2(scale):
                    continue
                if op_type == DEQUANTIZE and _constant(graph, node.inputs[0]) is not None:
                    continue  # a constant (bias) DQ: requantized with its Conv below
                _set_constant(graph, scale_name, pow2_ceil(scale))
                rounded.add(scale_name)
        biases = requantize_biases(graph)
        others = 0
        left: dict[str, np.ndarray] = {}   # the scales as they were, for constants sharing one
        for key in _nodes(graph, DEQUANTIZE):   # constants no bias rule covers: their own scale, rounded up
            node = graph.node(key)
            values = _constant(graph, node.inputs[0])
            scale = left.get(node.inputs[1], _constant(graph, node.inputs[1]))
            if values is None or scale is None or _is_pow2(scale):
                continue
            left.setdefault(node.inputs[1], scale)
            zero_point = _constant(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
            _set_constant(graph, node.inputs[0], _requantize(values, zero_point, scale, pow2_ceil(scale),
                                                             int(node.attrs.get("axis", 1))))
            _set_constant(graph, node.inputs[1], pow2_ceil(scale))
            others += 1
        modified = bool(rounded or biases or others)
        other = f", {others} other constants" if others else ""
        notes = [f"{len(rounded)} scales rounded up to powers of two, {requantized} weights{other} and {biases} biases "
                 "requantized"] if modified else []
        return PassResult(graph, modified, notes)


def non_pow2_scales(graph: Graph) -> list[str]:
    """One message per QuantizeLinear/DequantizeLinear whose constant scale is not a power of two."""
    problems = []
    for op_type in (QUANTIZE, DEQUANTIZE):
        for key in _nodes(graph, op_type):
            node = graph.node(key)
            scale = _constant(graph, node.inputs[1])
            if scale is not None and not _is_pow2(scale):
                problems.append(f"{op_type} {node.name or key} has scale {float(scale.ravel()[0]):.6g}, not a power "
                                "of two (--pow2-scales)")
    return problems

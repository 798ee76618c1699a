"""QDQ model variants and SQNR measurements for `--mixed` (segcost.quant.mixed).

* `float_variant` — the full int8 QDQ model edited as onnxruntime's quantizer writes it with
  some nodes excluded (`nodes_to_exclude`), so that many candidates can be measured without
  re-running calibration and quantization for each (the ranges stay the calibration's).
* `SQNRRunner` — output SQNR of such variants against the float model on fixed samples
  (float outputs computed once), and the first pass: each quantization point's own SQNR
  and its SQNR accumulated from the model input, in one int8 and one float run per
  sample and memory chunk.

SQNR = 10·log10(Σf² / Σ(f − q)²) dB over all elements, outputs and samples; inf when exact;
NaN/±Inf as segcost.quant.nonfinite.finite_pairs rules (−∞ when a position disagrees on them).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.quant.float_layers import pin_float_layers
from segcost.quant.footprint import RENAMED_OUTPUT_SUFFIX
from segcost.quant.nonfinite import finite_pairs
from segcost.quant.ranges import chunks_by_bytes, quiet_session, with_outputs

PER_RUN_BYTES = 256 << 20    # first-pass tensors returned by one onnxruntime run
WEIGHT_SUFFIX = "_DequantizeLinear_Output"   # onnxruntime's name for a dequantized weight
Q, DQ = "QuantizeLinear", "DequantizeLinear"
REMOVABLE = ("Relu", "Clip")   # onnxruntime's QDQRemovableActivation: folded into the QuantizeLinear's range


def float_variant(int8_model: onnx.ModelProto, float_model: onnx.ModelProto, live: set[str]) -> onnx.ModelProto:
    """The QDQ model with every node outside `live` (node names still in int8) computing in float.

    As onnxruntime's quantizer writes a model whose other nodes are excluded: a weight or
    bias read only by float nodes is the float initializer; an activation stays quantized
    (all its readers see the dequantized values) while its producer or any reader is live,
    else its DequantizeLinear becomes an Identity of the float tensor — or, where the
    quantizer removed a Relu/Clip whose clipping the QuantizeLinear did (asymmetric
    activations: the producer now writes the activation's output name), that activation.
    A float Conv/Gemm between quantized tensors reads its own per-axis DequantizeLinear
    (segcost.quant.float_layers), as in the model segcost writes.
    """
    float_weights = {init.name: init for init in float_model.graph.initializer}
    float_producers = {output: node for node in float_model.graph.node for output in node.output}
    producers = {output: node for node in int8_model.graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in int8_model.graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    constants = {init.name for init in int8_model.graph.initializer}

    def real_readers(tensor: str) -> set[str]:
        names = set()
        for node in readers.get(tensor, []):
            if node.op_type == Q:    # a Concat edge requantized to its Concat's scale
                names |= {name for dq in readers.get(node.output[0], []) for name in real_readers(dq.output[0])}
            elif node.op_type != DQ:
                names.add(node.name)
        return names

    nodes, added = [], []
    for node in int8_model.graph.node:
        if node.op_type == DQ and node.input[0] in constants:
            users = readers.get(node.output[0], [])
            weight = float_weights.get(node.output[0]) or float_weights.get(node.output[0].removesuffix(WEIGHT_SUFFIX))
            if users and weight is not None and not {user.name for user in users} & live:
                copy = onnx.TensorProto()
                copy.CopyFrom(weight)
                copy.name = node.output[0]
                added.append(copy)
                continue
        elif node.op_type == DQ and (quantize := producers.get(node.input[0])) is not None and quantize.op_type == Q:
            source = producers.get(quantize.input[0])
            adjacent = real_readers(node.output[0])
            if source is not None and source.op_type not in (Q, DQ):
                adjacent.add(source.name)
            if not adjacent & live:
                tensor = quantize.input[0]
                # a graph output's producer writes `<output>_QuantizeLinear_Input` (footprint.RENAMED_OUTPUT_SUFFIX)
                removed = float_producers.get(tensor) or float_producers.get(tensor.removesuffix(RENAMED_OUTPUT_SUFFIX))
                if removed is not None and removed.op_type in REMOVABLE and source is not None \
                        and source.op_type != removed.op_type:
                    activation = onnx.NodeProto()
                    activation.CopyFrom(removed)
                    activation.input[0] = tensor
                    del activation.output[:]
                    activation.output.extend(node.output)
                    activation.name = node.name
                    nodes.append(activation)
                    added += [float_weights[name] for name in removed.input[1:] if name in float_weights]
                else:
                    nodes.append(helper.make_node("Identity", [tensor], list(node.output), name=node.name))
                continue
        nodes.append(node)
    model = onnx.ModelProto()
    model.CopyFrom(int8_model)
    del model.graph.node[:]
    model.graph.node.extend(_without_dead(nodes, {output.name for output in model.graph.output}))
    present = {init.name for init in model.graph.initializer}
    model.graph.initializer.extend({init.name: init for init in added if init.name not in present}.values())
    pin_float_layers(model)   # as quantize_graph writes them: float in onnxruntime too
    return model


def _without_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """`nodes` minus the ones (QuantizeLinear left behind by float_variant ...) whose results nothing reads."""
    while True:
        read = outputs | {tensor for node in nodes for tensor in node.input}
        kept = [node for node in nodes if any(output in read for output in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


class SQNRRunner:
    """Output SQNR of model variants against the float model's outputs on fixed samples (cached once)."""

    def __init__(self, float_model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.float_model = float_model
        self.reference = [quiet_session(float_model).run(None, feed) for feed in feeds]
        self.runs = 0
        self.mismatches = 0   # of the last sqnr(): output positions where float and int8 disagree on NaN/±Inf

    def sqnr(self, model: onnx.ModelProto) -> float:
        """Output SQNR (dB) of `model` against the float model; −∞ when `self.mismatches` > 0 (finite_pairs)."""
        session = quiet_session(model)
        signal = noise = 0.0
        mismatches = 0
        for feed, reference in zip(self.feeds, self.reference):
            for want, got in zip(reference, session.run(None, feed)):
                want, got, bad = finite_pairs(want.astype(np.float64), got.astype(np.float64))
                signal += float(np.sum(want ** 2))
                noise += float(np.sum((want - got) ** 2))
                mismatches += bad
        self.runs += 1
        self.mismatches = mismatches
        return -math.inf if mismatches else db(signal, noise)

    def point_sqnr(self, model: onnx.ModelProto, pairs: list[tuple[str, str]], sizes: dict[str, int],
                   activations: dict) -> tuple[dict[str, float], dict[str, float]]:
        """First pass: ({tensor: local SQNR}, {tensor: accumulated SQNR}) of each (float tensor, dequantized twin).

        Local: the twin against the tensor in the same int8 run (the rounding and clipping of
        that QuantizeLinear alone). Accumulated: the twin against the float model's tensor
        (everything upstream included). `activations` maps a tensor to the Relu/Clip the
        quantizer folded into its QuantizeLinear (a function of the array), applied to the
        int8 run's tensor before the local comparison.
        """
        local: dict[str, float] = {}
        accumulated: dict[str, float] = {}
        for chunk in chunks_by_bytes(pairs, lambda pair: 3 * sizes.get(pair[0], 64 << 20), PER_RUN_BYTES):
            int8_names = list(dict.fromkeys(name for pair in chunk for name in pair))
            float_names = list(dict.fromkeys(tensor.removesuffix(RENAMED_OUTPUT_SUFFIX) for tensor, _ in chunk))
            int8_session = quiet_session(with_outputs(model, int8_names))
            float_session = quiet_session(with_outputs(self.float_model, float_names))
            totals = {tensor: [0.0, 0.0, 0.0, 0.0, 0, 0] for tensor, _ in chunk}   # + local, accumulated mismatches
            int8_fetch = [name for name in int8_names if name not in self.feeds[0]]
            float_fetch = [name for name in float_names if name not in self.feeds[0]]
            for feed in self.feeds:
                values = {**dict(zip(int8_fetch, int8_session.run(int8_fetch, feed))), **feed}
                exact = {**dict(zip(float_fetch, float_session.run(float_fetch, feed))), **feed}
                for tensor, twin in chunk:
                    own = values[tensor].astype(np.float64)
                    own = activations[tensor](own) if tensor in activations else own
                    reference = exact[tensor.removesuffix(RENAMED_OUTPUT_SUFFIX)].astype(np.float64)
                    total = totals[tensor]
                    twin_value = values[twin].astype(np.float64)
                    own, own_twin, own_bad = finite_pairs(own, twin_value)
                    reference, reference_twin, reference_bad = finite_pairs(reference, twin_value)
                    total[0] += float(np.sum(own ** 2))
                    total[1] += float(np.sum((own - own_twin) ** 2))
                    total[2] += float(np.sum(reference ** 2))
                    total[3] += float(np.sum((reference - reference_twin) ** 2))
                    total[4] += own_bad
                    total[5] += reference_bad
            for tensor, total in totals.items():
                name = tensor.removesuffix(RENAMED_OUTPUT_SUFFIX)
                local[name] = -math.inf if total[4] else db(total[0], total[1])
                accumulated[name] = -math.inf if total[5] else db(total[2], total[3])
        return local, accumulated


def db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else 0.0


def weight_sqnr(model: onnx.ModelProto, float_weights: dict[str, onnx.TensorProto]) -> dict[str, float]:
    """{dequantized weight tensor: SQNR of (q − zero point)·scale against the float weight}."""
    constants = {init.name: init for init in model.graph.initializer}
    result = {}
    for node in model.graph.node:
        if node.op_type != DQ or node.input[0] not in constants or node.input[1] not in constants:
            continue
        weight = float_weights.get(node.output[0]) or float_weights.get(node.output[0].removesuffix(WEIGHT_SUFFIX))
        if weight is None:
            continue
        values = numpy_helper.to_array(constants[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(constants[node.input[1]]).astype(np.float64)
        zero = (numpy_helper.to_array(constants[node.input[2]]).astype(np.float64)
                if len(node.input) > 2 and node.input[2] in constants else np.zeros_like(scale))
        shape = [1] * values.ndim
        if scale.size > 1:
            axis = next((attr.i for attr in node.attribute if attr.name == "axis"), 1)
            shape[axis] = scale.size
        exact = numpy_helper.to_array(weight).astype(np.float64)
        dequantized = (values - zero.reshape(shape)) * scale.reshape(shape)
        result[node.output[0]] = db(float(np.sum(exact ** 2)), float(np.sum((exact - dequantized) ** 2)))
    return result


def folded_activations(int8_model: onnx.ModelProto, float_model: onnx.ModelProto) -> dict:
    """{tensor: clip function} for each Relu/Clip the quantizer removed (its producer now writes its output name)."""
    constants = {init.name: numpy_helper.to_array(init) for init in float_model.graph.initializer}
    producers = {output: node.op_type for node in int8_model.graph.node for output in node.output}
    result = {}
    for node in float_model.graph.node:
        if node.op_type not in REMOVABLE or producers.get(node.output[0], node.op_type) == node.op_type:
            continue
        attrs = {attr.name: attr.f for attr in node.attribute}
        low = float(constants[node.input[1]]) if len(node.input) > 1 and node.input[1] in constants else \
            attrs.get("min", -math.inf)
        high = float(constants[node.input[2]]) if len(node.input) > 2 and node.input[2] in constants else \
            attrs.get("max", math.inf)
        low = 0.0 if node.op_type == "Relu" else low
        result[node.output[0]] = lambda array, low=low, high=high: np.clip(array, low, high)
    return result


def point_pairs(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(float tensor, its dequantized twin) for each activation quantized straight from a float tensor."""
    producers = {output: node for node in model.graph.node for output in node.output}
    constants = {init.name for init in model.graph.initializer}
    pairs = []
    for node in model.graph.node:
        quantize = producers.get(node.input[0]) if node.op_type == DQ else None
        if quantize is None or quantize.op_type != Q or quantize.input[0] in constants:
            continue
        source = producers.get(quantize.input[0])
        if source is None or source.op_type != DQ:
            pairs.append((quantize.input[0], node.output[0]))
    return pairs

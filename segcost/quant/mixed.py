"""`optimize --int8 --mixed`: keep in float the layers where int8 loses speed or accuracy.

Speed: segcost.quant.mixed_cost predicts each unit's latency in fp32 and int8 on the target
and the Q/DQ (or hand-over) cost where float and int8 layers meet; the fastest assignment
is a minimum cut. Units it puts in float are kept for speed.

Accuracy: how much the model output's SQNR (10·log10(Σf² / Σ(f − q)²) dB against the
float model, summed over all outputs and samples) rises when one unit is left in float
while everything else stays as chosen ("leave one out"). This is picked over quantizing
one layer at a time: both cost one forward run per candidate and sample, but leave-one-out
measures the very decision being made (this layer float, the rest int8) with all the
interactions it has in the final model, where one-at-a-time measures a layer's noise
with a float rest that will not exist. A leave-one-out variant is not re-quantized: it is
the full int8 QDQ model edited as onnxruntime's quantizer writes it with those nodes
excluded (`float_variant`), so the ranges stay those of the calibration.

Bounded work. A first pass ranks all units at once from one int8 run per sample: the
SQNR of each quantization point on its own (each activation's QuantizeLinear→
DequantizeLinear against its own input, and each dequantized weight against the float
weight); a unit scores the worst point it touches. Only the `candidates` lowest-scoring
units get a leave-one-out run. Then, in order of preference (a group that reaches the goal
alone and adds the least predicted latency first, then the most dB gained per ms added),
units are added to the float set (the cut re-solved around them; one confirming run each) until the output SQNR reaches
`min_sqnr_db` or `max_float_layers` units are kept for accuracy; a unit whose gain does
not survive beside the others (< MIN_GAIN_DB) is skipped. With S = min(calibration
samples, SENSITIVITY_SAMPLES) that is S·(1 float + c first-pass + 1 + K + B) runs, c the
first pass's memory chunks, K ≤ candidates, B ≤ max_float_layers, whatever the model's
size; afterwards the kept layers are quantized for real (one more calibration) and the
accuracy report compares that model with float on the evaluation data.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.errors import InputError
from segcost.ir import Graph
from segcost.quant.footprint import RENAMED_OUTPUT_SUFFIX
from segcost.quant.mixed_cost import PrecisionCosts, fastest_float_units, precision_costs
from segcost.quant.ranges import chunks_by_bytes, float32_bytes

UNQUANTIZED_DB = 200.0       # the SQNR the first pass gives a tensor no QuantizeLinear touches
MIN_GAIN_DB = 0.5            # a float layer must raise the output SQNR at least this much to be kept: smaller
                             # gains are within the spread between sample sets (smp Unet-R18 int8: 29.8 dB on
                             # 8 calibration samples, 29.3 dB on 16 evaluation samples)
MIN_EXTRA_MS = 1e-3         # a group's added latency counts as at least 1 µs when ranking dB per ms
SENSITIVITY_SAMPLES = 8      # calibration samples the sensitivity runs use (at most)
PER_RUN_BYTES = 256 << 20    # first-pass tensors returned by one onnxruntime run
WEIGHT_SUFFIX = "_DequantizeLinear_Output"   # onnxruntime's name for a dequantized weight
Q, DQ = "QuantizeLinear", "DequantizeLinear"
REMOVABLE = ("Relu", "Clip")   # onnxruntime's QDQRemovableActivation: folded into the QuantizeLinear's range


@dataclass
class MixedOptions:
    """`--mixed` options: the output-SQNR goal (dB), the budget of layers kept for accuracy, the candidates."""

    min_sqnr_db: float = 30.0
    max_float_layers: int = 8
    candidates: int = 12

    def validate(self) -> None:
        """Raise InputError for a non-finite goal or a negative budget/candidate count."""
        if not math.isfinite(self.min_sqnr_db):
            raise InputError(f"--min-sqnr must be a finite number of dB, got {self.min_sqnr_db}")
        if self.max_float_layers < 0:
            raise InputError(f"--max-float-layers must be >= 0, got {self.max_float_layers}")
        if self.candidates < 1:
            raise InputError(f"the sensitivity analysis needs at least 1 candidate, got {self.candidates}")


@dataclass
class KeptLayer:
    """A layer kept in float: why, its predicted latency both ways (µs) and, for accuracy, the SQNR it buys (dB).

    `latency_us` is what keeping it in float costs in the mixed model, Q/DQ or hand-overs
    included (negative: float is faster).
    """

    name: str
    op_type: str
    reason: str             # "speed" or "accuracy"
    int8_us: float
    fp32_us: float
    latency_us: float
    sqnr_gain_db: float | None = None                       # of the group it was kept with
    members: list[str] = field(default_factory=list)        # node names (the unit and its fused activations)
    kept_with: list[str] = field(default_factory=list)      # the other layers of its group (accuracy)


@dataclass
class MixedResult:
    """What --mixed decided and what it predicts and measured (SQNR on the calibration samples it used)."""

    profile: str
    min_sqnr_db: float
    max_float_layers: int
    units: int
    kept: list[KeptLayer]
    predicted_fp32_ms: float
    predicted_int8_ms: float
    predicted_mixed_ms: float
    calib_sqnr_int8_db: float
    calib_sqnr_mixed_db: float
    samples: int
    candidates_evaluated: int
    analysis_cpu_s: float
    int8_outputs: list = field(default_factory=list)   # accuracy.OutputAgreement of the full int8 model (eval data)
    notes: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        return self.calib_sqnr_mixed_db >= self.min_sqnr_db

    @property
    def exclude_nodes(self) -> list[str]:
        return [member for layer in self.kept for member in layer.members]


def float_variant(int8_model: onnx.ModelProto, float_model: onnx.ModelProto, live: set[str]) -> onnx.ModelProto:
    """The QDQ model with every node outside `live` (node names still in int8) computing in float.

    As onnxruntime's quantizer writes a model whose other nodes are excluded: a weight or
    bias read only by float nodes is the float initializer; an activation stays quantized
    (all its readers see the dequantized values) while its producer or any reader is live,
    else its DequantizeLinear becomes an Identity of the float tensor — or, where the
    quantizer removed a Relu/Clip whose clipping the QuantizeLinear did (asymmetric
    activations: the producer now writes the activation's output name), that activation.
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
                removed = float_producers.get(tensor)
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
    return model


def _without_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """`nodes` minus the ones (QuantizeLinear left behind by float_variant ...) whose results nothing reads."""
    while True:
        read = outputs | {tensor for node in nodes for tensor in node.input}
        kept = [node for node in nodes if any(output in read for output in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


class _Runner:
    """Output SQNR of model variants against the float model's outputs on fixed samples (cached once)."""

    def __init__(self, float_model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.float_model = float_model
        self.reference = [self._session(float_model).run(None, feed) for feed in feeds]
        self.runs = 0

    @staticmethod
    def _session(model: onnx.ModelProto):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def sqnr(self, model: onnx.ModelProto) -> float:
        session = self._session(model)
        signal = noise = 0.0
        for feed, reference in zip(self.feeds, self.reference):
            for want, got in zip(reference, session.run(None, feed)):
                want = want.astype(np.float64)
                signal += float(np.sum(want ** 2))
                noise += float(np.sum((want - got) ** 2))
        self.runs += 1
        return _db(signal, noise)

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
            int8_session = self._session(_with_outputs(model, int8_names))
            float_session = self._session(_with_outputs(self.float_model, float_names))
            totals = {tensor: [0.0, 0.0, 0.0, 0.0] for tensor, _ in chunk}
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
                    total[0] += float(np.sum(own ** 2))
                    total[1] += float(np.sum((own - values[twin]) ** 2))
                    total[2] += float(np.sum(reference ** 2))
                    total[3] += float(np.sum((reference - values[twin]) ** 2))
            for tensor, total in totals.items():
                name = tensor.removesuffix(RENAMED_OUTPUT_SUFFIX)
                local[name], accumulated[name] = _db(total[0], total[1]), _db(total[2], total[3])
        return local, accumulated


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names` (graph inputs are taken from the feeds)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {output.name for output in copy.graph.output} | {tensor.name for tensor in copy.graph.input}
    copy.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names if name not in present)
    return copy


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else 0.0


def _weight_sqnr(model: onnx.ModelProto, float_weights: dict[str, onnx.TensorProto]) -> dict[str, float]:
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
        result[node.output[0]] = _db(float(np.sum(exact ** 2)), float(np.sum((exact - dequantized) ** 2)))
    return result


def _folded_activations(int8_model: onnx.ModelProto, float_model: onnx.ModelProto) -> dict:
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


def _point_pairs(model: onnx.ModelProto) -> list[tuple[str, str]]:
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


def _candidates(graph: Graph, costs: PrecisionCosts, model: onnx.ModelProto, local: dict[str, float],
                accumulated: dict[str, float], weights: dict[str, float]) -> list[tuple[str, ...]]:
    """Groups of units to try in float, the likeliest first, taking in turn from three rankings:

    * a unit alone, by the worst quantization point it touches (lowest local or weight SQNR);
    * the units around one quantized tensor (its producer and readers: only with all of them
      in float does the tensor stay float), by the tensor's local SQNR — an activation whose
      range int8 cannot hold;
    * a unit alone, by the accumulated SQNR lost between its inputs and outputs (noise it adds
      or amplifies, e.g. a Softmax over noisy logits).
    """
    by_label = {graph.node(key).name or key: graph.node(key) for key in graph.dag}
    owner = {member: label for label, unit in costs.units.items() for member in unit.members}
    reads = {node.name: list(node.input) for node in model.graph.node}
    worst_point, loss = {}, {}
    for label, unit in costs.units.items():
        nodes = [by_label[member] for member in unit.members if member in by_label]
        inputs = {tensor for node in nodes for tensor in node.inputs} - {t for node in nodes for t in node.outputs}
        outputs = {tensor for node in nodes for tensor in node.outputs} - {t for node in nodes for t in node.inputs}
        values = [local[tensor] for tensor in inputs | outputs if tensor in local]
        values += [weights[tensor] for member in unit.members for tensor in reads.get(member, []) if tensor in weights]
        worst_point[label] = min(values, default=math.inf)
        out = [accumulated[tensor] for tensor in outputs if tensor in accumulated]
        into = min((accumulated[tensor] for tensor in inputs if tensor in accumulated), default=UNQUANTIZED_DB)
        loss[label] = min(into, UNQUANTIZED_DB) - min(out) if out else -math.inf
    order = {label: index for index, label in enumerate(costs.units)}
    around: dict[str, tuple[str, ...]] = {}
    for tensor in sorted(local, key=local.__getitem__):
        keys = [graph.producer(tensor), *graph.consumers(tensor)]
        labels = {owner[label] for key in keys if key is not None
                  and (label := graph.node(key).name or key) in owner}
        if len(labels) > 1:
            around[tensor] = tuple(sorted(labels, key=order.__getitem__))
    rankings: list[list[tuple[str, ...]]] = [[(label,) for label in sorted(costs.units, key=worst_point.__getitem__)],
                list(around.values()),
                [(label,) for label in sorted(costs.units, key=lambda label: -loss[label])]]
    ranked: list[tuple[str, ...]] = []
    for row in itertools.zip_longest(*rankings, fillvalue=()):
        for group in row:
            if group and group not in ranked:
                ranked.append(group)
    return ranked


def _preference(group: tuple[str, ...], gain: float, extra_ms: float, current: float, options: MixedOptions
                ) -> tuple:
    """Sort key (sensitivity × cost model): groups that reach the goal alone first, the one costing the least
    latency first (then the fewest layers); then the most dB per ms of latency it adds."""
    if current + gain >= options.min_sqnr_db:
        return (0, extra_ms, len(group), -gain)
    return (1, -gain / max(extra_ms, MIN_EXTRA_MS), len(group))


def plan_mixed(graph: Graph, static_float: Graph, static_int8: Graph, quantized, target: str,
               options: MixedOptions) -> MixedResult:
    """Decide the layers to keep in float (see the module docstring); `quantized` is the full int8 QuantizeResult.

    `graph` is the fused float graph, `static_float`/`static_int8` the float and int8 graphs
    with static shapes. The SQNR figures are measured on up to SENSITIVITY_SAMPLES of the
    calibration samples; latencies (ms) are the cost model's (segcost.quant.mixed_cost).
    """
    options.validate()
    started = time.process_time()
    costs = precision_costs(graph, static_float, static_int8, target)
    float_weights = {init.name: init for init in quantized.float_model.graph.initializer}
    feeds = [sample.feeds for _, sample in zip(range(SENSITIVITY_SAMPLES), quantized.source)]
    runner = _Runner(quantized.float_model, feeds)

    def measure(floats: set[str]) -> float:
        if not floats:
            return runner.sqnr(quantized.model)
        live = {member for label, unit in costs.units.items() if label not in floats for member in unit.members}
        return runner.sqnr(float_variant(quantized.model, quantized.float_model, live))

    full = runner.sqnr(quantized.model)
    floats = fastest_float_units(costs)
    current = measure(floats) if floats else full
    chosen: dict[str, tuple[float, tuple[str, ...]]] = {}   # unit -> (SQNR gain in dB, the group it came in)
    evaluated = 0
    notes = []
    if current < options.min_sqnr_db and options.max_float_layers > 0:
        sizes = {info.name: float32_bytes(info) for info in [*quantized.float_model.graph.value_info,
                                                             *quantized.float_model.graph.output]}
        local, accumulated = runner.point_sqnr(quantized.model, _point_pairs(quantized.model), sizes,
                                               _folded_activations(quantized.model, quantized.float_model))
        groups = _candidates(graph, costs, quantized.model, local, accumulated,
                             _weight_sqnr(quantized.model, float_weights))
        candidates = [group for group in groups if not set(group) <= floats][:options.candidates]
        gains = {group: measure(floats | set(group)) - current for group in candidates}
        evaluated = len(candidates)
        base_ms = costs.latency_ms(floats)
        extra = {group: costs.latency_ms(fastest_float_units(costs, [*floats, *group]) | floats | set(group))
                 - base_ms for group in candidates}
        for group in sorted(candidates, key=lambda group: _preference(group, gains[group], extra[group], current,
                                                                      options)):
            new = [label for label in group if label not in floats]
            if current >= options.min_sqnr_db:
                break
            if not new or gains[group] < MIN_GAIN_DB or len(chosen) + len(new) > options.max_float_layers:
                continue
            trial = fastest_float_units(costs, [*chosen, *new]) | {*chosen, *new}
            sqnr = measure(trial)
            if sqnr - current < MIN_GAIN_DB:
                notes.append(f"{', '.join(group)}: +{gains[group]:.1f} dB alone, {sqnr - current:+.1f} dB beside "
                             "the layers already kept: left in int8")
                continue
            chosen.update({label: (sqnr - current, group) for label in new})
            current, floats = sqnr, trial
        if current < options.min_sqnr_db:
            notes.append(f"output SQNR goal {options.min_sqnr_db:g} dB not reached ({current:.1f} dB) with "
                         f"{len(chosen)} of at most {options.max_float_layers} layers kept for accuracy, "
                         f"{evaluated} candidates evaluated")
    mixed_ms = costs.latency_ms(floats)
    kept = [KeptLayer(label, unit.op_type, "accuracy" if label in chosen else "speed", 1000 * unit.int8_ms,
                      1000 * unit.fp32_ms, 1000 * (mixed_ms - costs.latency_ms(floats - {label})),
                      chosen[label][0] if label in chosen else None, list(unit.members),
                      [other for other in chosen[label][1] if other != label] if label in chosen else [])
            for label, unit in costs.units.items() if label in floats]
    return MixedResult(costs.profile, options.min_sqnr_db, options.max_float_layers, len(costs.units), kept,
                       costs.latency_ms(costs.units), costs.latency_ms(()), mixed_ms, full, current, len(feeds),
                       evaluated, time.process_time() - started, notes=notes + costs.notes)

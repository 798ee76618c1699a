"""`optimize --int8 --mixed`: keep in float the layers where int8 loses speed or accuracy.

Speed: segcost.quant.mixed_cost predicts each unit's latency in fp32 and int8 on the target
and the Q/DQ (or hand-over) cost where float and int8 layers meet; the fastest assignment
is a minimum cut. Units it puts in float are kept for speed.

Accuracy: how much the model output's SQNR (10·log10(Σf² / Σ(f − q)²) dB against the
float model, summed over all outputs and samples) rises when one candidate is left in
float while everything else stays as chosen ("leave one out"). This is picked over
quantizing one layer at a time: both cost one forward run per candidate and sample, but
leave-one-out measures the very decision being made (this in float, the rest int8) with
the interactions it has in the final model, where one-at-a-time measures a layer's noise
beside a float rest that will not exist. A candidate is a unit, or the units around one
tensor: onnxruntime quantizes a tensor while its producer or any reader is quantized, so
an activation int8 cannot hold stays float only with all of them. A variant is not
re-quantized: it is the full int8 QDQ model edited as the quantizer writes it with those
nodes excluded (segcost.quant.mixed_variants.float_variant; the ranges stay the
calibration's, and the test suite checks it against the re-quantized model).

Bounded work. A first pass ranks every unit and tensor from one int8 and one float run
per sample (and memory chunk): each quantization point's own SQNR (QuantizeLinear→
DequantizeLinear against its input; dequantized weights against the float ones) and the
SQNR accumulated up to each tensor (noise a unit adds or amplifies, e.g. a Softmax over
noisy logits). Only the first `candidates` of that ranking get a leave-one-out run. Then,
in order of preference (sensitivity × cost model: a candidate that reaches the goal alone
and adds the least predicted latency first, then the most dB gained per ms added), units
join the float set (the minimum cut re-solved around them; one confirming run each) until
the output SQNR reaches `min_sqnr_db` or `max_float_layers` units are kept for accuracy;
a candidate gaining less than MIN_GAIN_DB, alone or beside the layers already kept, is
left in int8. With S = min(calibration samples, SENSITIVITY_SAMPLES) that is at most
S·(1 float + 2c first-pass + 1 + K + B) runs, c the first pass's memory chunks (≤ 256 MiB
of tensors per run), K ≤ `candidates` (12), B ≤ `max_float_layers`, whatever the number of
layers; then the kept layers are quantized for real (one more calibration) and the
accuracy report compares that model with float on the evaluation data. Measured (CPU
time, shared 2-core machine): 6.9 s for smp Unet-R18 and 9.5 s for MAnet-R18 at 128×160,
against 3.7 s and 4.6 s for the whole plain `optimize --int8` run.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import onnx

from segcost.errors import InputError
from segcost.ir import Graph
from segcost.quant.mixed_cost import PrecisionCosts, fastest_float_units, precision_costs
from segcost.quant.mixed_variants import (
    SQNRRunner,
    float_variant,
    folded_activations,
    point_pairs,
    weight_sqnr,
)
from segcost.quant.ranges import float32_bytes

UNQUANTIZED_DB = 200.0       # the SQNR the first pass gives a tensor no QuantizeLinear touches
MIN_GAIN_DB = 0.5            # a float layer must raise the output SQNR at least this much to be kept: smaller
                             # gains are within the spread between sample sets (smp Unet-R18 int8: 29.8 dB on
                             # 8 calibration samples, 29.3 dB on 16 evaluation samples)
MIN_EXTRA_MS = 1e-3         # a group's added latency counts as at least 1 µs when ranking dB per ms
SENSITIVITY_SAMPLES = 8      # calibration samples the sensitivity runs use (at most)


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
    # output positions where the full int8 / the mixed model disagrees with float on NaN/±Inf (calibration
    # samples): > 0 when calib_sqnr_int8_db / calib_sqnr_mixed_db is −∞ (nonfinite.finite_pairs; null in JSON)
    calib_int8_nonfinite_mismatches: int = 0
    calib_mixed_nonfinite_mismatches: int = 0

    @property
    def goal_met(self) -> bool:
        return self.calib_sqnr_mixed_db >= self.min_sqnr_db

    @property
    def exclude_nodes(self) -> list[str]:
        return [member for layer in self.kept for member in layer.members]


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


def _gain(after: float, before: float) -> float:
    """SQNR gain in dB from `before` to `after`; 0 between equal values, also two −∞ (NaN in IEEE: −∞ − −∞)."""
    return 0.0 if after == before else after - before


def _preference(group: tuple[str, ...], gain: float, extra_ms: float, reached: float, options: MixedOptions
                ) -> tuple:
    """Sort key (sensitivity × cost model): groups that reach the goal alone (`reached`: the SQNR measured with
    the group in float) first, the one costing the least latency first (then the fewest layers); then the most
    dB per ms of latency it adds."""
    if reached >= options.min_sqnr_db:
        return (0, extra_ms, len(group), -gain)
    return (1, -gain / max(extra_ms, MIN_EXTRA_MS), len(group))


def plan_mixed(graph: Graph, static_float: Graph, static_int8: Graph, quantized, target: str,
               options: MixedOptions, costs: PrecisionCosts | None = None) -> MixedResult:
    """Decide the layers to keep in float (see the module docstring); `quantized` is the full int8 QuantizeResult.

    `graph` is the fused float graph, `static_float`/`static_int8` the float and int8 graphs
    with static shapes. The SQNR figures are measured on up to SENSITIVITY_SAMPLES of the
    calibration samples; latencies (ms) are the cost model's (segcost.quant.mixed_cost):
    `costs`, when the caller has them for these graphs, else computed here.
    """
    options.validate()
    started = time.process_time()
    costs = costs or precision_costs(graph, static_float, static_int8, target)
    float_weights = {init.name: init for init in quantized.float_model.graph.initializer}
    feeds = [sample.feeds for _, sample in zip(range(SENSITIVITY_SAMPLES), quantized.source)]
    runner = SQNRRunner(quantized.float_model, feeds)

    def measure(floats: set[str]) -> float:
        if not floats:
            return runner.sqnr(quantized.model)
        live = {member for label, unit in costs.units.items() if label not in floats for member in unit.members}
        return runner.sqnr(float_variant(quantized.model, quantized.float_model, live))

    full = runner.sqnr(quantized.model)
    full_mismatches = runner.mismatches
    floats = fastest_float_units(costs)
    current = measure(floats) if floats else full
    current_mismatches = runner.mismatches
    chosen: dict[str, tuple[float, tuple[str, ...]]] = {}   # unit -> (SQNR gain in dB, the group it came in)
    evaluated = 0
    notes = []
    if current < options.min_sqnr_db and options.max_float_layers > 0:
        sizes = {info.name: float32_bytes(info) for info in [*quantized.float_model.graph.value_info,
                                                             *quantized.float_model.graph.output]}
        local, accumulated = runner.point_sqnr(quantized.model, point_pairs(quantized.model), sizes,
                                               folded_activations(quantized.model, quantized.float_model))
        groups = _candidates(graph, costs, quantized.model, local, accumulated,
                             weight_sqnr(quantized.model, float_weights))
        candidates = [group for group in groups if not set(group) <= floats][:options.candidates]
        reached = {group: measure(floats | set(group)) for group in candidates}
        gains = {group: _gain(reached[group], current) for group in candidates}
        evaluated = len(candidates)
        base_ms = costs.latency_ms(floats)
        extra = {group: costs.latency_ms(fastest_float_units(costs, [*floats, *group]) | floats | set(group))
                 - base_ms for group in candidates}
        for group in sorted(candidates, key=lambda group: _preference(group, gains[group], extra[group],
                                                                      reached[group], options)):
            new = [label for label in group if label not in floats]
            if current >= options.min_sqnr_db:
                break
            if not new or gains[group] < MIN_GAIN_DB or len(chosen) + len(new) > options.max_float_layers:
                continue
            trial = fastest_float_units(costs, [*chosen, *new]) | {*chosen, *new}
            sqnr = measure(trial)
            if _gain(sqnr, current) < MIN_GAIN_DB:
                notes.append(f"{', '.join(group)}: +{gains[group]:.1f} dB alone, {_gain(sqnr, current):+.1f} dB "
                             "beside the layers already kept: left in int8")
                continue
            chosen.update({label: (_gain(sqnr, current), group) for label in new})
            current, floats, current_mismatches = sqnr, trial, runner.mismatches
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
                       evaluated, time.process_time() - started, notes=notes + costs.notes,
                       calib_int8_nonfinite_mismatches=full_mismatches,
                       calib_mixed_nonfinite_mismatches=current_mismatches)

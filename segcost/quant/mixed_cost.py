"""Where int8 pays on a target: per-layer fp32 and int8 latency from the cost model, and the fastest mix.

A *unit* is a layer onnxruntime's quantizer quantizes (any of its inputs is read through a
DequantizeLinear in the full int8 graph) together with the activations fused into it
(``meta["fused_into"]``); `--exclude-nodes` keeps all of a unit in float or none of it.

Per-unit latency comes from `segcost.targets.cost_model.estimate` of the fused float graph
on two variants of the target's profile:

* ``cpu`` — float: the calibrated ``cpu`` profile (onnxruntime's float32 kernels). int8: the
  same profile with 1-byte tensors and 4× the MACs per cycle. The 4× is an assumption from
  the instruction set (AVX-512 VNNI ``VPDPBUSD`` does 64 u8·s8 products per 512-bit
  instruction where ``VFMADD231PS`` does 16 fp32 FMAs) and from INT8-PEERS.md (FCN-ResNet50
  measured at int8/fp32 0.25 here); efficiencies and per-layer overheads are the float
  ones — no profile has been calibrated on int8 kernels. Except depthwise convs: VPDPBUSD sums
  4 products along the reduction and a depthwise conv reduces over its k×k taps of one channel
  only; onnxruntime's int8 depthwise kernel runs at INT8_DEPTHWISE_RATE (0.6) of the float
  one's MACs per second here (benchmarks/int8_conv_kinds.py: 8 depthwise 3×3 layers, 64×64×80,
  int8/fp32 time 1.6; the same chain of dense 3×3 convs: 0.29, as 4× predicts). A tensor crossing from a float to an
  int8 layer pays its QuantizeLinear, from int8 to float its DequantizeLinear, each as the
  cost model estimates that node in the QDQ graph without the profile's per-layer overhead
  (fitted on float convs; a Q or DQ node costs its bytes: benchmarks/qdq_node_cost.py);
  between two int8 layers onnxruntime fuses DequantizeLinear→op→QuantizeLinear into its
  QLinear* kernels and nothing runs.
* ``tda4vm`` — int8: the profile itself (TIDL runs 8-bit layers on the C7x+MMA). A float
  layer runs where the cost model runs every layer TIDL does not take, the fallback ARM core
  in float32 (the profile with no supported op); a crossing is the hand-over between the two
  (`segcost.targets.device_terms.handover_ms`). TIDL's 16-bit layers are not modelled.

The fastest assignment of int8/float to units — Σ unit latency + Σ crossings, graph inputs
and outputs and layers the quantizer leaves in float fixed to float — is found exactly as a
minimum s–t cut (a binary labelling whose pairwise costs are paid only when labels differ is
graph-representable: Kolmogorov & Zabih, "What energy functions can be minimized via graph
cuts?", PAMI 2004). A tensor read by several layers pays its conversion once: an auxiliary
node per tensor and direction carries it. networkx computes the cut (a core dependency).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from segcost.ir import Graph
from segcost.quant.footprint import RENAMED_OUTPUT_SUFFIX

VNNI_INT8_SPEEDUP = 4.0     # int8 MACs per fp32 MAC per cycle on AVX-512 VNNI (see the module docstring)
INT8_DEPTHWISE_RATE = 0.6   # int8 depthwise MACs per fp32 depthwise MAC per cycle, measured (module docstring)
_SOURCE, _SINK = "\0int8", "\0float"   # cut sides: the source side runs in int8, the sink side in float
INT8 = _SOURCE   # a Crossing end that is a layer fixed in int8 (None: fixed in float, or the graph's I/O)
_NS = 1e6                               # ms -> integer ns capacities (exact arithmetic in the flow)


@dataclass
class Unit:
    """A layer the quantizer quantizes and the activations fused into it (node labels, as --exclude-nodes takes)."""

    label: str
    op_type: str
    members: tuple[str, ...]
    int8_ms: float = 0.0
    fp32_ms: float = 0.0


@dataclass
class Crossing:
    """An activation tensor: who produces it, who reads it (unit labels; None: float layer or graph I/O; INT8)."""

    tensor: str
    producer: str | None
    consumers: tuple[str | None, ...]
    quantize_ms: float      # paid when a float producer feeds an int8 reader
    dequantize_ms: float    # paid when an int8 producer feeds a float reader


@dataclass
class PrecisionCosts:
    """Everything the choice needs: units with both latencies, crossings, and the latency no choice changes."""

    profile: str
    units: dict[str, Unit]
    crossings: list[Crossing]
    fixed_ms: float                              # float layers the quantizer leaves alone + per-run overhead
    notes: list[str] = field(default_factory=list)

    def latency_ms(self, float_units: Iterable[str]) -> float:
        """Predicted latency with `float_units` in float and every other unit in int8 (ms)."""
        floats = set(float_units)
        total = self.fixed_ms + sum(unit.fp32_ms if label in floats else unit.int8_ms
                                    for label, unit in self.units.items())
        for crossing in self.crossings:
            producer_int8 = crossing.producer is not None and crossing.producer not in floats
            readers_int8 = [reader is not None and reader not in floats for reader in crossing.consumers]  # INT8: true
            if producer_int8 and not all(readers_int8):
                total += crossing.dequantize_ms
            if not producer_int8 and any(readers_int8):
                total += crossing.quantize_ms
        return total


def _label(graph: Graph, key: str) -> str:
    return graph.node(key).name or key


def quantizable_ops() -> frozenset[str]:
    """Op types onnxruntime's quantizer quantizes (its QLinear and QDQ registries). Another op between
    quantized tensors reads dequantized values and computes in float: it is not a unit."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return frozenset(QLinearOpsRegistry) | frozenset(QDQRegistry)


def quantized_units(graph: Graph, int8_graph: Graph) -> dict[str, Unit]:
    """Units of the fused float `graph` that the full QDQ `int8_graph` quantizes, by label, in graph order."""
    quantized = set()
    ops = quantizable_ops()
    for key in int8_graph.dag:
        node = int8_graph.node(key)
        if node.op_type not in ops or node.domain:
            continue
        if any((producer := int8_graph.producer(tensor)) is not None
               and int8_graph.node(producer).op_type == "DequantizeLinear" for tensor in node.inputs if tensor):
            quantized.add(_label(int8_graph, key))
    units: dict[str, Unit] = {}
    fused: dict[str, list[str]] = {}
    for key in graph.topological_order():
        node = graph.node(key)
        if "fused_into" in node.meta:
            fused.setdefault(_label(graph, node.meta["fused_into"]), []).append(_label(graph, key))
        elif _label(graph, key) in quantized:
            units[_label(graph, key)] = Unit(_label(graph, key), node.op_type, (_label(graph, key),))
    for label, extra in fused.items():
        if label in units:
            units[label].members += tuple(extra)
    return units


def _variants(target: str):
    """(float profile, int8 profile) of `target` (see the module docstring)."""
    from segcost.targets.cost_model import load_profile

    if target == "tda4vm":
        int8 = load_profile("tda4vm")
        return int8.with_values(supported_ops=frozenset()), int8
    fp32 = load_profile("cpu")
    efficiency = dict(fp32.efficiency)
    efficiency["depthwise"] *= INT8_DEPTHWISE_RATE / VNNI_INT8_SPEEDUP   # VNNI does not reach depthwise kernels
    return fp32, fp32.with_values(dtype="uint8", macs_per_cycle=fp32.macs_per_cycle * VNNI_INT8_SPEEDUP,
                                  efficiency=efficiency)


def precision_costs(graph: Graph, static_float: Graph, static_int8: Graph, target: str) -> PrecisionCosts:
    """Per-unit int8 and fp32 latency and per-tensor crossing costs on `target` ("cpu" or "tda4vm").

    `graph` is the fused float graph (its fusion marks group the units), `static_float` and
    `static_int8` the float and full-int8 QDQ graphs with static shapes (what the cost model
    needs). Costs in ms. Layers that are not units run as the full int8 graph runs them:
    in float on cpu (onnxruntime dequantizes around them), on the accelerator on tda4vm.
    """
    from segcost.targets.cost_model import estimate
    from segcost.targets.device_terms import handover_ms

    fp32_profile, int8_profile = _variants(target)
    units = quantized_units(graph, static_int8)
    owner = {member: label for label, unit in units.items() for member in unit.members}
    fp32 = {layer.name: layer.ms for layer in estimate(static_float, fp32_profile).layers}
    int8 = {layer.name: layer.ms for layer in estimate(static_float, int8_profile).layers}
    device = int8_profile.fallback
    fixed_side, fixed_cost = (INT8, int8) if device is not None else (None, fp32)
    labels = {key: _label(static_float, key) for key in static_float.dag}
    fixed_ms = int8_profile.run_overhead_us / 1000
    for key, label in labels.items():
        if label in owner:
            unit = units[owner[label]]
            unit.int8_ms += int8.get(key, 0.0)
            unit.fp32_ms += fp32.get(key, 0.0)
        else:
            fixed_ms += fixed_cost.get(key, 0.0)
    # Q/DQ are streaming elementwise kernels: their bytes at the profile's bandwidth, without the calibrated
    # per-layer overhead (25 µs on cpu, fitted on float convs): benchmarks/qdq_node_cost.py measures < 1 µs
    # per Q or DQ node in onnxruntime here, and ~25 µs per Q+DQ pair on 327,680 elements.
    qdq_ms = _qdq_ms(static_int8, fp32_profile.with_values(layer_overhead_cycles=0.0)) if device is None else {}
    crossings = []
    tensors = [*static_float.inputs, *(tensor for key in static_float.topological_order()
                                       for tensor in static_float.node(key).outputs if tensor)]
    for tensor in tensors:
        producer_key = static_float.producer(tensor)
        producer = owner.get(labels[producer_key], fixed_side) if producer_key is not None else None
        readers: list[str | None] = [owner.get(labels[key], fixed_side) for key in static_float.consumers(tensor)]
        readers += [None] * (tensor in static_float.outputs)
        if not readers or set(readers) == {producer}:
            continue   # dead, or all on one side of nothing to decide
        if device is not None:
            elements = 1
            for dim in static_float.shape(tensor) or ():
                elements *= dim if isinstance(dim, int) else 1
            quantize = dequantize = handover_ms(elements, int8_profile.dtype_bytes, 4, device.transfer_gbytes_per_s,
                                                device.transfer_overhead_us)
        else:
            quantize, dequantize = qdq_ms.get(tensor, (0.0, 0.0))
        crossings.append(Crossing(tensor, producer, tuple(readers), quantize, dequantize))
    return PrecisionCosts(fp32_profile.name, units, crossings, fixed_ms)


def fold_weights(graph: Graph) -> Graph:
    """The QDQ graph (changed in place) as runtimes execute it: a DequantizeLinear of a constant (int8
    weight, int32 bias) is folded into its consumer at load time (onnxruntime's QLinearConv, TIDL), so
    the consumer reads the integer constant directly and the DequantizeLinear costs nothing."""
    for key in list(graph.topological_order()):
        node = graph.node(key)
        if node.op_type != "DequantizeLinear" or node.inputs[0] not in graph.initializers:
            continue
        for user in list(graph.consumers(node.outputs[0])):
            graph.replace_input(user, node.outputs[0], node.inputs[0])
        graph.remove_node(key)
    return graph


def _qdq_ms(static_int8: Graph, profile) -> dict[str, tuple[float, float]]:
    """{float tensor: (QuantizeLinear ms, DequantizeLinear ms)} as the cost model estimates them in the QDQ graph."""
    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.targets.cost_model import estimate

    folded = fold_weights(load_model(to_model(static_int8), label=static_int8.info.path))   # a copy: callers reuse it
    ms = {layer.name: layer.ms for layer in estimate(folded, profile).layers}
    costs: dict[str, tuple[float, float]] = {}
    for key in folded.dag:
        node = folded.node(key)
        if node.op_type != "QuantizeLinear" or not node.inputs:
            continue
        producer = folded.producer(node.inputs[0])
        if producer is not None and folded.node(producer).op_type == "DequantizeLinear":
            continue   # a Concat edge requantized to its Concat's scale: part of the int8 graph, not a crossing
        dequantize = sum(ms.get(user, 0.0) for user in folded.consumers(node.outputs[0])
                         if folded.node(user).op_type == "DequantizeLinear")
        costs[node.inputs[0].removesuffix(RENAMED_OUTPUT_SUFFIX)] = (ms.get(key, 0.0), dequantize)
    return costs


def fastest_float_units(costs: PrecisionCosts, forced_float: Iterable[str] = ()) -> set[str]:
    """The units to keep in float for the lowest `costs.latency_ms` (minimum cut), with `forced_float` in float.

    Ties go to int8 (the largest int8 side among the minimum cuts).
    """
    forced = set(forced_float)
    cut: nx.DiGraph = nx.DiGraph()

    def add(u, v, ms: float | None) -> None:   # None: infinite (networkx: no capacity attribute)
        if ms is None:
            cut.add_edge(u, v)
            cut[u][v].pop("capacity", None)
        elif not (cut.has_edge(u, v) and "capacity" not in cut[u][v]):
            previous = cut[u][v]["capacity"] if cut.has_edge(u, v) else 0
            cut.add_edge(u, v, capacity=previous + round(ms * _NS))

    for label, unit in costs.units.items():
        add(_SOURCE, label, unit.fp32_ms)                               # cut when the unit is float
        add(label, _SINK, None if label in forced else unit.int8_ms)    # cut when the unit is int8
    for index, crossing in enumerate(costs.crossings):
        readers = [reader for reader in crossing.consumers if reader is not None and reader != crossing.producer]
        fixed_reader = any(reader is None for reader in crossing.consumers)
        if crossing.producer is not None:
            if fixed_reader:
                add(crossing.producer, _SINK, crossing.dequantize_ms)
            elif readers:
                dq = ("dq", index)   # float iff any reader is float; then an int8 producer pays once
                add(crossing.producer, dq, crossing.dequantize_ms)
                for reader in readers:
                    add(dq, reader, None)
        if readers:
            q = ("q", index)         # int8 iff any reader is int8; then a float producer pays once
            for reader in readers:
                add(reader, q, None)
            add(q, crossing.producer if crossing.producer is not None else _SINK, crossing.quantize_ms)
    residual = nx.algorithms.flow.preflow_push(cut, _SOURCE, _SINK)
    # Units that can still reach the sink in the residual network are float in every minimum cut.
    floats, pending = {_SINK}, [_SINK]
    while pending:
        node = pending.pop()
        for before in residual.predecessors(node):
            edge = residual[before][node]
            if before not in floats and edge["capacity"] - edge["flow"] > 0:
                floats.add(before)
                pending.append(before)
    return {label for label in costs.units if label in floats}

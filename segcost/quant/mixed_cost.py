"""Where int8 pays on a target: per-layer fp32 and int8 latency from the cost model, and the fastest mix.

A *unit* is a layer onnxruntime's quantizer quantizes (it reads a DequantizeLinear and a
QuantizeLinear reads its output in the full int8 graph) together with the activations fused into it
(``meta["fused_into"]``); `--exclude-nodes` keeps all of a unit in float or none of it.

Per-unit latency comes from `segcost.targets.cost_model.estimate` of the fused float graph
on two variants of the target's profile:

* ``cpu`` — float: the calibrated ``cpu`` profile (onnxruntime's float32 kernels), with the
  layout reorders its NCHWc transformer inserts. int8: the same profile with 1-byte tensors and
  per-kind int8 rates measured in onnxruntime (`cpu_int8.CPU_INT8_RATES`,
  benchmarks/int8_layer_rates.py: each QLinearConv's kernel time against its float Conv's, by
  name, on 7 models): int8 MACs per fp32 MAC per cycle of ~3.4-4 for dense and pointwise convs
  (AVX-512 VNNI ``VPDPBUSD`` does 64 u8·s8 products per 512-bit instruction where
  ``VFMADD231PS`` does 16 fp32 FMAs: at most 4), but ~0.27 for depthwise (VPDPBUSD reduces 4
  products along an axis a depthwise conv does not have), ~0.6 for grouped convs and ~0.4 for
  3-channel stems. A layer the QDQ graph runs in float (the output tail's Resize, an activation
  onnxruntime cannot fuse into a QLinearConv) costs what it costs in the float graph while every
  unit it reads through float layers is float, and what it costs in the QDQ graph — off the
  NCHWc path: a bilinear Resize ~4x slower — once one is int8: a Crossing without a producer
  (`_float_layers`). A quantized nearest Resize runs onnxruntime's uint8 kernel at
  `nearest_resize` output elements per cycle. A tensor crossing from a float to an
  int8 layer pays its QuantizeLinear, from int8 to float its DequantizeLinear, each as the
  cost model estimates that node in the QDQ graph without the profile's per-layer overhead
  (fitted on float convs; a Q or DQ node costs its bytes: benchmarks/qdq_node_cost.py), and
  its layout conversion (`cpu_int8.crossing_layout_ms`: NHWC uint8, NCHWc float);
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
from segcost.quant.cpu_int8 import (
    CPU_INT8_RATES,
    Int8Rates,
    copy_ms,
    cpu_layer_ms,
    cpu_variants,
    crossing_layout_ms,
    elements,
)
from segcost.quant.float_layers import WEIGHT_QUANTIZED_OPS, is_pinned_input
from segcost.quant.footprint import RENAMED_OUTPUT_SUFFIX
from segcost.quant.mixed_variants import REMOVABLE

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
    """Units of the fused float `graph` that the full QDQ `int8_graph` quantizes, by label, in graph order.

    A layer is quantized when it reads a DequantizeLinear and a QuantizeLinear reads its output: only then
    does onnxruntime fuse it into a QLinear* kernel (a Conv/Gemm reading a per-axis DequantizeLinear at input 0
    is a float layer: segcost.quant.float_layers). A Relu/Clip segcost put back between the layer and
    its QuantizeLinear (passes.qdq_clips.RestoreClipsPass: `Conv → Clip(0.25, 6) → QuantizeLinear`) does
    not make it float — its weights and inputs are still int8 — and the activation joins its unit, so that
    `--exclude-nodes` and `mixed_variants.float_variant` keep both in float or neither (the mixed report
    used to call such a model all-float, "mixed inf dB", while the written one ran the layer on int8 data).
    A layer that reads a DequantizeLinear and writes a float tensor (the output tail's final Resize) runs in
    float in the int8 graph: it is not a unit.
    """
    quantized: dict[str, list[str]] = {}   # layer label -> the put-back activations after it
    ops = quantizable_ops()
    for key in int8_graph.dag:
        node = int8_graph.node(key)
        if node.op_type not in ops or node.domain:
            continue
        if not any(_dequantized(int8_graph, tensor) for tensor in node.inputs if tensor) or (
                node.op_type in WEIGHT_QUANTIZED_OPS and not _dequantized(int8_graph, node.inputs[0], per_tensor=True)):
            continue
        readers = [user for tensor in node.outputs if tensor for user in int8_graph.consumers(tensor)]
        put_back = [user for user in readers if int8_graph.node(user).op_type in REMOVABLE
                    and _quantized_output(int8_graph, user)]
        if put_back or any(_is_quantize(int8_graph, user) for user in readers):
            quantized[_label(int8_graph, key)] = [_label(int8_graph, user) for user in put_back]
    units: dict[str, Unit] = {}
    fused: dict[str, list[str]] = {}
    for key in graph.topological_order():
        node = graph.node(key)
        if "fused_into" in node.meta:
            fused.setdefault(_label(graph, node.meta["fused_into"]), []).append(_label(graph, key))
        elif _label(graph, key) in quantized:
            units[_label(graph, key)] = Unit(_label(graph, key), node.op_type, (_label(graph, key),))
    labels = {_label(graph, key) for key in graph.dag}
    for label, unit in units.items():
        extra = fused.get(label, []) + [name for name in quantized[label] if name in labels]
        unit.members += tuple(dict.fromkeys(name for name in extra if name not in unit.members))
    return units


def _dequantized(graph: Graph, tensor: str, per_tensor: bool = False) -> bool:
    """`tensor` comes out of a DequantizeLinear (with `per_tensor`: of one scale; a Conv reading a per-axis one is a
    float layer segcost pinned, segcost.quant.float_layers)."""
    producer = graph.producer(tensor)
    if producer is None or graph.node(producer).op_type != "DequantizeLinear":
        return False
    scale = graph.initializers.get(graph.node(producer).inputs[1])
    return not (per_tensor and is_pinned_input(None if scale is None else scale.array))


def _is_quantize(graph: Graph, key: str) -> bool:
    return graph.node(key).op_type == "QuantizeLinear"


def _quantized_output(graph: Graph, key: str) -> bool:
    """Whether a QuantizeLinear reads an output of node `key`."""
    return any(_is_quantize(graph, user) for tensor in graph.node(key).outputs if tensor
               for user in graph.consumers(tensor))


def _variants(target: str, rates: Int8Rates = CPU_INT8_RATES):
    """(float profile, int8 profile) of `target` (see the module docstring)."""
    from segcost.targets.cost_model import load_profile

    if target == "tda4vm":
        int8 = load_profile("tda4vm")
        return int8.with_values(supported_ops=frozenset()), int8
    return cpu_variants(rates)


def precision_costs(graph: Graph, static_float: Graph, static_int8: Graph, target: str,
                    rates: Int8Rates = CPU_INT8_RATES) -> PrecisionCosts:
    """Per-unit int8 and fp32 latency and per-tensor crossing costs on `target` ("cpu" or "tda4vm").

    `graph` is the fused float graph (its fusion marks group the units), `static_float` and
    `static_int8` the float and full-int8 QDQ graphs with static shapes (what the cost model
    needs). Costs in ms. Layers that are not units run as the full int8 graph runs them:
    in float on cpu (onnxruntime dequantizes around them), on the accelerator on tda4vm.
    On cpu, `rates` says how fast the int8 kernels run (default: the measured CPU_INT8_RATES),
    and a float layer runs as the float graph runs it (onnxruntime's blocked layout, with the
    layout reorders it needs) while all the units it reads through float layers are float, and
    as the QDQ graph runs it (plain layout, no reorder) once any of them is int8: a crossing
    whose "quantize" cost is that difference.
    """
    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.targets.cost_model import estimate
    from segcost.targets.device_terms import handover_ms

    fp32_profile, int8_profile = _variants(target, rates)
    units = quantized_units(graph, static_int8)
    owner = {member: label for label, unit in units.items() for member in unit.members}
    labels = {key: _label(static_float, key) for key in static_float.dag}
    device = int8_profile.fallback
    fixed_ms = int8_profile.run_overhead_us / 1000
    layouts: list[Crossing] = []
    if device is None:
        folded = fold_weights(load_model(to_model(static_int8), label=static_int8.info.path))   # a copy
        fp32, int8, in_int8, reorders, bare = cpu_layer_ms(static_float, folded, fp32_profile, int8_profile, rates)
        for key, items in reorders.items():
            fp32[key] = fp32.get(key, 0.0) + sum(ms for _, ms in items)
        fixed_ms += _float_layers(static_float, labels, owner, units, fp32, in_int8, fp32_profile, layouts)
    else:
        fp32 = {layer.name: layer.ms for layer in estimate(static_float, fp32_profile).layers}
        int8 = {layer.name: layer.ms for layer in estimate(static_float, int8_profile).layers}
    fixed_side = INT8 if device is not None else None
    for key, label in labels.items():
        if label in owner:
            unit = units[owner[label]]
            unit.int8_ms += int8.get(key, 0.0)
            unit.fp32_ms += fp32.get(key, 0.0)
        elif device is not None:
            fixed_ms += int8.get(key, 0.0)
    # Q/DQ are streaming elementwise kernels: their bytes at the profile's bandwidth, without the calibrated
    # per-layer overhead (25 µs on cpu, fitted on float convs): benchmarks/qdq_node_cost.py measures < 1 µs
    # per Q or DQ node in onnxruntime here, and ~25 µs per Q+DQ pair on 327,680 elements.
    qdq_ms = _qdq_ms(folded, bare) if device is None else {}
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
            quantize = dequantize = handover_ms(elements(static_float, tensor), int8_profile.dtype_bytes, 4,
                                                device.transfer_gbytes_per_s, device.transfer_overhead_us)
        else:
            quantize, dequantize = qdq_ms.get(tensor, (0.0, 0.0))
            size = elements(static_float, tensor)
            quantize += crossing_layout_ms(fp32_profile, size, producer_key is not None
                                           and static_float.node(producer_key).op_type == "Conv")
            dequantize += crossing_layout_ms(fp32_profile, size, any(
                static_float.node(key).op_type == "Conv" for key in static_float.consumers(tensor)))
        crossings.append(Crossing(tensor, producer, tuple(readers), quantize, dequantize))
    return PrecisionCosts(fp32_profile.name, units, crossings + layouts, fixed_ms)


def _float_layers(static_float: Graph, labels: dict[str, str], owner: dict[str, str], units: dict[str, Unit],
                  fp32: dict[str, float], in_int8: dict[str, float], profile, layouts: list[Crossing]) -> float:
    """cpu: the latency of the layers that stay float (fp32 graph's cost) and, in `layouts`, what each costs
    more once a unit it reads through float layers runs in int8 (a Crossing with no producer: paid when any
    reader is int8). A saving instead (rare: a plain kernel faster than the blocked one and its reorder) is
    moved onto the units as float cost, split evenly; both all-float and all-int8 totals stay exact.
    The same for a unit without MACs kept in float (`_float_unit_layout`)."""
    upstream: dict[str, frozenset[str]] = {}
    total = 0.0
    for key in static_float.topological_order():
        reads: set[str] = set()
        for tensor in static_float.node(key).inputs:
            producer = static_float.producer(tensor) if tensor else None
            if producer is not None:
                reads |= {owner[labels[producer]]} if labels[producer] in owner else upstream.get(producer, set())
        upstream[key] = frozenset(reads)
        if labels[key] in owner:
            _float_unit_layout(static_float, key, labels[key], reads - {labels[key]}, fp32, in_int8, profile,
                               layouts)
            continue
        float_ms = fp32.get(key, 0.0)
        total += float_ms
        extra = in_int8.get(labels[key], float_ms) - float_ms
        if not reads or not extra:
            continue
        if extra > 0:
            layouts.append(Crossing(f"{labels[key]} (layout)", None, tuple(sorted(reads)), extra, 0.0))
        else:
            total += extra
            for label in reads:
                units[label].fp32_ms -= extra / len(reads)
    return total


def _float_unit_layout(static_float: Graph, key: str, label: str, reads: set[str], fp32: dict[str, float],
                       in_int8: dict[str, float], profile, layouts: list[Crossing]) -> None:
    """cpu: a unit without MACs (Resize, Concat, pooling) kept in float runs off the NCHWc path when a unit it
    reads runs in int8 (its input comes out of a DequantizeLinear), as the QDQ graph runs it, and a float conv
    reading it then needs its input reordered: paid when a unit it reads is int8 and this one float (a Crossing
    per unit it reads, the cost split between them). Measured: the default model with its decoder in float — decoder
    Resize 4.8 ms plain against 1.1 ms blocked, a 1.0 ms ReorderInput after its Concat."""
    if static_float.node(key).op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") or not reads:
        return
    extra = in_int8.get(label, fp32.get(key, 0.0)) - fp32.get(key, 0.0)
    output = static_float.node(key).outputs[0]
    if any(static_float.node(user).op_type == "Conv" for user in static_float.consumers(output)):
        extra += copy_ms(profile, 8 * elements(static_float, output))
    if extra > 0:
        layouts.extend(Crossing(f"{label} (layout, from {source})", source, (label,), 0.0, extra / len(reads))
                       for source in sorted(reads))


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


def _qdq_ms(folded: Graph, ms: dict[str, float]) -> dict[str, tuple[float, float]]:
    """{float tensor: (QuantizeLinear ms, DequantizeLinear ms)} from `ms`, the cost model's per-layer estimate
    of the QDQ graph with its weight DequantizeLinears folded (`fold_weights`), without the per-layer
    overhead (cpu_int8.cpu_layer_ms's last result)."""
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

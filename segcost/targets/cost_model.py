"""Per-layer latency of a model on a target profile: a roofline with alignment, overhead and fallback.

For each layer the model computes, in the cycles of the device the layer runs on:

* compute = MACs / (peak MACs/cycle · efficiency[kind] · tile fill), where tile fill is
  the fraction of the matrix unit's `align_width`-wide tiles that the layer's input
  (C_in/group) and output (C_out/group) channels occupy — 24 channels on a 64-wide MMA
  fill 37.5% of it. Kernel taps are accumulated one after another (a 3-channel stem conv
  uses 3/64 of the MMA whatever its kernel size) unless the profile says
  `taps_in_reduction` (TIDL: C_in·kh·kw rows, 27 for that stem); grouped convs use a tile per
  group or share tiles block-diagonally (`grouped_tiling`, device_terms.matrix_fill).
  Depthwise layers have no reduction
  over channels, so only their channel count is aligned and `efficiency.depthwise`
  carries the rest. ConvTranspose uses `efficiency.transposed`.
  Layers without MACs cost their elementwise flops on the vector unit;
* memory = bytes moved (input and output activations + weights, in the profile's data
  type) / bandwidth of the innermost memory level that holds that working set;
* cycles = max(compute, memory) + (1 − memory_overlap)·min(compute, memory) + a fixed
  per-layer overhead (memory_overlap 1: a pure roofline); `bound` names the largest term.
  Activations fused into a conv (``meta["fused_into"]``), ops the runtime folds
  into the conv before them (profile ``fused_into_conv_ops``) and pure relabelling ops
  (Reshape ...) cost nothing.

Layers the accelerator does not support — exactly the verifier's target findings
(segcost.passes.verify_conv.PLACEMENT_RULES under the profile's rule set: an op type outside
the set, a custom domain, a 5×5 stride-2 depthwise conv under the SDK 9.2 set ...), or for a
profile without a rule set an op type outside its `support.ops` — run on the fallback core
at its own rates, and each tensor crossing between the two devices pays a transfer (read in
one format, written in the other, through DDR) plus a fixed synchronisation cost. Graph
inputs and outputs cross to the host's buffers (profile `host_io_bytes_per_cycle`,
segcost.targets.device_terms). Latency is the sum over layers and transfers plus a per-run
overhead: layers execute one after another, as TIDL and onnxruntime's sequential executor
run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any, TypeGuard

from segcost.analyzer.result import AnalysisResult, LayerCost
from segcost.passes.verify_conv import PLACEMENT_RULES, VerifyGroupedConvPass
from segcost.targets.device_terms import handover_ms, host_io_bytes, matrix_fill, tile_fill
from segcost.targets.imported_layers import imported_layers
from segcost.targets.profile import DTYPE_BYTES, TargetProfile
from segcost.targets.profile_toml import load_profile
from segcost.targets.results import (
    LayerEstimate,
    TargetReport,
    Totals,
    TransferEstimate,
)
from segcost.targets.runtime import (
    BLOCKED_OPS,
    aligned_layers,
    blocked_layers,
    layout_reorders,
    runtime_folded,
    valid_tap_fraction,
)

__all__ = ["LayerEstimate", "PreparedModel", "TargetReport", "Totals", "TransferEstimate", "estimate",
           "estimate_prepared", "load_profile", "prepare"]

ACCELERATOR = "accelerator"
LOW_UTILISATION_PCT = 40.0


@dataclass(frozen=True)
class _Features:
    """What the cost of a layer depends on, independent of the profile."""

    layer: LayerCost
    input_tensors: tuple[str, ...]     # activation inputs (not weights)
    input_elements: int
    output_elements: int
    weight_elements: int
    reduce_dim: int                    # input channels per group: K per kernel tap (0: not a MAC layer)
    out_dim: int                       # output channels per group: N
    fused_into: str | None
    finding: str | None                # a target finding: the layer cannot run on the accelerator
    valid_taps: float = 1.0            # runtime.valid_tap_fraction (1.0 without the graph)


@dataclass
class PreparedModel:
    """Profile-independent layer features; `estimate_prepared` can be called on it many times (calibration)."""

    features: list[_Features]
    elements: dict[str, int]           # activation tensor → elements
    producers: dict[str, str]          # activation tensor → producing layer
    rules: str | None
    consumer_counts: dict[str, int] = field(default_factory=dict)   # activation tensor → consuming layers
    model_outputs: frozenset[str] = frozenset()
    model_inputs: frozenset[str] = frozenset()
    producer_op_types: dict[str, str] = field(default_factory=dict)  # activation tensor → its producer's op type


def estimate(graph_or_analysis: Any, profile: TargetProfile | str, findings: list | None = None) -> TargetReport:
    """Estimate per-layer cycles and whole-model latency of a Graph or AnalysisResult on `profile`.

    A Graph is analyzed here, its fused activations are read from node meta and the
    verifier's target rules (profile.rules) decide fallback. With an AnalysisResult, pass
    the verifier's `findings` to get fallback from them (fusion marks are then unknown).

    Args:
        graph_or_analysis: a segcost IR Graph (run the fusion pipeline first to see fused
            activations as free) or an AnalysisResult.
        profile: a TargetProfile, a built-in profile name or a profile TOML path.
        findings: verifier findings to use instead of running the verifier.

    Returns:
        TargetReport with one LayerEstimate per analyzed layer, the fallback transfers and totals.
    """
    profile = load_profile(profile)
    return estimate_prepared(prepare(graph_or_analysis, profile.rules, findings), profile)


def prepare(graph_or_analysis: Any, rules: str | None, findings: list | None = None) -> PreparedModel:
    """Extract the layer features of a Graph or AnalysisResult (see `estimate`).

    For a Graph under a rule set with `fused_patterns`, each matched sequence is one layer
    (segcost.targets.imported_layers); an AnalysisResult keeps one layer per node.
    """
    fused: dict[str, str] = {}
    graph = None
    if isinstance(graph_or_analysis, AnalysisResult):
        analysis = graph_or_analysis
    else:
        from segcost.analyzer import analyze

        graph = graph_or_analysis
        analysis = analyze(graph)
        fused = {key: graph.node(key).meta["fused_into"] for key in graph.dag
                 if "fused_into" in graph.node(key).meta}
        if findings is None and rules is not None:
            findings = VerifyGroupedConvPass(rules=rules, lite=False, target=True)(graph).findings
    blocking: dict[str, str] = {}
    for finding in findings or []:
        if finding.rule in PLACEMENT_RULES:
            blocking.setdefault(finding.layer, f"{finding.rule}: {finding.reason}")
    layers = imported_layers(analysis, graph, rules, fused, frozenset(blocking))
    producers = {tensor: layer.name for layer in layers if layer.op_type != "Constant"
                 for tensor in layer.outputs if tensor}
    activations = set(producers) | {tensor.name for tensor in analysis.model.inputs}
    elements: dict[str, int] = {}
    for layer in layers:
        for tensor, shape in zip(layer.inputs, layer.input_shapes):
            if tensor in activations and _static(shape):
                elements[tensor] = prod(shape)
        if layer.outputs and layer.outputs[0] and _static(layer.output_shape):
            elements.setdefault(layer.outputs[0], prod(layer.output_shape))
    features = []
    for layer in layers:
        inputs = tuple(tensor for tensor in layer.inputs if tensor in activations)
        outputs = [tensor for tensor in layer.outputs if tensor]
        reduce_dim, out_dim = _matrix_dims(layer)
        valid_taps = 1.0
        if graph is not None and layer.op_type == "Conv" and layer.macs and layer.name in graph.dag:
            valid_taps = valid_tap_fraction(graph.node(layer.name).attrs, layer.input_shapes[0],
                                            layer.output_shape, layer.kernel)
        features.append(_Features(
            layer=layer, input_tensors=inputs, input_elements=sum(elements.get(tensor, 0) for tensor in inputs),
            output_elements=sum(elements.get(tensor, 0) for tensor in outputs), weight_elements=layer.params,
            reduce_dim=reduce_dim, out_dim=out_dim, fused_into=fused.get(layer.name),
            finding=blocking.get(layer.name), valid_taps=valid_taps))
    consumer_counts: dict[str, int] = {}
    for item in features:
        for tensor in set(item.input_tensors):
            consumer_counts[tensor] = consumer_counts.get(tensor, 0) + 1
    op_types = {layer.name: layer.op_type for layer in layers}
    return PreparedModel(features, elements, producers, rules, consumer_counts,
                         frozenset(tensor.name for tensor in analysis.model.outputs),
                         frozenset(tensor.name for tensor in analysis.model.inputs),
                         {tensor: op_types[producer] for tensor, producer in producers.items()})


def estimate_prepared(prepared: PreparedModel, profile: TargetProfile) -> TargetReport:
    """The cost model proper (pure arithmetic over prepared features)."""
    placements = _placements(prepared, profile)
    blocked = blocked_layers(prepared, profile)
    aligned = aligned_layers(prepared, profile, blocked)
    folded = runtime_folded(prepared, profile, placements, blocked)
    layers = [_layer_estimate(item, placements[item.layer.name], profile, folded.get(item.layer.name),
                              aligned.get(item.layer.name, True))
              for item in prepared.features]
    transfers = (_transfers(prepared, placements, profile) + _reorders(prepared, profile, blocked)
                 + _host_io(prepared, placements, profile))
    return TargetReport(profile.name, profile.description, profile.dtype, profile.peak_macs_per_s,
                        profile.external_bytes_per_s, layers, transfers, _totals(layers, transfers, profile))


def _static(shape: Sequence[int | str | None] | None) -> TypeGuard[Sequence[int]]:
    return shape is not None and all(isinstance(dim, int) for dim in shape)


def _matrix_dims(layer: LayerCost) -> tuple[int, int]:
    """(input channels per group, output channels per group) of a MAC layer; (0, 0) when unknown."""
    if not layer.macs:
        return 0, 0
    weight_index = 3 if layer.op_type == "QLinearConv" else 1
    shapes = layer.input_shapes
    weight = shapes[weight_index] if "Conv" in layer.op_type and len(shapes) > weight_index else None
    if _static(weight):
        group = layer.group or 1
        if layer.op_type == "ConvTranspose":   # weight [C_in, C_out/group, k...]
            return weight[0] // group, weight[1]
        return weight[1], weight[0] // group
    if _static(layer.output_shape) and layer.output_shape:
        # Gemm/MatMul: MACs = (output elements) · K exactly, whatever the transposes.
        return layer.macs // max(1, prod(layer.output_shape)), layer.output_shape[-1]
    return 0, 0


def _placements(prepared: PreparedModel, profile: TargetProfile) -> dict[str, str]:
    placements: dict[str, str] = {}
    fallback = profile.fallback
    for item in prepared.features:
        layer = item.layer
        on_accelerator = fallback is None or (
            item.finding is None and not layer.domain
            and (profile.supported_ops is None or layer.op_type in profile.supported_ops))
        placements[layer.name] = ACCELERATOR if on_accelerator or fallback is None else fallback.name
    for item in prepared.features:  # a fused activation runs wherever its convolution runs
        if item.fused_into in placements:
            placements[item.layer.name] = placements[item.fused_into]
    return placements


def _layer_estimate(item: _Features, placement: str, profile: TargetProfile, folded_into: str | None,
                    aligned: bool) -> LayerEstimate:
    layer = item.layer
    base: dict[str, Any] = dict(name=layer.name, op_type=layer.op_type, kind=layer.kind, placement=placement,
                                macs=layer.macs)
    if item.fused_into is not None and profile.fused_activations_free:
        return LayerEstimate(**base, cycles=0.0, ms=0.0, bound="compute", utilisation_pct=0.0,
                             reason=f"fused into {item.fused_into}: applied in its output stage, free")
    if folded_into is not None:
        return LayerEstimate(**base, cycles=0.0, ms=0.0, bound="compute", utilisation_pct=0.0,
                             reason=f"folded into {folded_into} by the runtime, free")
    if layer.op_type in profile.free_ops and not layer.domain:
        return LayerEstimate(**base, cycles=0.0, ms=0.0, bound="overhead", utilisation_pct=0.0,
                             reason="relabels a tensor: free")
    if placement == ACCELERATOR:
        return _accelerator_estimate(item, base, profile, aligned)
    return _fallback_estimate(item, base, profile)


def _accelerator_estimate(item: _Features, base: dict, profile: TargetProfile, aligned: bool) -> LayerEstimate:
    """aligned: the layer runs on the fast path (runtime.aligned_layers); otherwise the unaligned_* factors apply."""
    layer = item.layer
    fill = 1.0
    if layer.macs:
        kind = "transposed" if layer.op_type == "ConvTranspose" else (
            layer.kind if layer.kind in profile.efficiency else "dense")
        if kind == "depthwise":
            fill = tile_fill(layer.group or 1, profile.align_width)
        else:
            taps = prod(layer.kernel or ()) if profile.taps_in_reduction and layer.op_type == "Conv" else 1
            fill = matrix_fill(item.reduce_dim * taps, item.out_dim, profile.align_width, layer.group or 1,
                               profile.grouped_tiling)
        efficiency = profile.efficiency[kind]
        if kind != "transposed" and not aligned:
            efficiency *= profile.unaligned_efficiency if kind != "depthwise" or \
                profile.unaligned_depthwise_efficiency is None else profile.unaligned_depthwise_efficiency
        shape = layer.output_shape
        if profile.grouped_row_overhead_pixels and layer.kind == "grouped" and shape and len(shape) >= 3 \
                and isinstance(shape[-1], int):
            efficiency *= shape[-1] / (shape[-1] + profile.grouped_row_overhead_pixels)
        executed = layer.macs * item.valid_taps if profile.skips_padding_taps else layer.macs
        compute = executed / (profile.macs_per_cycle * efficiency * fill)
        peak_work, work = profile.macs_per_cycle, layer.macs
    else:
        rate = profile.vector_flops_per_cycle
        shape = layer.output_shape
        if shape is not None and len(shape) == 4 and isinstance(shape[1], int):
            if profile.blocked_layout:   # blocked kernels work on padded channels; others run the plain kernels
                rate *= tile_fill(shape[1], profile.align_width) if aligned else profile.unaligned_vector_efficiency
            elif shape[1] % profile.align_width:
                rate *= profile.unaligned_vector_efficiency
        compute = layer.flops / rate
        peak_work, work = profile.vector_flops_per_cycle, layer.flops
    traffic = (item.input_elements + item.output_elements + item.weight_elements) * profile.dtype_bytes
    level = next(level for level in profile.memory if level.capacity_bytes is None or traffic <= level.capacity_bytes)
    memory = traffic / level.bytes_per_cycle
    overhead = profile.layer_overhead_cycles
    cycles = max(compute, memory) + (1.0 - profile.memory_overlap) * min(compute, memory) + overhead
    utilisation = 100.0 * work / (cycles * peak_work) if cycles else 0.0
    bound = _bound(compute, memory, overhead)
    ms = cycles / (profile.clock_ghz * 1e6)
    reason = _reason(item, bound, utilisation, fill, traffic, level.name, compute, memory, profile)
    if not aligned and profile.blocked_layout and (layer.macs or layer.op_type in BLOCKED_OPS):
        multiple = profile.path_channel_multiple or profile.align_width
        reason += (f"; off the runtime's blocked path (channels not a multiple of {multiple}, or a plain-layout "
                   "input): plain NCHW kernel")
    return LayerEstimate(**base, cycles=cycles, ms=ms, bound=bound, utilisation_pct=utilisation, reason=reason,
                         compute_cycles=compute, memory_cycles=memory, overhead_cycles=overhead,
                         traffic_bytes=traffic, memory_level=level.name)


def _fallback_estimate(item: _Features, base: dict, profile: TargetProfile) -> LayerEstimate:
    device = profile.fallback
    assert device is not None, "_placements puts a layer off the accelerator only when there is a fallback"
    layer = item.layer
    if layer.macs:
        compute = layer.macs / (device.macs_per_cycle * device.efficiency)
        peak_work, work = device.macs_per_cycle, layer.macs
    else:
        compute = layer.flops / device.flops_per_cycle
        peak_work, work = device.flops_per_cycle, layer.flops
    traffic = (item.input_elements + item.output_elements + item.weight_elements) * DTYPE_BYTES[device.dtype]
    memory = traffic / device.bytes_per_cycle
    overhead = device.layer_overhead_cycles
    cycles = max(compute, memory) + overhead
    if item.finding is not None:
        why = item.finding
    elif layer.domain:
        why = f"custom op {layer.domain}::{layer.op_type} (its cost counts memory traffic and overhead only)"
    else:
        why = f"op {layer.op_type} is not supported by the accelerator"
    return LayerEstimate(**base, cycles=cycles, ms=cycles / (device.clock_ghz * 1e6), bound=_bound(
        compute, memory, overhead), utilisation_pct=100.0 * work / (cycles * peak_work) if cycles else 0.0,
        reason=f"fallback to {device.name}: {why}", compute_cycles=compute, memory_cycles=memory,
        overhead_cycles=overhead, traffic_bytes=traffic, memory_level="DDR")


def _bound(compute: float, memory: float, overhead: float) -> str:
    if overhead >= max(compute, memory):
        return "overhead"
    return "compute" if compute >= memory else "memory"


def _reason(item: _Features, bound: str, utilisation: float, fill: float, traffic: int, level: str,
            compute: float, memory: float, profile: TargetProfile) -> str:
    layer = item.layer
    if bound == "memory":
        return (f"memory-bound: {traffic / 1e6:.2f} MB through {level} takes {memory / compute:.1f}x "
                f"its compute time" if compute else f"memory-bound: moves {traffic / 1e6:.2f} MB through {level}")
    if bound == "overhead":
        return "overhead-bound: the fixed per-layer cost exceeds its compute and memory time"
    if not layer.macs:
        return f"compute-bound: elementwise work at {utilisation:.0f}% of the vector unit's peak"
    if utilisation < LOW_UTILISATION_PCT:
        if layer.kind == "depthwise":
            return (f"low utilisation {utilisation:.0f}%: depthwise conv (efficiency "
                    f"{profile.efficiency['depthwise']:.0%} of peak)")
        if fill < 0.75:
            return (f"low utilisation {utilisation:.0f}%: {item.reduce_dim} in / {item.out_dim} out channels fill "
                    f"{fill:.0%} of the {profile.align_width}-wide tiles")
        return f"low utilisation {utilisation:.0f}%: {layer.kind} conv efficiency"
    return f"compute-bound at {utilisation:.0f}% of peak"


def _transfers(prepared: PreparedModel, placements: dict[str, str], profile: TargetProfile) -> list[TransferEstimate]:
    device = profile.fallback
    if device is None:
        return []
    sizes = {ACCELERATOR: profile.dtype_bytes, device.name: DTYPE_BYTES[device.dtype]}
    transfers: list[TransferEstimate] = []
    seen: set[tuple[str, str]] = set()
    for item in prepared.features:
        destination = placements[item.layer.name]
        for tensor in item.input_tensors:
            producer = prepared.producers.get(tensor)
            if producer is None or placements[producer] == destination or (tensor, destination) in seen:
                continue
            seen.add((tensor, destination))
            source = placements[producer]
            # The tensor is read in the producer's format and written in the consumer's, through DDR.
            elements = prepared.elements.get(tensor, 0)
            moved = elements * (sizes[source] + sizes[destination])
            ms = handover_ms(elements, sizes[source], sizes[destination], device.transfer_gbytes_per_s,
                             device.transfer_overhead_us)
            transfers.append(TransferEstimate(tensor, producer, item.layer.name, f"{source}->{destination}",
                                              moved, ms))
    return transfers


def _reorders(prepared: PreparedModel, profile: TargetProfile, blocked: set[str]) -> list[TransferEstimate]:
    """The runtime's layout conversions (runtime.layout_reorders): each reads and writes its tensor once, through
    the memory level that holds both copies, plus the per-layer overhead (it is a kernel of its own)."""
    reorders = []
    for tensor, producer, consumer, direction in layout_reorders(prepared, profile, blocked):
        moved = 2 * prepared.elements.get(tensor, 0) * profile.dtype_bytes
        level = next(level for level in profile.memory if level.capacity_bytes is None or moved <= level.capacity_bytes)
        cycles = moved / level.bytes_per_cycle + profile.layer_overhead_cycles
        reorders.append(TransferEstimate(tensor, producer or "input", consumer, direction, moved,
                                         cycles / (profile.clock_ghz * 1e6)))
    return reorders


def _host_io(prepared: PreparedModel, placements: dict[str, str], profile: TargetProfile) -> list[TransferEstimate]:
    """Graph inputs and outputs on the accelerator cross to the host's buffers (device_terms.host_io_bytes)."""
    if not profile.host_io_bytes_per_cycle:
        return []
    host_bytes = DTYPE_BYTES[profile.host_dtype]
    consumers = {tensor: item.layer.name for item in reversed(prepared.features) for tensor in item.input_tensors}
    crossings = [(tensor, "host", consumers[tensor], "host->accelerator") for tensor in sorted(prepared.model_inputs)
                 if tensor in consumers and placements[consumers[tensor]] == ACCELERATOR]
    crossings += [(tensor, prepared.producers[tensor], "host", "accelerator->host")
                  for tensor in sorted(prepared.model_outputs)
                  if tensor in prepared.producers and placements[prepared.producers[tensor]] == ACCELERATOR]
    transfers = []
    for tensor, producer, consumer, direction in crossings:
        moved = host_io_bytes(prepared.elements.get(tensor, 0), profile.dtype_bytes, host_bytes)
        cycles = moved / profile.host_io_bytes_per_cycle
        transfers.append(TransferEstimate(tensor, producer, consumer, direction, moved,
                                          cycles / (profile.clock_ghz * 1e6)))
    return transfers


def _totals(layers: list[LayerEstimate], transfers: list[TransferEstimate], profile: TargetProfile) -> Totals:
    run_ms = profile.run_overhead_us / 1000
    transfer_ms = sum(transfer.ms for transfer in transfers)
    latency = sum(layer.ms for layer in layers) + transfer_ms + run_ms
    share: dict[str, float] = {}
    by_op: dict[str, float] = {}
    bounds: dict[str, float] = {}
    for layer in layers:
        share[layer.kind] = share.get(layer.kind, 0.0) + layer.ms
        by_op[layer.op_type] = by_op.get(layer.op_type, 0.0) + layer.ms
        bounds[layer.bound] = bounds.get(layer.bound, 0.0) + layer.ms
    share["transfer"], share["run"] = transfer_ms, run_ms
    accelerator_macs = sum(layer.macs for layer in layers if layer.placement == ACCELERATOR)
    return Totals(
        latency_ms=latency, fps=1000.0 / latency if latency else 0.0, macs=sum(layer.macs for layer in layers),
        utilisation_pct=100.0 * accelerator_macs / (latency / 1000 * profile.peak_macs_per_s) if latency else 0.0,
        accelerator_ms=sum(layer.ms for layer in layers if layer.placement == ACCELERATOR),
        fallback_ms=sum(layer.ms for layer in layers if layer.placement != ACCELERATOR), transfer_ms=transfer_ms,
        run_overhead_ms=run_ms, fallback_layers=sum(layer.placement != ACCELERATOR for layer in layers),
        share_by_kind={kind: (ms / latency if latency else 0.0) for kind, ms in sorted(share.items()) if ms},
        share_by_op_type={op: (ms / latency if latency else 0.0)
                          for op, ms in sorted(by_op.items(), key=lambda item: (-item[1], item[0])) if ms},
        ms_by_bound=dict(sorted(bounds.items())))

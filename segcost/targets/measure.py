"""Measure per-node kernel times in onnxruntime and map them back to IR layers.

Session options are fixed (`session_options`) so that profiling, calibration and the
benchmark measure the same thing: CPUExecutionProvider, ORT_ENABLE_ALL (what users get by
default), `threads` intra-op threads that sleep rather than spin when idle, sequential execution.
The model run is the IR itself
(`named_model`), with every node named by its IR key, so ORT's profile names lead back to
layers.

ORT rewrites the graph before running it, so the mapping is not one-to-one:
* Conv+Relu become one FusedConv named after the Conv; with the NCHWc layout transformer a
  conv node is named after its *output tensor* plus ``_nchwc`` (e.g. ``block1.relu_out_nchwc``),
  and a residual Add can be folded into the conv before it;
* Reorder nodes that convert layouts have no IR counterpart.
So every ORT node is resolved to an anchor layer (by node name, else by tensor name), and
IR layers without an ORT node of their own join the group of the layer that absorbed them
(an activation joins its conv via ``fused_into``; otherwise a layer joins the group all its
consumers — or else all its producers — belong to). Layer groups are what is compared;
ORT nodes that resolve to nothing are reported as unmapped.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from segcost.targets.cost_model import PreparedModel, TargetReport
from segcost.targets.run_bounds import bounded_session

__all__ = ["Comparison", "GroupComparison", "LayerGroup", "LayerMapping", "Measurement", "NodeTime", "compare",
           "map_to_layers", "measure", "measure_many", "named_model", "session_options", "spearman"]

ORT_NAME_SUFFIXES = ("_nchwc",)


@dataclass
class NodeTime:
    """Median kernel time of one onnxruntime node over the measured runs."""

    name: str
    op_type: str
    median_us: float


@dataclass
class Measurement:
    """What onnxruntime measured for one model.

    Attributes:
        node_times: per-node kernel times from a profiling session (median over `runs`).
        wall_ms: whole-model session.run times of a separate session without profiling.
        framework_ms: median over the profiled runs of (run time − that run's kernel times):
            the time onnxruntime spends between kernels.
        threads, runs, warmup: how it was measured.
        optimization_level: ORT graph optimization level used.
        ort_version: onnxruntime version.
    """

    node_times: list[NodeTime]
    wall_ms: list[float]
    framework_ms: float
    threads: int
    runs: int
    warmup: int
    optimization_level: str = "ORT_ENABLE_ALL"
    ort_version: str = ""

    @property
    def median_wall_ms(self) -> float:
        return median(self.wall_ms)

    @property
    def kernel_ms(self) -> float:
        """Sum of the per-node median kernel times."""
        return sum(node.median_us for node in self.node_times) / 1000

    @property
    def robust_latency_ms(self) -> float:
        """Per-node medians plus the median framework time: a latency that other processes' load barely moves.

        The wall-time median is not: on a loaded machine a run is slowed wherever one of its
        ~100 kernels is pre-empted, so most runs are, while each kernel's median is clean.
        """
        return self.kernel_ms + self.framework_ms


@dataclass
class LayerGroup:
    """IR layers whose work one or more ORT nodes did.

    Attributes:
        anchor: the layer the ORT node(s) are named after.
        layers: every IR layer in the group (the anchor first).
        ort_nodes: names of the ORT nodes mapped here.
        kernel_ms: their summed median kernel times.
        measured_ms: kernel_ms plus the group's share of the time between kernels
            (Measurement.framework_ms split evenly over the ORT nodes), so that all groups and
            unmapped nodes add up to Measurement.robust_latency_ms; None when ORT ran none of
            the layers.
    """

    anchor: str
    layers: list[str]
    ort_nodes: list[str] = field(default_factory=list)
    kernel_ms: float = 0.0
    measured_ms: float | None = None


@dataclass
class LayerMapping:
    groups: list[LayerGroup]
    unmapped: list[NodeTime]

    gap_per_node_ms: float = 0.0

    @property
    def unmapped_ms(self) -> float:
        return sum(node.median_us for node in self.unmapped) / 1000 + self.gap_per_node_ms * len(self.unmapped)


@dataclass
class GroupComparison:
    name: str
    layers: list[str]
    op_types: str
    predicted_ms: float
    measured_ms: float


@dataclass
class Comparison:
    """Predicted against measured, per layer group and for the whole model."""

    groups: list[GroupComparison]
    spearman_rho: float
    predicted_latency_ms: float
    measured_latency_ms: float       # median wall time of session.run
    robust_latency_ms: float         # Measurement.robust_latency_ms
    unmapped_ms: float

    @property
    def latency_error_pct(self) -> float:
        """Predicted against the median wall time."""
        return 100.0 * (self.predicted_latency_ms - self.measured_latency_ms) / self.measured_latency_ms

    @property
    def robust_error_pct(self) -> float:
        """Predicted against per-node medians + framework time."""
        return 100.0 * (self.predicted_latency_ms - self.robust_latency_ms) / self.robust_latency_ms


def session_options(threads: int = 2, profile_prefix: str | None = None):
    """The onnxruntime session options of every segcost measurement.

    Args:
        threads: intra-op threads.
        profile_prefix: turn ORT's profiler on, writing its JSON under this path prefix.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # fight other processes for the cores (measured here under load: 275 ms -> 167 ms median
    # per run of DeepLabV3Lite 768x384, and a third of the spread).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def named_model(graph):
    """The IR as an ONNX model whose node names are the IR layer keys."""
    from segcost.ir.onnx_io import to_model

    model = to_model(graph)
    for proto in model.graph.node:
        key = next((graph.producer(tensor) for tensor in proto.output if tensor and graph.producer(tensor)), None)
        if key is not None:
            proto.name = key
    return model


def measure(graph, runs: int = 10, warmup: int = 3, threads: int = 2, seed: int = 0) -> Measurement:
    """Run `graph` in onnxruntime: wall times of a plain session, per-node times of a profiling one."""
    return measure_many({"model": graph}, runs, warmup, threads, seed)["model"]


def measure_many(graphs: dict, runs: int = 10, warmup: int = 3, threads: int = 2, seed: int = 0,
                 progress=None) -> dict[str, Measurement]:
    """Measure several graphs round-robin: run r of every model happens before run r+1 of any.

    Each model has a plain session (wall time) and a profiling session (per-node times),
    run alternately. Interleaving makes every model see the same load from other processes
    on the machine, so models calibrated on and models evaluated on are comparable;
    medians over `runs` damp what remains.

    Args:
        graphs: label → IR graph (static input shapes; fused as it should run).
        runs: measured runs per model; warmup: runs before those, not recorded.
        threads: intra-op threads; seed: of the random standard-normal inputs.
        progress: called with (rounds done, rounds total) after every round.

    Returns:
        label → Measurement.

    Raises:
        InputError: a graph whose run cannot be bounded or is over the bounds
            (segcost.targets.run_bounds), before onnxruntime sees it.
    """
    import onnxruntime as ort

    from segcost.ir.feeds import random_feeds

    with tempfile.TemporaryDirectory(prefix="segcost-profile-") as directory:
        sessions = {}
        for index, (label, graph) in enumerate(graphs.items()):
            model = named_model(graph)
            payload = model.SerializeToString()
            where = f"{label}: " if len(graphs) > 1 else ""
            plain = bounded_session(graph, payload, session_options(threads), f"{where}onnxruntime measurement")
            profiled = bounded_session(graph, payload, session_options(threads, os.path.join(directory, f"m{index}")),
                                       f"{where}onnxruntime measurement")
            sessions[label] = (plain, profiled, random_feeds(model, graph, seed))
        wall_ms: dict[str, list[float]] = {label: [] for label in graphs}
        for round_index in range(warmup + runs):
            for label, (plain, profiled, feeds) in sessions.items():
                start = time.perf_counter()
                plain.run(None, feeds)
                if round_index >= warmup:
                    wall_ms[label].append((time.perf_counter() - start) * 1000)
                profiled.run(None, feeds)
            if progress is not None:
                progress(round_index + 1, warmup + runs)
        results = {}
        for label, (_, profiled, _) in sessions.items():
            with open(profiled.end_profiling()) as stream:
                events = json.load(stream)
            results[label] = _parse_profile(events, wall_ms[label], threads, runs, warmup, ort.__version__)
    return results


def _parse_profile(events: list[dict], wall_ms: list[float], threads: int, runs: int, warmup: int,
                   ort_version: str) -> Measurement:
    run_spans = [(event["ts"], event["ts"] + event["dur"]) for event in events if event.get("name") == "model_run"]
    kernels = [event for event in events if event.get("cat") == "Node" and event.get("name", "").endswith(
        "_kernel_time")]
    durations: dict[str, list[float]] = {}
    op_types: dict[str, str] = {}
    kernel_us_per_run = [0.0] * len(run_spans)
    for event in kernels:
        node = event["name"][: -len("_kernel_time")]
        durations.setdefault(node, []).append(float(event["dur"]))
        op_types[node] = event.get("args", {}).get("op_name", "")
        for index, (start, end) in enumerate(run_spans):
            if start <= event["ts"] <= end:
                kernel_us_per_run[index] += event["dur"]
                break
    measured_spans = list(zip(run_spans, kernel_us_per_run))[warmup:]
    framework_ms = median([(end - start - kernel) / 1000 for (start, end), kernel in measured_spans]) \
        if measured_spans else 0.0
    # The first `warmup` occurrences of each node belong to the warm-up runs.
    node_times = [NodeTime(node, op_types[node], median(times[warmup:] or times)) for node, times in durations.items()]
    return Measurement(node_times, wall_ms, max(0.0, framework_ms), threads, runs, warmup, ort_version=ort_version)


def map_to_layers(prepared: PreparedModel, measurement: Measurement) -> LayerMapping:
    """Group IR layers by the ORT node that did their work (see the module docstring)."""
    layers = [item.layer for item in prepared.features]
    names = {layer.name for layer in layers}
    fused_into = {item.layer.name: item.fused_into for item in prepared.features if item.fused_into}
    group_of: dict[str, LayerGroup] = {}
    groups: list[LayerGroup] = []
    unmapped: list[NodeTime] = []
    for node in measurement.node_times:
        anchor = _resolve(node.name, names, prepared.producers)
        if anchor is None:
            unmapped.append(node)
            continue
        while anchor in fused_into and fused_into[anchor] in names:
            anchor = fused_into[anchor]
        group = group_of.get(anchor)
        if group is None:
            group = group_of[anchor] = LayerGroup(anchor, [anchor])
            groups.append(group)
        group.ort_nodes.append(node.name)
        group.kernel_ms += node.median_us / 1000
    # Time between kernels (dispatch, allocation) is real latency the layers cause.
    gap_per_node = measurement.framework_ms / max(1, len(measurement.node_times))
    for group in groups:
        group.measured_ms = group.kernel_ms + gap_per_node * len(group.ort_nodes)
    consumers: dict[str, set[str]] = {}
    for item in prepared.features:
        for tensor in item.input_tensors:
            consumers.setdefault(tensor, set()).add(item.layer.name)
    for layer in layers:
        target = fused_into.get(layer.name)
        if layer.name not in group_of and target in group_of:
            _join(group_of, layer.name, group_of[target])
    changed = True
    while changed:
        changed = False
        for layer in reversed(layers):   # absorbed into what consumes it (e.g. a conv folded into the Add after it)
            if layer.name in group_of:
                continue
            users = {user for tensor in layer.outputs for user in consumers.get(tensor, ())}
            owners = {id(group_of.get(user)) for user in users}
            if users and len(owners) == 1 and all(user in group_of for user in users):
                changed |= _join(group_of, layer.name, group_of[next(iter(users))])
        for item in prepared.features:   # or into what produces its inputs
            if item.layer.name in group_of:
                continue
            sources = {prepared.producers[tensor] for tensor in item.input_tensors if tensor in prepared.producers}
            if sources and all(source in group_of for source in sources) and len(
                    {id(group_of[source]) for source in sources}) == 1:
                changed |= _join(group_of, item.layer.name, group_of[next(iter(sources))])
    for layer in layers:
        if layer.name not in group_of:
            group_of[layer.name] = LayerGroup(layer.name, [layer.name])
            groups.append(group_of[layer.name])
    return LayerMapping(groups, unmapped, gap_per_node)


def _resolve(ort_name: str, names: set[str], producers: dict[str, str]) -> str | None:
    candidates = [ort_name] + [ort_name[: -len(suffix)] for suffix in ORT_NAME_SUFFIXES if ort_name.endswith(suffix)]
    for candidate in candidates:
        if candidate in names:
            return candidate
        if candidate in producers:
            return producers[candidate]
    return None


def _join(group_of: dict[str, LayerGroup], layer: str, group: LayerGroup) -> bool:
    group_of[layer] = group
    group.layers.append(layer)
    return True


def compare(report: TargetReport, mapping: LayerMapping, measurement: Measurement) -> Comparison:
    """Per-group predicted vs measured ms, Spearman's rho over measured groups, whole-model latency."""
    predicted = {layer.name: layer.ms for layer in report.layers}
    op_types = {layer.name: layer.op_type for layer in report.layers}
    rows = []
    for group in mapping.groups:
        if group.measured_ms is None:
            continue
        kinds = sorted({op_types[name] for name in group.layers if predicted.get(name, 0) > 0}) or \
            [op_types[group.anchor]]
        rows.append(GroupComparison(group.anchor, list(group.layers), "+".join(kinds),
                                    sum(predicted.get(name, 0.0) for name in group.layers), group.measured_ms))
    rho = spearman([row.predicted_ms for row in rows], [row.measured_ms for row in rows])
    return Comparison(rows, rho, report.totals.latency_ms, measurement.median_wall_ms, measurement.robust_latency_ms,
                      mapping.unmapped_ms)


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 points."""
    if len(xs) < 3:
        return float("nan")
    rank_x, rank_y = _ranks(np.asarray(xs, dtype=float)), _ranks(np.asarray(ys, dtype=float))
    if rank_x.std() == 0 or rank_y.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2
        start = end + 1
    return ranks

"""Is the int8 model faster? Predicted on the target (cost model) and, optionally, measured.

* predicted: `segcost.targets.cost_model.estimate` of the fused float graph and of the QDQ
  graph on the same profile (target cpu -> the "cpu" profile, tda4vm -> "tda4vm"); the
  QDQ graph is costed as that runtime executes it (fused QLinearConv, Q/DQ nodes as
  elementwise layers).
* measured (`--measure`): both models in onnxruntime's CPUExecutionProvider with the
  session options of every segcost measurement (segcost.targets.measure.session_options,
  ORT_ENABLE_ALL), `threads` intra-op threads, 3 warm-up runs, then `runs` runs alternating
  between the models; the figure is the median process CPU time per run (CPU time, not
  wall time: the machine may be shared; with 1 thread they agree on an idle machine).

When int8 is not faster, the layers responsible are the ones whose predicted int8 time
exceeds their float time the most (Q/DQ nodes have no float twin: all their time counts).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import onnx

from segcost.ir import Graph

PROFILES = {"cpu": "cpu", "tda4vm": "tda4vm"}
WARMUP = 3


@dataclass
class SpeedReport:
    profile: str
    predicted_fp32_ms: float
    predicted_int8_ms: float
    slower_layers: list[tuple[str, str, float]] = field(default_factory=list)  # (layer, op, extra ms)
    measured_fp32_ms: float | None = None
    measured_int8_ms: float | None = None
    measure_setup: str = ""
    profile_dtype: str = ""   # the arithmetic the profile models; "float32": int8 kernels cost like float ones

    @property
    def predicted_ratio(self) -> float:
        return self.predicted_int8_ms / self.predicted_fp32_ms if self.predicted_fp32_ms else float("nan")

    @property
    def measured_ratio(self) -> float | None:
        if self.measured_fp32_ms is None or not self.measured_int8_ms or not self.measured_fp32_ms:
            return None
        return self.measured_int8_ms / self.measured_fp32_ms

    @property
    def int8_faster(self) -> bool | None:
        """Measured when measured; predicted only when the profile models int8 kernels; else None (unknown)."""
        if self.measured_ratio is not None:
            return self.measured_ratio < 1.0
        return None if self.profile_dtype == "float32" else self.predicted_ratio < 1.0


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


def predict(float_graph: Graph, int8_graph: Graph, target: str, top: int = 5) -> SpeedReport:
    """Cost-model latency of both graphs (static shapes) on the target's profile.

    `int8_graph` is changed (its weight DequantizeLinear nodes are folded): pass a copy, e.g.
    `pipeline.static_view(graph, copy=True)`, which is the one copy when the batch is symbolic too.
    """
    from segcost.targets.cost_model import estimate

    profile = PROFILES.get(target, "cpu")
    fp32, int8 = estimate(float_graph, profile), estimate(fold_weights(int8_graph), profile)
    float_ms = {layer.name: layer.ms for layer in fp32.layers}
    extra = [(layer.name, layer.op_type, layer.ms - float_ms.get(layer.name, 0.0)) for layer in int8.layers]
    extra = sorted((item for item in extra if item[2] > 0), key=lambda item: -item[2])[:top]
    return SpeedReport(profile, fp32.totals.latency_ms, int8.totals.latency_ms, extra, profile_dtype=int8.dtype)


def measure(report: SpeedReport, float_model: onnx.ModelProto, int8_model: onnx.ModelProto,
            feeds: dict[str, np.ndarray], runs: int = 20, threads: int = 1) -> SpeedReport:
    """Fill in the measured onnxruntime CPU times (median process CPU ms of `runs`, after warm-up)."""
    import onnxruntime as ort

    from segcost.targets.measure import session_options

    sessions = {name: ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                           providers=["CPUExecutionProvider"])
                for name, model in (("fp32", float_model), ("int8", int8_model))}
    for item in sessions.values():
        for _ in range(WARMUP):
            item.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, item in sessions.items():
            started = time.process_time()
            item.run(None, feeds)
            times[name].append(1000.0 * (time.process_time() - started))
    report.measured_fp32_ms = statistics.median(times["fp32"])
    report.measured_int8_ms = statistics.median(times["int8"])
    report.measure_setup = (f"onnxruntime {ort.__version__} CPUExecutionProvider, {threads} thread(s), "
                            f"median process CPU time of {runs} runs after {WARMUP} warm-up runs")
    return report

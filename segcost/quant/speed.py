"""Is the int8 model faster? Predicted on the target (cost model) and, optionally, measured.

* predicted: the per-precision model of `segcost.quant.mixed_cost.precision_costs` — the
  one `--mixed` chooses with — on the target (cpu: onnxruntime's float kernels, its int8
  kernels at the per-kind rates `mixed_cost.CPU_INT8_RATES` measured with
  benchmarks/int8_layer_rates.py, and float layers of the int8 graph off the blocked layout;
  tda4vm: int8 on the C7x+MMA, float on the ARM core). fp32 is every unit in float, int8 every unit the
  quantizer quantized in int8; Q/DQ work is paid only where a tensor crosses between a
  float and an int8 layer (onnxruntime fuses the rest into its QLinear* kernels).
* measured (`--measure`): both models in onnxruntime's CPUExecutionProvider with the
  session options of every segcost measurement (segcost.targets.measure.session_options,
  ORT_ENABLE_ALL), `threads` intra-op threads, 3 warm-up runs, then `runs` runs alternating
  between the models; the figure is the median process CPU time per run (CPU time, not
  wall time: the machine may be shared; with 1 thread they agree on an idle machine).

Verdict: int8 is faster when int8/fp32 < 1 - VERDICT_MARGIN, not faster when > 1 + VERDICT_MARGIN
(measured when measured, else predicted), and undecided (None) in between: a 5% band is about
the run-to-run spread of a median CPU time on a shared machine, and a cost-model ratio that
close to 1 names no layer. The layers responsible when int8 is not faster are the units whose
int8 latency plus the crossings they cause exceeds what they cost in float, i.e. whose move
alone to float lowers the predicted full-int8 latency, largest first.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx

from segcost.ir import Graph
from segcost.ir.runtime import open_session
from segcost.quant.cpu_int8 import CPU_INT8_RATES
from segcost.quant.mixed_cost import PrecisionCosts, precision_costs

WARMUP = 3
VERDICT_MARGIN = 0.05   # |int8/fp32 - 1| below this: no verdict (see the module docstring)


@dataclass
class SpeedReport:
    profile: str
    predicted_fp32_ms: float
    predicted_int8_ms: float
    slower_layers: list[tuple[str, str, float]] = field(default_factory=list)  # (layer, op, extra ms in int8)
    measured_fp32_ms: float | None = None
    measured_int8_ms: float | None = None
    measure_setup: str = ""
    profile_dtype: str = ""   # the int8 arithmetic the prediction models ("uint8" on cpu, the profile's on tda4vm)
    assumption: str = ""      # where the int8 rates come from, and what they were not measured on
    verdict_margin: float = VERDICT_MARGIN

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
        """Measured ratio when measured, else predicted: True below 1 - margin, False above 1 + margin, else None."""
        ratio = self.measured_ratio if self.measured_ratio is not None else self.predicted_ratio
        if ratio != ratio or abs(ratio - 1.0) <= self.verdict_margin:   # NaN or within the margin: undecided
            return None
        return ratio < 1.0


def speed_report(costs: PrecisionCosts, float_units: Iterable[str] = (), top: int = 5) -> SpeedReport:
    """fp32 (every unit float) vs int8 (every unit int8 but `float_units`, e.g. those `--mixed` keeps)
    latency in ms from `costs`, and the `top` int8 units that cost more in int8 than in float,
    crossings included (see the module docstring)."""
    floats = set(float_units)
    int8_ms = costs.latency_ms(floats)
    extra = [(label, unit.op_type, int8_ms - costs.latency_ms(floats | {label}))
             for label, unit in costs.units.items() if label not in floats]
    slower = sorted((item for item in extra if item[2] > 0), key=lambda item: -item[2])[:top]
    cpu = costs.profile != "tda4vm"
    assumption = CPU_INT8_RATES.source if cpu else ""
    return SpeedReport(costs.profile, costs.latency_ms(costs.units), int8_ms, slower,
                       profile_dtype="uint8" if cpu else "int8", assumption=assumption)


def predict(graph: Graph, static_float: Graph, static_int8: Graph, target: str, top: int = 5) -> SpeedReport:
    """Predicted fp32 and full-int8 latency (ms) on `target` ("cpu" or "tda4vm").

    `graph` is the fused float graph, `static_float`/`static_int8` the float and QDQ graphs with
    static shapes (neither is changed); see `segcost.quant.mixed_cost.precision_costs`.
    """
    return speed_report(precision_costs(graph, static_float, static_int8, target), top=top)


def measure(report: SpeedReport, float_model: onnx.ModelProto, int8_model: onnx.ModelProto,
            feeds: dict[str, np.ndarray], runs: int = 20, threads: int = 1) -> SpeedReport:
    """Fill in the measured onnxruntime CPU times (median process CPU ms of `runs`, after warm-up)."""
    import onnxruntime as ort

    from segcost.targets.measure import session_options

    sessions = {name: open_session(model, session_options(threads))
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

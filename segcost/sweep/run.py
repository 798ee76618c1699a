"""The task function of a sweep: build, export to ONNX and analyze one point, in a worker.

All torch/onnx work happens here, inside the worker process (local workers or Ray).
`run_point` never raises for a bad point: any exception becomes an error row. `run_group`
runs the points that share one export (same model, size, width and classes; they differ
in target or precision) so that the export, the float analysis, the fusion and the int8
quantization are done once per group; Ray sends `run_group` as its task, and the local
backend's workers (`serve_groups`) run groups the same way, reporting each point.

What is measured, per point:

* macs, params — of the exported float model (what `segcost analyze` reports for it);
* weight_bytes (with params) — of the deployed graph: the fused float graph (fp32) or the
  int8 QDQ graph;
* latency_ms, fallback_layers — the target cost model on the deployed graph;
* findings — verifier findings (settings.rules) on the folded and fused float model: the graph
  `segcost verify` checks by default (pipeline.verifier_findings, shared with it and check);
* ort_ms — median onnxruntime CPU latency of the deployed graph on this worker's machine.

int8 points quantize the fused graph with segcost.quant (synthetic calibration): in the
onnxruntime-friendly format for target "cpu" (or no target), symmetric int8 otherwise.

Steps that take seconds to minutes (export, analysis, fusion, calibration, latency) are
reported as they start through `progress.report_step` — the local backend's workers send them to
the driver on their pipe — so the first point of a sweep shows progress before it finishes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from multiprocessing.connection import Connection
from pathlib import Path
from statistics import median
from typing import Any

from segcost.sweep.factory import build_module, check_classes, describe_error
from segcost.sweep.points import Point
from segcost.sweep.progress import report_step, set_step_sink
from segcost.targets.run_bounds import bound_run_memory, bounded_session

ERROR_TEXT_LIMIT = 500
# What every point imports: loaded before a point's deadline is armed, and by the local backend's
# fork server once, so that a worker (one a group) starts with them in milliseconds.
WORKER_MODULES = ("torch", "torch.onnx", "onnxruntime", "segcost.frontends.torch", "segcost.frontends.onnx",
                  "segcost.analyzer", "segcost.pipeline", "segcost.targets.cost_model")

def _stepped(point: Point, step: str, compute: Callable[[], Any]) -> Callable[[], Any]:
    """`compute`, reporting `step` for `point` when it starts."""
    def run() -> Any:
        report_step(point, step)
        return compute()
    return run


class PointTimeout(Exception):
    """A point ran longer than its settings.point_timeout_s."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[list[bool]]:
    """Raise PointTimeout in the block after `seconds` (SIGALRM; the worker's main thread only).

    Yields a one-element list that is [True] once the deadline has fired, so a caller can tell
    a timeout from another error even when user code caught PointTimeout and raised something
    else. Python code is stopped at once; native code (an onnxruntime run) when it returns.
    """
    fired = [False]
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def expire(signum, frame):
        fired[0] = True
        raise PointTimeout(f"stopped after {seconds} s (settings.point_timeout_s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class PointResult:
    """The measures of one point (or why it failed); axis values live in the Point.

    Attributes:
        key: the point's content hash.
        status: "ok" or "error".
        error: one-line reason for an error row.
        macs, params: of the exported float model.
        weight_bytes: of the deployed (fused float or int8) graph.
        latency_ms: target cost-model latency; fallback_layers: layers placed off the accelerator.
        findings: number of verifier findings; finding_rules: "rule×count" list.
        ort_ms: measured onnxruntime latency (median).
        seconds: wall time spent on the point in the worker (the group's export counts to its first point).
        worker: host:pid that computed the point.
        cacheable: False when the worker died rather than the point failing (a re-run retries it).
    """

    key: str
    status: str = "ok"
    error: str = ""
    macs: int | None = None
    params: int | None = None
    weight_bytes: int | None = None
    latency_ms: float | None = None
    fallback_layers: int | None = None
    findings: int | None = None
    finding_rules: str | None = None
    ort_ms: float | None = None
    seconds: float = 0.0
    worker: str = ""
    cacheable: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointResult:
        """Rebuild from `asdict` output (unknown keys, e.g. from a newer version, are ignored)."""
        names = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in names})

    @classmethod
    def failed(cls, key: str, reason: str, cacheable: bool = True) -> PointResult:
        return cls(key, status="error", error=reason[:ERROR_TEXT_LIMIT], cacheable=cacheable)


class BuildMemo:
    """What the points of one group share: the export and everything derived from the float graph.

    The exported file's temporary directory lives as long as the memo (the IR reads weights
    lazily from it); use it as a context manager.
    """

    def __init__(self, parent: str | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.parent = parent   # where the temporary directory goes (None: the system's)
        self.directory: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> BuildMemo:
        return self

    def __exit__(self, *exc_info) -> None:
        self.values.clear()
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None

    def get(self, name: str, compute):
        """The memoized value `name`, computed by `compute()` on first use (a failure is remembered too)."""
        if name not in self.values:
            try:
                self.values[name] = (True, compute())
            except Exception as error:  # noqa: BLE001 - re-raised for every point that needs it
                self.values[name] = (False, error)
        succeeded, value = self.values[name]
        if not succeeded:
            raise value
        return value

    def workdir(self) -> Path:
        if self.directory is None:
            self.directory = tempfile.TemporaryDirectory(prefix="segcost-sweep-", dir=self.parent)
        return Path(self.directory.name)


def run_group(points: list[Point]) -> list[dict[str, Any]]:
    """Run points that share a build key in one worker; returns one `PointResult` dict per point."""
    _limit_threads()
    with BuildMemo() as memo:
        return [run_point(point, memo) for point in points]


def serve_groups(channel: Connection, workdir: str | None = None) -> None:
    """A local-backend worker process: run the groups the driver sends, reporting each point as it starts and ends.

    Receives one group (a list of Points) at a time on `channel`, None or an end of file to stop;
    sends ("start",) before each point, ("step", index, label, text) for each step the point
    reports (`progress.report_step`) and ("done", result dict) after it, so that the driver
    shows progress and knows which point is running when it must stop the worker (sweep.backends). Exports go
    under `workdir` (the driver removes it). SIGINT is ignored: Ctrl-C is the driver's to handle.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads()
    set_step_sink(lambda index, label, step: channel.send(("step", index, label, step)))
    try:
        with channel:
            while (points := channel.recv()) is not None:
                with BuildMemo(workdir) as memo:
                    for point in points:
                        channel.send(("start",))
                        channel.send(("done", run_point(point, memo)))
    except (EOFError, ConnectionError):
        return   # the driver closed the channel or stopped listening (an interrupt)


def run_point(point: Point, memo: BuildMemo | None = None) -> dict[str, Any]:
    """Export and analyze one point; an exception becomes an error row, never propagates.

    Args:
        point: the point.
        memo: shared results of the point's group (a fresh one when None).

    Returns:
        `asdict(PointResult)`: plain data, cheap to send back from a worker.
    """
    start = time.perf_counter()
    own_memo = memo is None
    memo = BuildMemo() if memo is None else memo
    fired = [False]
    _import_before_deadline()
    try:
        with deadline(point.settings.point_timeout_s) as fired:
            result = _measure(point, memo)
    except Exception as error:  # noqa: BLE001 - the sweep goes on; the row says why
        # A timeout says how busy the machine was, not what the point is: not cached, a re-run retries it.
        timed_out = fired[0] or isinstance(error, PointTimeout)
        result = PointResult.failed(point.key, timeout_reason(point.settings.point_timeout_s) if timed_out
                                    else describe_error(error), cacheable=not timed_out)
    finally:
        if own_memo:
            memo.__exit__(None, None, None)
    result.seconds = round(time.perf_counter() - start, 3)
    result.worker = f"{socket.gethostname()}:{os.getpid()}"
    return asdict(result)


def timeout_reason(seconds: int) -> str:
    """The error text of a point stopped at its deadline (by its SIGALRM, or by the backend killing its worker)."""
    return f"timed out: stopped after {seconds} s (settings.point_timeout_s)"


def _import_before_deadline() -> None:
    """Import what every point uses before its deadline is armed.

    The deadline is a SIGALRM; one that lands inside `import torch` (seconds on a busy machine)
    leaves a half-initialized module in sys.modules that breaks every later point of the worker.
    """
    for name in WORKER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass   # the point itself reports a missing extra


def _measure(point: Point, memo: BuildMemo) -> PointResult:
    result = PointResult(point.key)
    measures = set(point.measures)
    graph = memo.get("graph", _stepped(point, "building and exporting to ONNX", lambda: _export(point, memo)))
    # Float-graph measures first: fusion below rewrites the graph in place.
    analysis = memo.get("analysis", _stepped(point, "analyzing", lambda: _analyze(graph)))
    if "macs" in measures:
        result.macs = analysis.totals.macs
    if "params" in measures:
        result.params = analysis.totals.params
    if "findings" in measures:   # fuses `graph` in place, as the deployed graph below is: target_pipeline
        findings = memo.get("findings", _stepped(point, "verifying",
                                                 lambda: _findings(graph, point.settings.rules)))
        result.findings = len(findings)
        result.finding_rules = _rule_counts(findings)
    if not measures & {"params", "latency", "ort_latency"} and point.precision == "fp32":
        return result
    fused = memo.get("fused", _stepped(point, "fusing", lambda: _fuse(graph)))
    quant_target = "cpu" if point.target in (None, "cpu") else "tda4vm"
    deployed = fused if point.precision == "fp32" else memo.get(
        f"int8-{quant_target}", _stepped(point, f"quantizing ({quant_target})",
                                         lambda: _quantize(fused, quant_target, point.settings.calib_size, point)))
    deployment = "fp32" if point.precision == "fp32" else f"int8-{quant_target}"
    if "params" in measures:
        result.weight_bytes = memo.get(f"weights-{deployment}", lambda: _analyze(deployed).totals.weight_bytes)
    if "latency" in measures:
        from segcost.targets.cost_model import estimate

        assert point.target is not None, "spec.py gives every point of a latency sweep a target"
        report_step(point, f"estimating latency on {point.target}")
        costed = memo.get(f"runtime-{deployment}-{point.target}", lambda: _runtime_view(deployed, point.target))
        totals = estimate(costed, point.target).totals
        result.latency_ms = round(float(totals.latency_ms), 6)
        result.fallback_layers = int(totals.fallback_layers)
    if "ort_latency" in measures:
        result.ort_ms = memo.get(f"ort-{deployment}", _stepped(point, "measuring onnxruntime latency",
                                                               lambda: _ort_latency_ms(deployed, point.settings)))
    return result


def _limit_threads() -> None:
    """One intra-op thread per worker: the parallelism of a sweep comes from its workers."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def _export(point: Point, memo: BuildMemo):
    from segcost.frontends import onnx as onnx_frontend
    from segcost.frontends.torch import export

    module = build_module(point)
    path = export(module, (1, 3, point.height, point.width), memo.workdir() / "model.onnx")
    graph = onnx_frontend.load(path)
    if point.is_factory and point.num_classes is not None:
        check_classes(point, graph)
    return graph


def _analyze(graph):
    from segcost.analyzer import analyze

    return analyze(graph)


def _rule_counts(findings: list) -> str:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return ";".join(f"{rule}×{count}" for rule, count in sorted(counts.items()))


def _findings(graph, rules: str) -> list:
    """The findings `segcost verify` reports (its default: on the folded and fused graph; `graph` is fused in place)."""
    from segcost.pipeline import verifier_findings

    return verifier_findings(graph, rules)


def _fuse(graph):
    """Fold constants and BatchNorm and fuse activations in place, as deployment toolchains do (a no-op on a graph
    _findings fused already)."""
    from segcost.pipeline import target_pipeline

    return target_pipeline(graph)


def _quantize(fused, quant_target: str, calib_size: int, point: Point | None = None):
    from segcost.quant.quantize import QuantizeOptions, quantize_graph

    def calibrating(done: int, total: int) -> None:
        if point is not None:
            report_step(point, f"calibrating {done}/{total}")

    bound_run_memory(fused, "int8 calibration")   # calibration runs the model in onnxruntime
    root = logging.getLogger()  # onnxruntime.quantization advises "pre-processing" on the root logger
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return quantize_graph(fused, QuantizeOptions(target=quant_target, calib_size=calib_size), calibrating).graph
    finally:
        root.setLevel(level)


def _runtime_view(deployed, target: str):
    """`deployed` as `target`'s runtime runs it (pipeline.runtime_passes, e.g. onnxruntime's Pad fusion on cpu),
    as `segcost cost` prices it; a copy when there is something to rewrite, since the group's points on other
    targets share `deployed`."""
    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.pipeline import build_pipeline, runtime_passes

    passes = runtime_passes(target)
    if not passes:
        return deployed
    return build_pipeline(list(passes), written=False)(load_model(to_model(deployed))).graph


def _ort_latency_ms(graph, settings) -> float:
    from segcost.ir.feeds import random_feeds
    from segcost.ir.onnx_io import to_model
    from segcost.targets.measure import session_options

    model = to_model(graph)
    session = bounded_session(graph, model, session_options(settings.ort_threads), "onnxruntime latency")
    feeds = random_feeds(model, graph)
    times = []
    for run in range(settings.ort_warmup + settings.ort_runs):
        start = time.perf_counter()
        session.run(None, feeds)
        if run >= settings.ort_warmup:
            times.append((time.perf_counter() - start) * 1000)
    return round(median(times), 4)

"""The sweep's progress line on stderr: points done, cached, errors, rate and ETA, and the step
(export, analysis, calibration ...) a point in flight has reached.

On a terminal the line is redrawn in place; otherwise (logs, CI) a line is printed at most
every `interval` seconds and at the end — and at every step until the first point is done,
so a sweep whose first export takes minutes says what it is doing from the start. The rate
and ETA count only the points computed in this run (cached points cost nothing).

Steps start in the workers: `report_step` hands them to the process's sink, which in a
local-backend worker sends them on the worker's pipe to the driver (`run.serve_groups`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any, TextIO

BAR_WIDTH = 20
LOG_INTERVAL_SECONDS = 5.0

StepSink = Callable[[int, str, str], None]   # (point index, point label, step text)
_step_sink: StepSink | None = None


def set_step_sink(sink: StepSink | None) -> None:
    """Where this process reports the steps of the points it runs (None: nowhere)."""
    global _step_sink
    _step_sink = sink


def report_step(point: Any, step: str) -> None:
    """Tell the sink that `point` (a sweep Point) starts `step` ("exporting to ONNX", "calibrating 3/16").

    Never raises: progress must not fail a point.
    """
    if _step_sink is None:
        return
    try:
        _step_sink(point.index, point.label, step)
    except Exception:  # noqa: BLE001 - progress must never fail a point (a closed queue at shutdown)
        pass


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressLine:
    """Progress of one sweep run.

    Args:
        stream: where to write (stderr).
        total: points in the sweep.
        to_compute: points this run has to compute (the rest come from the cache).
        interval: seconds between lines when `stream` is not a terminal.
    """

    def __init__(self, stream: TextIO, total: int, to_compute: int, interval: float = LOG_INTERVAL_SECONDS):
        self.stream = stream
        self.total = total
        self.to_compute = to_compute
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = float("-inf")
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.counts = (0, 0, 0, 0)   # done, cached, computed, errors as last reported

    def update(self, done: int, cached: int, computed: int, errors: int, label: str = "", final: bool = False) -> None:
        """Report `done` of `total` points (`cached` of them from the cache, `computed` in this run)."""
        self.counts = (done, cached, computed, errors)
        self._show(label, final, force=final)

    def step(self, label: str, step: str) -> None:
        """The point `label` started `step` (in a worker): shown with the last counts. Off a terminal it is
        printed at once until the first point of this run is done, then at most every `interval` seconds."""
        self._show(f"{label}: {step}", False, force=self.counts[2] == 0)

    def _show(self, label: str, final: bool, force: bool) -> None:
        now = time.monotonic()
        if not force and not self.interactive and now - self.last_line < self.interval:
            return
        self.last_line = now
        text = self.render(*self.counts, now - self.started, label)
        if self.interactive:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:width].ljust(width) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def render(self, done: int, cached: int, computed: int, errors: int, elapsed: float, label: str) -> str:
        fraction = done / self.total if self.total else 1.0
        filled = int(round(BAR_WIDTH * fraction))
        parts = [f"sweep [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {100 * fraction:3.0f}%"]
        if cached:
            parts.append(f"{cached} cached")
        if errors:
            parts.append(f"{errors} error{'s' if errors != 1 else ''}")
        if computed and elapsed > 0:
            rate = computed / elapsed
            remaining = max(0, self.to_compute - computed)
            parts.append(f"{60 * rate:.1f} points/min")
            parts.append(f"ETA {format_duration(remaining / rate)}" if remaining else
                         f"took {format_duration(elapsed)}")
        elif self.to_compute:
            parts.append("ETA …")
        if label:
            parts.append(label)
        return " | ".join(parts)

"""Running a sweep: expand the spec, take finished points from the cache, run the rest, stream rows.

The driver process only expands points, schedules groups on a backend and writes files;
torch is imported in the workers alone (segcost.sweep.run).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from segcost.errors import InputError, SegcostError
from segcost.sweep.backends import make_backend
from segcost.sweep.points import Point, expand
from segcost.sweep.progress import ProgressLine
from segcost.sweep.run import PointResult
from segcost.sweep.spec import SweepSpec
from segcost.sweep.store import PointCache, ResultTable, SweepRow, table_columns


@dataclass
class SweepOptions:
    """How to run a sweep.

    Attributes:
        backend: "local" (process pool) or "ray".
        address: Ray cluster address ("auto", host:port); None starts a local Ray cluster.
        workers: parallel workers (default: the machine's or the Ray cluster's CPUs).
        cache_dir: directory of finished points (default: the output's name with ".cache").
        use_cache: take finished points from the cache (results are stored either way).
        retry_errors: recompute points whose cached result is an error row.
        max_points: compute at most this many points in this run (the rest stay for a re-run).
        fingerprint: code fingerprint for the content hashes (default: computed from the source).
    """

    backend: str = "local"
    address: str | None = None
    workers: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    retry_errors: bool = False
    max_points: int | None = None
    fingerprint: str | None = None


@dataclass
class SweepSummary:
    """What a sweep run did; `rows` holds every finished point in table order.

    Attributes:
        rows: finished points (from the cache or computed now), in point order.
        total: points in the sweep.
        cached: rows taken from the cache.
        computed: rows computed in this run.
        errors: error rows among `rows`.
        seconds: wall time of the run.
        backend: backend name; workers: its worker count (None when nothing ran).
        outputs: result files written.
        cache_dir: the point cache.
        notes: axis values that did not apply, and similar remarks for people.
    """

    rows: list[SweepRow]
    total: int
    cached: int
    computed: int
    errors: int
    seconds: float
    backend: str
    workers: int | None
    outputs: list[Path] = field(default_factory=list)
    cache_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - len(self.rows)

    @property
    def points_per_minute(self) -> float:
        return 60.0 * self.computed / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One line for people: counts, rate, what is left."""
        text = (f"{self.total} points: {self.computed} computed, {self.cached} from cache, {self.errors} "
                f"error{'s' if self.errors != 1 else ''}; {self.seconds:.1f} s")
        if self.computed:
            text += f" ({self.points_per_minute:.1f} points/min, {self.backend} backend, {self.workers} workers)"
        if self.remaining:
            text += f"; {self.remaining} not run yet (re-run the same command to continue)"
        return text


class SweepInterrupted(SegcostError):
    """The sweep was interrupted (Ctrl-C, SIGTERM); finished points are in the cache and the table."""

    exit_code = 130

    def __init__(self, summary: SweepSummary):
        super().__init__(f"interrupted after {len(summary.rows)} of {summary.total} points "
                         f"({summary.computed} computed in this run); re-run the same command to resume")
        self.summary = summary


def default_cache_dir(output: str | os.PathLike) -> Path:
    """results.csv → results.cache (beside the table)."""
    return Path(output).with_suffix(".cache")


def group_points(points: list[Point]) -> list[list[Point]]:
    """Points sharing one export (same build key), in first-appearance order."""
    groups: dict[tuple, list[Point]] = {}
    for point in points:
        groups.setdefault(point.build_key, []).append(point)
    return list(groups.values())


def run_sweep(spec: SweepSpec, output: str | os.PathLike, options: SweepOptions | None = None,
              progress_stream: TextIO | None = None) -> SweepSummary:
    """Run every point of `spec` that the cache does not hold and write the result table.

    Args:
        spec: a validated spec.
        output: the result table (.csv, .jsonl or .parquet; the other formats go beside it).
        options: backend, workers, cache behaviour.
        progress_stream: where the progress line goes (None: no progress line).

    Returns:
        The summary, with every finished row.

    Raises:
        SweepInterrupted: on KeyboardInterrupt (SIGINT, or SIGTERM turned into one by the CLI);
            the table then holds the finished points.
    """
    options = options or SweepOptions()
    if options.max_points is not None and options.max_points < 0:
        raise InputError("max_points must be 0 or more")
    started = time.monotonic()
    expansion = expand(spec, options.fingerprint)
    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir(output)
    cache = PointCache(cache_dir)
    summary = SweepSummary([], len(expansion.points), 0, 0, 0, 0.0, options.backend, None, cache_dir=cache_dir,
                           notes=list(expansion.notes))
    interrupted = False
    with ResultTable(output, table_columns(spec.measures)) as table:
        try:
            todo = _take_cached(expansion.points, cache, options, summary, table)
            if options.max_points is not None:
                todo = todo[:options.max_points]
            progress = None if progress_stream is None else ProgressLine(progress_stream, summary.total, len(todo))
            if todo:
                _compute(todo, cache, options, summary, table, progress)
            if progress is not None:
                progress.update(len(summary.rows), summary.cached, summary.computed, summary.errors, final=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            summary.rows.sort(key=lambda row: row.point.index)
            summary.seconds = time.monotonic() - started
            summary.outputs = table.finish(summary.rows)
    if interrupted:
        raise SweepInterrupted(summary)
    return summary


def _take_cached(points: list[Point], cache: PointCache, options: SweepOptions, summary: SweepSummary,
                 table: ResultTable) -> list[Point]:
    """Rows for the points the cache holds; returns the points still to compute."""
    todo = []
    for point in points:
        result = cache.load(point.key) if options.use_cache else None
        if result is None or (options.retry_errors and result.status != "ok"):
            todo.append(point)
            continue
        _add_row(SweepRow(point, result, from_cache=True), summary, table)
    return todo


def _compute(todo: list[Point], cache: PointCache, options: SweepOptions, summary: SweepSummary,
             table: ResultTable, progress: ProgressLine | None) -> None:
    with make_backend(options.backend, options.workers, options.address) as backend:
        summary.workers = backend.workers
        on_step = None if progress is None else lambda index, label, step: progress.step(label, step)
        if progress is not None:
            progress.step(todo[0].label, f"starting {backend.workers} worker{'s' if backend.workers != 1 else ''}")
        for group, results in backend.run(group_points(todo), on_step):
            for point, data in zip(group, results):
                result = PointResult.from_dict(data)
                cache.store(result)
                _add_row(SweepRow(point, result), summary, table)
                if progress is not None:
                    progress.update(len(summary.rows), summary.cached, summary.computed, summary.errors, point.label)


def _add_row(row: SweepRow, summary: SweepSummary, table: ResultTable) -> None:
    summary.rows.append(row)
    table.append(row)
    if row.from_cache:
        summary.cached += 1
    else:
        summary.computed += 1
    if not row.ok:
        summary.errors += 1

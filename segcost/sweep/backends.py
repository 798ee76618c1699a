"""Where a sweep's groups of points run: a local process pool or a Ray cluster.

Both backends send the same task, `segcost.sweep.run.run_group`, and yield
`(group, results)` as groups finish, in completion order. A group whose worker dies
(segfault, out of memory) is not the point's fault: the local backend re-runs the groups
that were in flight one at a time in a fresh single-worker pool to find the culprit, and
only a group that kills its worker alone becomes error rows, marked not cacheable so that
a re-run tries again. Ray retries such tasks itself (`max_retries`).

`run(groups, on_step)` also passes the steps the local workers report (export, analysis,
calibration: `progress.report_step`) to `on_step(index, label, step)` in the driver, read
from a queue between completions; Ray tasks report no steps.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from typing import Any

from segcost.errors import InputError
from segcost.sweep.points import Point
from segcost.sweep.progress import queue_step_sink
from segcost.sweep.run import PointResult, describe_error, run_group

Group = list[Point]
OnStep = Callable[[int, str, str], None]
RAY_TASK_RETRIES = 2
STEP_POLL_SECONDS = 0.2   # how often the driver looks for workers' steps while points run


def crashed_results(group: Group, reason: str) -> list[dict[str, Any]]:
    """Error rows for a group whose worker failed; not cached, so a re-run retries them."""
    return [asdict(PointResult.failed(point.key, reason, cacheable=False)) for point in group]


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported torch and the task once.

    Each worker then starts in milliseconds instead of importing torch itself (seconds), and
    never inherits the driver's state (threads, open sessions); the server outlives one pool,
    so the next sweep in the same process starts at once too.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segcost.sweep.run", "torch"])  # a missing module is skipped
    return context


class LocalBackend:
    """A concurrent.futures process pool on this machine (see `worker_context`)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.executor: ProcessPoolExecutor | None = None
        self.steps: Any = None   # the workers' step queue while run() has an on_step

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def run(self, groups: list[Group], on_step: OnStep | None = None) -> Iterator[tuple[Group, list[dict[str, Any]]]]:
        waiting = deque(groups)
        suspects: deque[Group] = deque()
        self.steps = worker_context().Queue() if on_step is not None else None
        try:
            while waiting or suspects:
                if suspects:
                    yield from self._drain(deque([suspects.popleft()]), 1, None, on_step)
                else:
                    yield from self._drain(waiting, self.workers, suspects, on_step)
        finally:   # every pool of this run is closed by now (_drain): nothing writes to the queue
            if self.steps is not None:
                self.steps.close()
                self.steps = None

    def _pass_steps(self, on_step: OnStep | None) -> None:
        """Hand every step the workers have reported so far to `on_step`."""
        if on_step is None or self.steps is None:
            return
        while True:
            try:
                index, label, step = self.steps.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                return
            on_step(index, label, step)

    def _drain(self, waiting: deque[Group], workers: int, suspects: deque[Group] | None,
               on_step: OnStep | None = None) -> Iterator[tuple[Group, list[dict[str, Any]]]]:
        """Run `waiting` with at most `workers` groups in flight, until done or the pool breaks.

        When the pool breaks, the groups in flight go to `suspects` (or, with suspects None —
        a group running alone —, become error rows).
        """
        # A worker without a step queue gets a sink of None: it reports nothing.
        self.executor = ProcessPoolExecutor(max_workers=min(workers, len(waiting)), mp_context=worker_context(),
                                            initializer=queue_step_sink, initargs=(self.steps,))
        in_flight: dict[Any, Group] = {}
        try:
            while waiting or in_flight:
                while waiting and len(in_flight) < workers:
                    group = waiting.popleft()
                    in_flight[self.executor.submit(run_group, group)] = group
                done, _ = wait(in_flight, timeout=STEP_POLL_SECONDS if on_step else None,
                               return_when=FIRST_COMPLETED)
                self._pass_steps(on_step)
                broken = False
                for future in done:
                    group = in_flight.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        broken = True
                        if suspects is None:
                            yield group, crashed_results(group, "worker process died (crash or out of memory)")
                        else:
                            suspects.append(group)
                        continue
                    except Exception as error:  # noqa: BLE001 - e.g. a point that cannot be pickled
                        results = crashed_results(group, f"task failed: {describe_error(error)}")
                    yield group, results
                if broken:
                    if suspects is not None:
                        suspects.extend(in_flight.values())
                    in_flight.clear()
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the pool now: queued groups are cancelled and running workers terminated."""
        executor, self.executor = self.executor, None
        if executor is None:
            return
        # The pool's worker processes (a private attribute): terminating them makes an
        # interrupt prompt instead of waiting for exports in progress to finish.
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


class RayBackend:
    """Ray tasks: `address` joins a running cluster ("auto" or host:port); None starts a local one.

    A local cluster gets `workers` CPUs (default: all of this machine's) and is shut down
    by `close`; a Ray runtime that is already initialised in this process is used as is.
    At most `workers` groups (default: the cluster's CPUs) are in flight at a time.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        self.workers = workers
        self.address = address
        self.started = False
        self.in_flight: dict[Any, Group] = {}
        self.ray: Any = None

    def __enter__(self) -> RayBackend:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("the ray backend needs Ray: pip install 'segcost[ray]' (or pip install ray)") from None
        self.ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": "error", "include_dashboard": False}
            if self.address:
                try:
                    ray.init(address=self.address, **options)
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise InputError(f"cannot join the Ray cluster at {self.address!r}: {describe_error(error)}") \
                        from None
            else:
                ray.init(num_cpus=self.workers or os.cpu_count() or 1, **options)
            self.started = True
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, groups: list[Group], on_step: OnStep | None = None) -> Iterator[tuple[Group, list[dict[str, Any]]]]:
        """As LocalBackend.run; `on_step` is not called (Ray tasks report no steps)."""
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=RAY_TASK_RETRIES)(run_group)
        waiting = deque(groups)
        assert self.workers is not None, "start() sets the worker count"
        while waiting or self.in_flight:
            while waiting and len(self.in_flight) < self.workers:
                group = waiting.popleft()
                self.in_flight[task.remote(group)] = group
            ready, _ = ray.wait(list(self.in_flight), num_returns=1)
            for reference in ready:
                group = self.in_flight.pop(reference)
                try:
                    results = ray.get(reference)
                except Exception as error:  # noqa: BLE001 - RayError subclasses: worker or node died
                    results = crashed_results(group, f"ray task failed: {describe_error(error)}")
                yield group, results

    def close(self) -> None:
        """Cancel groups in flight; shut Ray down if this backend started it."""
        if self.ray is None:
            return
        for reference in self.in_flight:
            try:
                self.ray.cancel(reference, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self.in_flight.clear()
        if self.started:
            self.ray.shutdown()
            self.started = False


def make_backend(name: str, workers: int | None = None, address: str | None = None):
    """A backend by name ("local" or "ray"); an address is only meaningful for Ray."""
    if name == "local":
        if address:
            raise InputError("--address is for the ray backend (use --backend ray)")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(workers, address)
    raise InputError(f"unknown backend {name!r} (local or ray)")

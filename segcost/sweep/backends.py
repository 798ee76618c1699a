"""Where a sweep's groups of points run: local worker processes or a Ray cluster.

The local backend's worker processes run one group at a time and report every point as it
starts and ends (`segcost.sweep.run.serve_groups`); Ray runs `segcost.sweep.run.run_group` as
a task. Both yield `(points, results)` as points or groups finish, in completion order.

Locally, the backend knows which point each worker is running, so a point pays for its own
failures only: a worker that dies (segfault, out of memory) or a point still running
HARD_GRACE_SECONDS past its deadline (stuck in native code, where the worker's own SIGALRM
cannot stop it) ends that worker; the point becomes an error row, marked not cacheable so
that a re-run tries again, and the rest of its group goes to another worker. Ray retries
tasks whose worker died itself (`max_retries`); there the deadline is the worker's SIGALRM.

`run(groups, on_step)` also hands the steps a local worker reports while a point runs (export,
analysis, calibration: `progress.report_step`, sent on the worker's pipe) to
`on_step(index, label, step)` in the driver as they arrive; Ray tasks report no steps.

Ctrl-C reaches the driver alone: the fork server is started with SIGINT ignored, which the
workers it forks inherit, and the driver stops the workers (no traceback from each process).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from typing import Any

from segcost.errors import InputError
from segcost.sweep.points import Point
from segcost.sweep.run import WORKER_MODULES, PointResult, describe_error, run_group, serve_groups, timeout_reason

Group = list[Point]
OnStep = Callable[[int, str, str], None]
RAY_TASK_RETRIES = 2
HARD_GRACE_SECONDS = 2.0   # past a point's deadline, before its worker is killed (the SIGALRM had its turn)
DIED = "worker process died (crash or out of memory)"


def crashed_results(group: Group, reason: str) -> list[dict[str, Any]]:
    """Error rows for a group whose worker failed; not cached, so a re-run retries them."""
    return [asdict(PointResult.failed(point.key, reason, cacheable=False)) for point in group]


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported torch and the task once (run.WORKER_MODULES).

    Each worker then starts in milliseconds instead of importing torch itself (seconds), and
    never inherits the driver's state (threads, open sessions); the server outlives one sweep,
    so the next sweep in the same process starts at once too.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segcost.sweep.run", *WORKER_MODULES])  # a missing module is skipped
    _start_fork_server()
    return context


def _start_fork_server() -> None:
    """Start the fork server (if it is not running) with SIGINT ignored.

    The server keeps that disposition while it imports torch (seconds: Ctrl-C then would print
    its traceback) and hands it to every worker it forks (multiprocessing.forkserver restores
    the handlers it found for each child).
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        return   # started on first use instead, as multiprocessing does; the workers ignore SIGINT themselves
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _Worker:
    """A worker process (`run.serve_groups`) and the group it runs: `done` points reported, the next one running."""

    process: Any
    channel: Connection
    workdir: str
    group: Group | None = None
    done: int = 0
    running_since: float | None = None   # time.monotonic() when the running point reported its start

    def deadline(self) -> float | None:
        """When the worker is killed (None: no point running, or no timeout)."""
        if self.group is None or self.running_since is None:
            return None
        seconds = self.group[self.done].settings.point_timeout_s
        return self.running_since + seconds + HARD_GRACE_SECONDS if seconds > 0 else None


class LocalBackend:
    """At most `workers` worker processes on this machine (see `worker_context`), each running a group at a time."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.pool: list[_Worker] = []

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def run(self, groups: list[Group], on_step: OnStep | None = None) -> Iterator[tuple[Group, list[dict[str, Any]]]]:
        context = worker_context()
        waiting = deque(groups)
        try:
            while waiting or any(worker.group is not None for worker in self.pool):
                idle = [worker for worker in self.pool if worker.group is None]
                while len(idle) < len(waiting) and len(self.pool) < self.workers:
                    idle.append(self._spawn(context))
                for worker in idle[:len(waiting)]:
                    group = waiting.popleft()
                    try:
                        worker.channel.send(group)
                    except OSError:   # it died while idle
                        self._end(worker)
                        yield group, crashed_results(group, DIED)
                        continue
                    except Exception as error:  # noqa: BLE001 - e.g. a point that cannot be pickled
                        yield group, crashed_results(group, f"task failed: {describe_error(error)}")
                        continue
                    worker.group, worker.done, worker.running_since = group, 0, None
                busy = [worker for worker in self.pool if worker.group is not None]
                if not busy:
                    continue
                deadlines = [deadline for worker in busy if (deadline := worker.deadline()) is not None]
                wait([worker.channel for worker in busy], max(0.0, min(deadlines) - time.monotonic()) if deadlines
                     else None)
                for worker in busy:
                    yield from self._collect(worker, waiting, on_step)
        finally:
            self.close()

    def _spawn(self, context) -> _Worker:
        parent_end, child_end = context.Pipe()
        workdir = tempfile.mkdtemp(prefix="segcost-sweep-")   # removed here even when the worker is killed
        process = context.Process(target=serve_groups, args=(child_end, workdir), name="segcost-sweep-worker")
        try:
            process.start()
        except BaseException:   # an interrupt while starting: the worker, if it started, finds its pipe closed
            parent_end.close()
            if process.pid is not None:
                process.kill()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            child_end.close()   # the worker's copy is the only one left: its exit is an end of file here
        worker = _Worker(process, parent_end, workdir)
        self.pool.append(worker)
        return worker

    def _collect(self, worker: _Worker, waiting: deque[Group],
                 on_step: OnStep | None = None) -> Iterator[tuple[Group, list[dict[str, Any]]]]:
        """Yield what `worker` has finished; end it when it died or its point overran (the rest of the group waits).

        Steps it reported go to `on_step` on the way.
        """
        exited = False
        try:
            while worker.group is not None and worker.channel.poll():
                message = worker.channel.recv()
                if message[0] == "start":
                    worker.running_since = time.monotonic()
                    continue
                if message[0] == "step":
                    if on_step is not None:
                        on_step(*message[1:])
                    continue
                group, worker.done, worker.running_since = worker.group, worker.done + 1, None
                if worker.done == len(group):
                    worker.group = None
                yield group[worker.done - 1:worker.done], [message[1]]
        except (EOFError, OSError):
            exited = True   # the worker's end of the pipe closed: it has exited
        if worker.group is None:
            if exited:
                self._end(worker)
            return
        deadline = worker.deadline()
        if exited:
            reason = DIED
        elif deadline is not None and time.monotonic() >= deadline:
            reason = timeout_reason(worker.group[worker.done].settings.point_timeout_s)
        else:
            return
        group, done, since = worker.group, worker.done, worker.running_since
        self._end(worker)
        failed = PointResult.failed(group[done].key, reason, cacheable=False)
        if since is not None:
            failed.seconds = round(time.monotonic() - since, 3)
        yield group[done:done + 1], [asdict(failed)]
        if done + 1 < len(group):
            waiting.appendleft(group[done + 1:])

    def _end(self, worker: _Worker) -> None:
        """Stop `worker` (at once when it is running a group) and release what it held."""
        self.pool.remove(worker)
        if worker.group is not None and worker.process.is_alive():
            worker.process.kill()   # SIGKILL: native code that ignores everything else stops too
        worker.channel.close()      # an idle worker sees the end of file and exits
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        shutil.rmtree(worker.workdir, ignore_errors=True)

    def close(self) -> None:
        """Stop every worker now (the sweep ended, was interrupted, or the caller stopped reading)."""
        for worker in list(self.pool):
            self._end(worker)


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

"""Pass infrastructure in the style of onnx-ir's pass infra and torch.fx's PassManager.

A pass is a small object with a `name` and ``__call__(graph) -> PassResult``. The base
class's ``__call__`` is the template: ``requires(graph)`` → ``call(graph)`` → type-check the
result → ``ensures(result.graph)``, wrapping failures in typed errors that say which pass
failed. `PassManager` runs a list of passes (optionally to a fixed point), verifies the
graph after each one, and records what each changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from segcost.errors import SegcostError
from segcost.ir import Graph, verify_graph

logger = logging.getLogger(__name__)


class InvariantError(SegcostError):
    """A pass's pre- or postcondition does not hold (a bug or an unsupported graph)."""


class PreconditionError(InvariantError):
    pass


class PostconditionError(InvariantError):
    pass


class PassError(SegcostError):
    """A pass raised; the message names the pass and the passes that ran before it."""


@dataclass
class PassResult:
    """What a pass returns: the (possibly new) graph, whether it changed, and notes for people."""

    graph: Graph
    modified: bool
    notes: list[str] = field(default_factory=list)


class PassBase:
    """Base of every pass.

    Attributes:
        name: short identifier used on the command line (``--passes a,b``) and in reports.
        in_place: the pass mutates the graph it is given (and returns it).
        changes_input: the pass may change its input graph (False for analysis-only passes).
    """

    name: str = "pass"
    in_place: bool = True
    changes_input: bool = True

    def requires(self, graph: Graph) -> None:
        """Raise PreconditionError if the graph cannot be handled."""

    def ensures(self, graph: Graph) -> None:
        """Raise PostconditionError if the result is not well formed."""
        try:
            verify_graph(graph)
        except SegcostError as error:
            raise PostconditionError(f"{self.name} left an invalid graph: {error}") from error

    def call(self, graph: Graph) -> PassResult:
        raise NotImplementedError

    def __call__(self, graph: Graph) -> PassResult:
        self.requires(graph)
        result = self.call(graph)
        if not isinstance(result, PassResult):
            raise PassError(f"pass {self.name} returned {type(result).__name__}, not PassResult")
        if self.in_place and result.graph is not graph:
            raise PassError(f"pass {self.name} is declared in place but returned a new graph")
        if not self.changes_input and result.modified:
            raise PassError(f"pass {self.name} is analysis-only but reported a modification")
        self.ensures(result.graph)
        return result


@dataclass
class PassRecord:
    """What one pass run changed, for the per-pass summary."""

    name: str
    iteration: int
    modified: bool
    nodes_before: int
    nodes_after: int
    macs_before: int
    macs_after: int
    seconds: float
    notes: list[str]


@dataclass
class PipelineResult(PassResult):
    records: list[PassRecord] = field(default_factory=list)


class PassManager(PassBase):
    """Run `steps` in order; repeat until nothing changes when `fixed_point` is set.

    Attributes:
        steps: the passes.
        check_each_pass: run the IR verifier after every pass (each pass's `ensures`).
        fixed_point: repeat the whole list until no pass modifies the graph.
        max_iterations: bound on fixed-point repetitions.
        after_each: callback(record, graph) — e.g. ``--print-after-all``.
        metric: callback(graph) -> int recorded before and after every modifying pass (the
            MACs column of `segcost optimize`, given by the caller as analyzer.count_macs: passes
            sit below the analyzer and do not import it); None records 0.
    """

    name = "pipeline"
    in_place = False  # a functional step may hand back a new graph

    def __init__(self, steps: Sequence[PassBase], check_each_pass: bool = True, fixed_point: bool = False,
                 max_iterations: int = 10, metric: Callable[[Graph], int] | None = None,
                 after_each: Callable[[PassRecord, Graph], None] | None = None):
        self.steps = list(steps)
        self.check_each_pass = check_each_pass
        self.fixed_point = fixed_point
        self.max_iterations = max_iterations
        self.metric = metric
        self.after_each = after_each

    def __call__(self, graph: Graph) -> PipelineResult:
        """PassBase's checked run; `call` returns a PipelineResult, which this tells type checkers."""
        return cast(PipelineResult, super().__call__(graph))

    def call(self, graph: Graph) -> PipelineResult:
        records: list[PassRecord] = []
        done: list[str] = []
        modified_any = False
        macs = self.metric(graph) if self.metric is not None else 0
        for iteration in range(1, (self.max_iterations if self.fixed_point else 1) + 1):
            modified_round = False
            for step in self.steps:
                nodes_before = len(graph)
                macs_before = macs
                started = time.perf_counter()
                try:
                    result = step(graph) if self.check_each_pass else _call_unchecked(step, graph)
                except SegcostError as error:
                    raise type(error)(f"while running {step.name!r} after {done}: {error}") from error
                except Exception as error:  # noqa: BLE001 - add context, keep the cause
                    raise PassError(f"while running {step.name!r} after {done}: "
                                    f"{type(error).__name__}: {error}") from error
                seconds = time.perf_counter() - started
                graph = result.graph
                done.append(step.name)
                if result.modified and self.metric is not None:
                    macs = self.metric(graph)  # an unmodified graph keeps its count
                record = PassRecord(step.name, iteration, result.modified, nodes_before, len(graph), macs_before,
                                    macs, seconds, list(result.notes))
                records.append(record)
                logger.info("%s: modified=%s nodes %d -> %d", step.name, result.modified, nodes_before, len(graph))
                if self.after_each is not None:
                    self.after_each(record, graph)
                modified_round |= result.modified
            modified_any |= modified_round
            if not modified_round:
                break
        return PipelineResult(graph, modified_any, [], records)


def _call_unchecked(step: PassBase, graph: Graph) -> PassResult:
    step.requires(graph)
    return step.call(graph)

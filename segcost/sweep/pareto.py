"""The Pareto fronts of a sweep: cost (GMACs or target latency) against published mIoU.

Only points that reproduce a seed-table row with a published mIoU take part (see
`points.match_seed`): accuracy is not something a sweep can compute. mIoU on different
datasets is not comparable, so there is one front per dataset (and, with cost "latency",
per target). A point is on its front when no other point is at least as cheap and at
least as accurate, and strictly better in one of the two. Points that differ only in
target have the same GMACs and count once for a GMACs front.

The other finished points still have a cost: they are kept as `CostOnlyPoint`s on the first
front of their target (a front of their own, without dataset, when no point of that target
has a published mIoU), so a page can show every point of the sweep on the same cost axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from segcost.errors import InputError
from segcost.sweep.points import SeedMatch
from segcost.sweep.store import SweepRow

COSTS = ("gmacs", "latency")


@dataclass(frozen=True)
class ParetoPoint:
    """One candidate of a front.

    Attributes:
        label: model, size, width, classes, precision.
        cost: GMACs or latency in ms.
        miou: the matched seed row's published mIoU.
        on_front: whether no other candidate dominates it.
        row: the sweep row it comes from.
    """

    label: str
    cost: float
    miou: float
    on_front: bool
    row: SweepRow


@dataclass(frozen=True)
class CostOnlyPoint:
    """A finished point without a published mIoU: it has a cost but no place on a front.

    Attributes:
        label: model, size, width, classes, precision.
        cost: GMACs or latency in ms.
        row: the sweep row it comes from.
    """

    label: str
    cost: float
    row: SweepRow


@dataclass
class ParetoFront:
    """Candidates of one front, cheapest first.

    Attributes:
        cost: "gmacs" or "latency".
        target: the target of a latency front (None for GMACs).
        dataset: the seed-table dataset whose published mIoU the candidates carry (None: no candidates).
        points: all candidates, sorted by cost then by descending mIoU.
        without_miou: finished points of the sweep that could not take part (no seed row with a
            published mIoU).
        unpublished: the cost-only points of this front's target (each shown once per page: on the
            first front of the target), cheapest first.
    """

    cost: str
    target: str | None
    dataset: str | None = None
    points: list[ParetoPoint] = field(default_factory=list)
    without_miou: int = 0
    unpublished: list[CostOnlyPoint] = field(default_factory=list)

    @property
    def front(self) -> list[ParetoPoint]:
        return [point for point in self.points if point.on_front]

    @property
    def cost_label(self) -> str:
        if self.cost == "gmacs":
            return "GMACs"
        return f"latency ms on {Path(self.target).stem}" if self.target else "target latency ms"

    @property
    def title(self) -> str:
        if not self.points and self.unpublished:
            return f"{self.cost_label} (no point with a published mIoU)"
        return f"{self.cost_label} vs published mIoU" + (f" ({self.dataset})" if self.dataset else "")


def dominance_flags(costs_and_mious: list[tuple[float, float]]) -> list[bool]:
    """For each (cost, mIoU), whether it is on the front (lower cost and higher mIoU are better).

    Exact duplicates: only the first one is on the front.
    """
    order = sorted(range(len(costs_and_mious)), key=lambda index: (costs_and_mious[index][0],
                                                                     -costs_and_mious[index][1], index))
    flags = [False] * len(costs_and_mious)
    best_miou = float("-inf")
    for index in order:
        miou = costs_and_mious[index][1]
        if miou > best_miou:
            flags[index] = True
            best_miou = miou
    return flags


def point_label(row: SweepRow) -> str:
    point = row.point
    parts = [point.model, *point.factory_args, point.input_size]
    if point.width_mult is not None:
        parts.append(f"w{point.width_mult:g}")
    parts += [f"{point.num_classes} classes", point.precision]
    return " ".join(parts)


def pareto_fronts(rows: list[SweepRow], cost: str = "gmacs") -> list[ParetoFront]:
    """The fronts of a sweep's rows: per dataset, and per target for "latency".

    Points without a published mIoU become the `unpublished` points of their target's first
    front (a front without dataset and candidates when the target has none); one empty front
    when nothing finished with a cost.
    """
    if cost not in COSTS:
        raise InputError(f"unknown Pareto cost {cost!r} ({', '.join(COSTS)})")
    finished = [row for row in rows if row.ok]
    published = {id(row) for row in finished if row.point.seed is not None and row.point.seed.miou is not None}
    without = len(finished) - len(published)
    if cost == "latency" and not any(row.result.latency_ms is not None for row in finished):
        raise InputError("no latency in this sweep: add \"latency\" to the spec's measures for --pareto-cost latency")
    candidates: dict[tuple, dict[tuple, tuple[SweepRow, float]]] = {}
    cost_only: dict[str | None, dict[tuple, CostOnlyPoint]] = {}
    for row in finished:
        point = row.point
        value = row.gmacs if cost == "gmacs" else row.result.latency_ms
        if value is None:
            continue
        target = point.target if cost == "latency" else None
        # GMACs do not depend on the target: points that differ only in target count once.
        identity = (point.model, point.factory_args, point.input_size, point.width_mult, point.num_classes,
                    point.precision, target)
        if id(row) in published:
            candidates.setdefault((target, _seed(row).dataset), {}).setdefault(identity, (row, value))
        else:
            cost_only.setdefault(target, {}).setdefault(identity, CostOnlyPoint(point_label(row), value, row))
    fronts = [_front(cost, target, dataset, list(members.values()), without)
              for (target, dataset), members in candidates.items()]
    for target, members in cost_only.items():
        home = next((front for front in fronts if front.target == target), None)
        if home is None:
            home = ParetoFront(cost, target, None, [], without)
            fronts.append(home)
        home.unpublished = sorted(members.values(), key=lambda item: (item.cost, item.row.point.index))
    return fronts or [ParetoFront(cost, None, None, [], without)]


def _seed(row: SweepRow) -> SeedMatch:
    """The row's seed match (only rows with one and its mIoU reach the fronts: see `published`)."""
    return cast(SeedMatch, row.point.seed)


def _miou(row: SweepRow) -> float:
    return cast(float, _seed(row).miou)


def _front(cost: str, target: str | None, dataset: str, candidates: list[tuple[SweepRow, float]],
           without: int) -> ParetoFront:
    flags = dominance_flags([(value, _miou(row)) for row, value in candidates])
    points = [ParetoPoint(point_label(row), value, _miou(row), flag, row)
              for (row, value), flag in zip(candidates, flags)]
    points.sort(key=lambda point: (point.cost, -point.miou, point.row.point.index))
    return ParetoFront(cost, target, dataset, points, without)

"""`segcost diff A B`: per-layer and total cost changes between two models.

Layers are matched by name first; the rest by structure — the same op type, kind,
kernel, stride and group in the same relative order, which pairs layers that an exporter
merely renamed. What is left is reported as added or removed.

The structural match is a patience diff (as in git and Bazaar) over those signatures, so it
takes linear memory and near-linear time on real models: the common head and tail are paired
first, then signatures that occur exactly once on both sides anchor the alignment (their
longest increasing run), and the gaps between anchors are aligned the same way. A gap with no
anchors is aligned exactly (a longest common subsequence) when it is small (at most
EXACT_CELLS table cells), else greedily within a window. Two renamed 8000-layer graphs are
one common head: 8000 comparisons (the old exact LCS needed a 64-million-cell table).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from segcost.analyzer import AnalysisResult, LayerCost

EXACT_CELLS = 250_000   # gaps of at most this many (left × right) pairs get the exact LCS
GREEDY_WINDOW = 64      # elsewhere a layer pairs with the same signature at most this far ahead


@dataclass
class LayerChange:
    name_a: str | None
    name_b: str | None
    op_type: str
    macs_a: int
    macs_b: int
    params_a: int
    params_b: int
    matched_by: str  # "name", "structure", "added", "removed"

    @property
    def macs_delta(self) -> int:
        return self.macs_b - self.macs_a


@dataclass
class ModelDiff:
    totals_a: dict
    totals_b: dict
    changes: list[LayerChange] = field(default_factory=list)

    def delta(self, key: str) -> int:
        return self.totals_b[key] - self.totals_a[key]


def _signature(layer: LayerCost) -> tuple:
    return (layer.op_type, layer.kind, tuple(layer.kernel or ()), tuple(layer.stride or ()), layer.group)


def _lcs_pairs(left: list[LayerCost], right: list[LayerCost]) -> list[tuple[int, int]]:
    """Index pairs (i, j), increasing in both, of layers with equal signatures (see the module docstring)."""
    a, b = [_signature(layer) for layer in left], [_signature(layer) for layer in right]
    pairs: list[tuple[int, int]] = []
    ranges = [(0, len(a), 0, len(b))]
    while ranges:
        lo1, hi1, lo2, hi2 = ranges.pop()
        while lo1 < hi1 and lo2 < hi2 and a[lo1] == b[lo2]:
            pairs.append((lo1, lo2))
            lo1, lo2 = lo1 + 1, lo2 + 1
        while lo1 < hi1 and lo2 < hi2 and a[hi1 - 1] == b[hi2 - 1]:
            hi1, hi2 = hi1 - 1, hi2 - 1
            pairs.append((hi1, hi2))
        if lo1 == hi1 or lo2 == hi2:
            continue
        anchors = _unique_anchors(a, lo1, hi1, b, lo2, hi2)
        if anchors:
            for i, j in anchors:
                pairs.append((i, j))
                ranges.append((lo1, i, lo2, j))
                lo1, lo2 = i + 1, j + 1
            ranges.append((lo1, hi1, lo2, hi2))
        elif (hi1 - lo1) * (hi2 - lo2) <= EXACT_CELLS:
            pairs += _exact_lcs(a, lo1, hi1, b, lo2, hi2)
        else:
            pairs += _windowed(a, lo1, hi1, b, lo2, hi2)
    return sorted(pairs)


def _unique_anchors(a: list, lo1: int, hi1: int, b: list, lo2: int, hi2: int) -> list[tuple[int, int]]:
    """Pairs of signatures occurring once in a[lo1:hi1] and once in b[lo2:hi2], longest run increasing in both."""
    count_a, count_b = Counter(a[lo1:hi1]), Counter(b[lo2:hi2])
    where_b = {b[j]: j for j in range(lo2, hi2) if count_b[b[j]] == 1}
    candidates = [(i, where_b[a[i]]) for i in range(lo1, hi1) if count_a[a[i]] == 1 and a[i] in where_b]
    # longest increasing subsequence of the right indices (patience sorting, O(k log k))
    tails: list[int] = []
    tail_at: list[int] = []
    previous = [-1] * len(candidates)
    for index, (_, j) in enumerate(candidates):
        place = bisect_left(tails, j)
        if place == len(tails):
            tails.append(j)
            tail_at.append(index)
        else:
            tails[place], tail_at[place] = j, index
        previous[index] = tail_at[place - 1] if place else -1
    run, index = [], tail_at[-1] if tail_at else -1
    while index >= 0:
        run.append(candidates[index])
        index = previous[index]
    return run[::-1]


def _exact_lcs(a: list, lo1: int, hi1: int, b: list, lo2: int, hi2: int) -> list[tuple[int, int]]:
    rows, cols = hi1 - lo1, hi2 - lo2
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[lo1 + i] == b[lo2 + j] else \
                max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < rows and j < cols:
        if a[lo1 + i] == b[lo2 + j]:
            pairs.append((lo1 + i, lo2 + j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _windowed(a: list, lo1: int, hi1: int, b: list, lo2: int, hi2: int) -> list[tuple[int, int]]:
    """In order: each left layer takes the next right layer of its signature at most GREEDY_WINDOW ahead."""
    positions: dict[tuple, list[int]] = defaultdict(list)
    for j in range(lo2, hi2):
        positions[b[j]].append(j)
    pairs, cursor = [], lo2
    for i in range(lo1, hi1):
        places = positions.get(a[i])
        if not places:
            continue
        k = bisect_left(places, cursor)
        if k < len(places) and places[k] - cursor <= GREEDY_WINDOW:
            pairs.append((i, places[k]))
            cursor = places[k] + 1
    return pairs


def diff_analyses(a: AnalysisResult, b: AnalysisResult, counted_only: bool = True) -> ModelDiff:
    """Match layers of `a` and `b`; `counted_only` leaves out layers with neither MACs nor params in both.

    A layer of the same name and op type in both models is one row whatever its counts: the
    filter applies to the pair, so a layer that gains params in `b` (a Resize whose computed
    scales were folded to a constant) is a change, not an added layer with `a`'s side dropped.
    """
    def relevant(layer: LayerCost) -> bool:
        return not counted_only or bool(layer.macs or layer.params)

    layers_a, layers_b = list(a.layers), list(b.layers)
    by_name_b = {layer.name: layer for layer in layers_b}
    changes: list[LayerChange] = []
    matched_a, matched_b = set(), set()
    for layer in layers_a:
        twin = by_name_b.get(layer.name)
        if twin is not None and twin.op_type == layer.op_type:
            if relevant(layer) or relevant(twin):
                changes.append(LayerChange(layer.name, twin.name, layer.op_type, layer.macs, twin.macs,
                                           layer.params, twin.params, "name"))
            matched_a.add(layer.name)
            matched_b.add(twin.name)
    rest_a = [layer for layer in layers_a if layer.name not in matched_a and relevant(layer)]
    rest_b = [layer for layer in layers_b if layer.name not in matched_b and relevant(layer)]
    for i, j in _lcs_pairs(rest_a, rest_b):
        one, two = rest_a[i], rest_b[j]
        changes.append(LayerChange(one.name, two.name, one.op_type, one.macs, two.macs, one.params, two.params,
                                   "structure"))
        matched_a.add(one.name)
        matched_b.add(two.name)
    changes += [LayerChange(layer.name, None, layer.op_type, layer.macs, 0, layer.params, 0, "removed")
                for layer in rest_a if layer.name not in matched_a]
    changes += [LayerChange(None, layer.name, layer.op_type, 0, layer.macs, 0, layer.params, "added")
                for layer in rest_b if layer.name not in matched_b]
    totals = lambda result: {"macs": result.totals.macs, "params": result.totals.params,  # noqa: E731 - two uses
                             "flops": result.totals.flops, "nodes": result.totals.nodes}
    return ModelDiff(totals(a), totals(b), changes)

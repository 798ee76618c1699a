"""`segcost diff A B`: per-layer and total cost changes between two models.

Layers are matched by name first; the rest by structure — the same op type, kind,
kernel, stride and group in the same relative order (a longest-common-subsequence over
those signatures), which pairs layers that an exporter merely renamed. What is left is
reported as added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segcost.analyzer import AnalysisResult, LayerCost


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
    # O(n·m) dynamic programme; only the layers left unmatched by name reach here, so n, m are small.
    rows, cols = len(left), len(right)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if _signature(left[i]) == _signature(right[j]) else \
                max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < rows and j < cols:
        if _signature(left[i]) == _signature(right[j]):
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def diff_analyses(a: AnalysisResult, b: AnalysisResult, counted_only: bool = True) -> ModelDiff:
    """Match layers of `a` and `b`; `counted_only` ignores layers with neither MACs nor params in both."""
    def relevant(layers):
        return [layer for layer in layers if not counted_only or layer.macs or layer.params]

    left, right = relevant(a.layers), relevant(b.layers)
    by_name_b = {layer.name: layer for layer in right}
    changes: list[LayerChange] = []
    matched_a, matched_b = set(), set()
    for layer in left:
        twin = by_name_b.get(layer.name)
        if twin is not None and twin.op_type == layer.op_type:
            changes.append(LayerChange(layer.name, twin.name, layer.op_type, layer.macs, twin.macs, layer.params,
                                       twin.params, "name"))
            matched_a.add(layer.name)
            matched_b.add(twin.name)
    rest_a = [layer for layer in left if layer.name not in matched_a]
    rest_b = [layer for layer in right if layer.name not in matched_b]
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
    totals = lambda result: {"macs": result.totals.macs, "params": result.totals.params,  # noqa: E731
                             "flops": result.totals.flops, "nodes": result.totals.nodes}
    return ModelDiff(totals(a), totals(b), changes)

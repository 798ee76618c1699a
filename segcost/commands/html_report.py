"""Gather what the HTML report shows beyond the analysis: stages, memory timeline, memory roofs."""

from __future__ import annotations

from segcost.analyzer import AnalysisResult
from segcost.analyzer.grouping import group_layers, layer_prefix
from segcost.analyzer.timeline import MemoryTimeline
from segcost.reports.html import HtmlExtras, StageCost
from segcost.targets.results import priced_layer


def html_extras(result: AnalysisResult, timeline: MemoryTimeline | None, estimate=None, target: str | None = None,
                stage_depth: int = 1) -> HtmlExtras:
    """Stage subtotals (layer-name prefix of `stage_depth` parts: exact MACs, and the estimate's ms summed over
    the same prefix), the timeline, and the roofs of `target`'s memory levels in bytes/s
    (bytes per accelerator cycle × clock, from the profile)."""
    stages = [StageCost(name, total.count, total.macs) for name, total in
              group_layers(result.layers, "prefix", stage_depth, result.scopes).items()]
    roofs: list[tuple[str, float]] = []
    if estimate is not None:
        by_stage: dict[str, float] = {}
        names = {layer.name for layer in result.layers}
        for layer in estimate.layers:
            name = priced_layer(layer.name, names) or layer.name   # an imported row: its first layer's stage
            key = layer_prefix(name, stage_depth, layer.op_type, result.scopes.get(name, ()))
            by_stage[key] = by_stage.get(key, 0.0) + layer.ms
        for stage in stages:
            stage.ms = by_stage.get(stage.name, 0.0)
    if target is not None:
        from segcost.targets.cost_model import load_profile

        profile = load_profile(target)
        roofs = [(level.name, level.bytes_per_cycle * profile.clock_ghz * 1e9) for level in profile.memory]
    return HtmlExtras(timeline=timeline, roofs=roofs, stages=stages, stage_depth=stage_depth)

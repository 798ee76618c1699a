"""Exact per-layer cost analysis of the IR (rules registry + walk + results)."""

from segcost.analyzer.analyze import analyze, count_macs
from segcost.analyzer.registry import OpCost, OpView, cost_rule
from segcost.analyzer.result import AnalysisResult, LayerCost, Totals
from segcost.analyzer.rules import find_rule, registered_ops

__all__ = ["AnalysisResult", "LayerCost", "OpCost", "OpView", "Totals", "analyze", "cost_rule", "count_macs",
           "find_rule", "registered_ops"]

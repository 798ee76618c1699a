"""Depthwise/grouped-convolution consistency, the "Lite" rule, and target support rules.

Three families of findings, each naming the layer, a rule id and the reason:

* structure — C_in % group == 0, weight = [C_out, C_in/group, k…], C_out % group == 0;
* lite-group — a "Lite" network keeps its group size everywhere: when most k×k (k ≥ 3)
  convolutions after the stem are depthwise (MobileNet) or grouped with width G (RegNetX),
  every other k×k conv after the stem must be too, wherever it sits (a decoder straight on
  the encoder, UNet skip decoders, FPN heads, ASPP). The stem is what runs before the first
  depthwise/grouped conv (its ancestors), so no decoder has to be found first;
* target — the accelerator's support table (`segcost/targets/tidl-rules.toml`, one rule set
  per documented toolchain version, each citing its document), checked by
  segcost.passes.verify_target (one function per rule; its docstring lists the rule ids).

The target findings (`PLACEMENT_RULES`) are exactly the layers the cost model places on the
fallback core: segcost.targets.cost_model runs this pass to place layers, so `segcost verify`
and `segcost cost` cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import networkx as nx

from segcost.ir import Graph
from segcost.passes._infra import PassBase, PassResult
from segcost.passes.verify_target import (
    PLACEMENT_RULES,
    ConvView,
    Finding,
    RuleSet,
    conv_view,
    graph_target_findings,
    load_rules,
    rule_set_names,
)

__all__ = ["PLACEMENT_RULES", "Finding", "RuleSet", "VerifyGroupedConvPass", "VerifyResult", "load_rules",
           "rule_set_names"]

IMAGE_CHANNELS = 4   # a conv with at most this many input channels reads the image (RGB, RGBA, grey)


@dataclass
class VerifyResult(PassResult):
    findings: list[Finding] = field(default_factory=list)
    encoder_style: str = "dense"


class VerifyGroupedConvPass(PassBase):
    """Report structural, Lite-rule and target-support violations; never changes the graph.

    Attributes:
        rules: the RuleSet (from a name in tidl-rules.toml: "current", "legacy", "tidl-09.02", ...).
        lite: check the Lite group-propagation rule.
        target: check the target's support table.
    """

    name = "verify-conv"
    changes_input = False

    def __init__(self, rules: str = "current", lite: bool = True, target: bool = True):
        self.rules = load_rules(rules)
        self.lite = lite
        self.target = target

    def __call__(self, graph: Graph) -> VerifyResult:
        """PassBase's checked run; `call` returns a VerifyResult, which this tells type checkers."""
        return cast(VerifyResult, super().__call__(graph))

    def call(self, graph: Graph) -> VerifyResult:
        order = graph.topological_order()
        convs = {key: view for key in order if (view := conv_view(graph, key)) is not None}
        findings = [finding for view in convs.values() for finding in self._structure(view)]
        style = "dense"
        if self.lite:
            lite_findings, style = _lite(graph, convs)
            findings += lite_findings
        if self.target:
            findings += graph_target_findings(graph, list(order), convs, self.rules)
        notes = [f"{len(findings)} findings"] if findings else []
        return VerifyResult(graph, False, notes, findings, style)

    @staticmethod
    def _structure(view: ConvView) -> list[Finding]:
        found: list[Finding] = []
        if view.group <= 0:
            return [Finding(view.key, view.op_type, "group-positive", f"group {view.group} must be positive")]
        if view.op_type == "ConvTranspose":
            return found
        out_channels = view.weight_shape[0]
        if view.in_channels is not None and view.in_channels % view.group:
            found.append(Finding(view.key, view.op_type, "group-divides-cin",
                                 f"C_in {view.in_channels} is not divisible by group {view.group}"))
        elif view.in_channels is not None and view.weight_shape[1] != view.in_channels // view.group:
            found.append(Finding(view.key, view.op_type, "weight-shape",
                                 f"weight {list(view.weight_shape)} needs dim 1 = C_in/group = "
                                 f"{view.in_channels // view.group}"))
        if out_channels % view.group:
            found.append(Finding(view.key, view.op_type, "group-divides-cout",
                                 f"C_out {out_channels} is not divisible by group {view.group}"))
        return found


def _lite(graph: Graph, convs: dict[str, ConvView]) -> tuple[list[Finding], str]:
    """Lite-rule findings and the network's style ("depthwise", "grouped:G" or "dense").

    Spatial convs (a kernel side ≥ 3, not transposed) vote for the style, except convs on
    the image (≤ 4 input channels); every spatial conv after the stem that breaks the style
    is a finding. The stem is the ancestors of the first depthwise or grouped conv.
    """
    spatial = [view for view in convs.values() if view.op_type != "ConvTranspose" and max(view.kernel, default=1) >= 3]
    first = next((view for view in spatial if view.group > 1), None)
    if first is None:
        return [], "dense"
    voters = [view for view in spatial if (view.in_channels or 0) > IMAGE_CHANNELS]
    depthwise = sum(view.is_depthwise for view in voters)
    grouped = Counter(view.group_width for view in voters if view.group > 1 and not view.is_depthwise)
    if depthwise * 2 >= len(voters):
        style = "depthwise"
    elif grouped and sum(grouped.values()) * 2 >= len(voters):
        style = f"grouped:{grouped.most_common(1)[0][0]}"
    else:
        return [], "dense"
    stem = nx.ancestors(graph.dag, first.key)
    body = [view for view in spatial if view.key not in stem]
    findings = []
    for view in body:
        kernel = "x".join(map(str, view.kernel))
        if style == "depthwise" and not view.is_depthwise:
            findings.append(Finding(view.key, view.op_type, "lite-group",
                                    f"{kernel} conv with group {view.group} in a depthwise network; "
                                    "Lite networks use depthwise convolutions after the stem"))
        elif style.startswith("grouped:") and view.group_width != int(style.split(":")[1]):
            findings.append(Finding(view.key, view.op_type, "lite-group",
                                    f"{kernel} conv with group width {view.group_width} in a network of "
                                    f"group width {style.split(':')[1]}"))
    return findings, style

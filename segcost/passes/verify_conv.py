"""Depthwise/grouped-convolution consistency, the "Lite" rule, and target support rules.

Three families of findings, each naming the layer, a rule id and the reason:

* structure — C_in % group == 0, weight = [C_out, C_in/group, k…], C_out % group == 0;
* lite-group — a "Lite" network keeps its group size everywhere: when most k×k (k ≥ 3)
  convolutions after the stem are depthwise (MobileNet) or grouped with width G (RegNetX),
  every other k×k conv after the stem must be too, wherever it sits (a decoder straight on
  the encoder, UNet skip decoders, FPN heads, ASPP). The stem is what runs before the first
  depthwise/grouped conv (its ancestors), so no decoder has to be found first;
* target — the accelerator's support table (`segcost/targets/tidl-rules.toml`, one rule set
  per documented toolchain version, each citing its document): op types, depthwise and
  ConvTranspose kernel/stride pairs, even kernels, large kernels at stride 2, Resize modes and
  scales, ArgMax axis (negative axes normalized by rank), rank-4 tensors, Sub/Div without a
  constant operand (an initializer or a Constant node).

The target findings (`PLACEMENT_RULES`) are exactly the layers the cost model places on the
fallback core: segcost.targets.cost_model runs this pass to place layers, so `segcost verify`
and `segcost cost` cannot disagree.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from math import log2
from typing import cast

import networkx as nx

from segcost.errors import InputError
from segcost.ir import Graph, is_static_shape
from segcost.ir.opforms import constant_value, normalize_axis
from segcost.passes._infra import PassBase, PassResult

__all__ = ["PLACEMENT_RULES", "Finding", "RuleSet", "VerifyGroupedConvPass", "VerifyResult", "load_rules",
           "rule_set_names"]

CONV_TYPES = ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger")
IMAGE_CHANNELS = 4   # a conv with at most this many input channels reads the image (RGB, RGBA, grey)
# Rule ids of target findings: each one means "this layer runs on the fallback core".
PLACEMENT_RULES = frozenset({"unsupported-op", "rank-4", "dw-kernel-stride", "even-kernel", "kernel-stride",
                             "conv-transpose-shape", "resize-mode", "resize-scale", "argmax-axis",
                             "binary-nonconstant"})


@dataclass(frozen=True)
class Finding:
    layer: str
    op_type: str
    rule: str
    reason: str


@dataclass
class VerifyResult(PassResult):
    findings: list[Finding] = field(default_factory=list)
    encoder_style: str = "dense"


@dataclass(frozen=True)
class RuleSet:
    """One documented toolchain version's support table (see tidl-rules.toml for each key's source).

    Attributes:
        name: the rule set's own name (aliases resolved), e.g. "tvm-tidl".
        description, source: what it is and the document it transcribes.
        depthwise: allowed depthwise "KHxKWsS" forms; conv_transpose: allowed ConvTranspose forms.
        conv_transpose_groups: allowed ConvTranspose groups.
        max_kernel_at_stride2: largest Conv kernel side allowed at stride 2.
        even_conv_kernels: even-sized Conv kernels run.
        resize_modes, resize_power_of_two_scales: Resize limits.
        argmax_axes: allowed ArgMax axes as documented (compared after normalizing by rank).
        rank4_ops: op types whose input must be rank 4.
        binary_ops_need_constant: op types that need one constant operand.
        ops: op types (default domain) the accelerator runs; None: all.
    """

    name: str
    description: str
    source: str
    depthwise: frozenset[str]
    conv_transpose: frozenset[str]
    conv_transpose_groups: frozenset[int]
    max_kernel_at_stride2: int
    even_conv_kernels: bool
    resize_modes: frozenset[str]
    resize_power_of_two_scales: bool
    argmax_axes: tuple[int, ...]
    rank4_ops: frozenset[str]
    binary_ops_need_constant: frozenset[str]
    ops: frozenset[str] | None


@cache
def _rules_file() -> dict:
    text = importlib.resources.files("segcost.targets").joinpath("tidl-rules.toml").read_text()
    return tomllib.loads(text)


def rule_set_names() -> list[str]:
    """Rule set names and aliases `load_rules` accepts."""
    data = _rules_file()
    return sorted([*data["rulesets"], *data.get("aliases", {})])


@cache
def load_rules(name: str = "current") -> RuleSet:
    """The rule set `name` (or alias: "current", "legacy") with inherited keys resolved.

    Raises:
        InputError: unknown name.
    """
    data = _rules_file()
    resolved = data.get("aliases", {}).get(name, name)
    if resolved not in data["rulesets"]:
        raise InputError(f"unknown rule set {name!r} (known: {', '.join(rule_set_names())})")
    table: dict = {}
    chain = [resolved]
    while "inherit" in data["rulesets"][chain[-1]]:
        chain.append(data["rulesets"][chain[-1]]["inherit"])
    for link in reversed(chain):
        table.update(data["rulesets"][link])
    ops = table.get("ops", "*")
    return RuleSet(
        name=resolved, description=table["description"], source=table["source"],
        depthwise=frozenset(table["depthwise"]), conv_transpose=frozenset(table["conv_transpose"]),
        conv_transpose_groups=frozenset(table["conv_transpose_groups"]),
        max_kernel_at_stride2=int(table["max_kernel_at_stride2"]), even_conv_kernels=bool(table["even_conv_kernels"]),
        resize_modes=frozenset(table["resize_modes"]),
        resize_power_of_two_scales=bool(table["resize_power_of_two_scales"]),
        argmax_axes=tuple(table["argmax_axes"]), rank4_ops=frozenset(table["rank4_ops"]),
        binary_ops_need_constant=frozenset(table["binary_ops_need_constant"]),
        ops=None if ops == "*" else frozenset(ops))


def _form(kernel: tuple[int, ...], stride: tuple[int, ...]) -> str:
    """ "KHxKWsS" for a 2-D kernel with equal strides, else a form no rule set lists."""
    text = "x".join(map(str, kernel))
    return f"{text}s{stride[0]}" if len(set(stride)) == 1 else f"{text}s{'x'.join(map(str, stride))}"


@dataclass(frozen=True)
class _Conv:
    key: str
    op_type: str
    group: int
    in_channels: int | None
    weight_shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def kernel(self) -> tuple[int, ...]:
        return self.weight_shape[2:]

    @property
    def is_depthwise(self) -> bool:
        return self.group > 1 and self.weight_shape[1] == 1 and self.group == self.in_channels

    @property
    def group_width(self) -> int:
        return self.weight_shape[1]


def _conv_view(graph: Graph, key: str) -> _Conv | None:
    node = graph.node(key)
    weight_index = 3 if node.op_type == "QLinearConv" else 1
    if node.op_type not in CONV_TYPES or len(node.inputs) <= weight_index:
        return None
    weight_shape = graph.shape(node.inputs[weight_index])
    input_shape = graph.shape(node.inputs[0])
    if not is_static_shape(weight_shape) or len(weight_shape) < 3:
        return None
    in_channels = input_shape[1] if input_shape is not None and len(input_shape) > 1 and isinstance(
        input_shape[1], int) else None
    kernel_rank = len(weight_shape) - 2
    stride = tuple(node.attrs.get("strides") or (1,) * kernel_rank)
    return _Conv(key, node.op_type, int(node.attrs.get("group", 1)), in_channels, tuple(weight_shape), stride)


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
        convs = {key: view for key in order if (view := _conv_view(graph, key)) is not None}
        findings = [finding for view in convs.values() for finding in self._structure(view)]
        style = "dense"
        if self.lite:
            lite_findings, style = _lite(graph, convs)
            findings += lite_findings
        if self.target:
            for key in order:
                findings += self._target(graph, key, convs.get(key))
        notes = [f"{len(findings)} findings"] if findings else []
        return VerifyResult(graph, False, notes, findings, style)

    @staticmethod
    def _structure(view: _Conv) -> list[Finding]:
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

    def _target(self, graph: Graph, key: str, view: _Conv | None) -> list[Finding]:
        node = graph.node(key)
        rules = self.rules
        if node.domain not in ("", "ai.onnx") or (rules.ops is not None and node.op_type not in rules.ops):
            where = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            return [Finding(key, node.op_type, "unsupported-op",
                            f"op {where} is not supported by rule set {rules.name!r}")]
        found = []
        if node.op_type in rules.rank4_ops and node.inputs:
            shape = graph.shape(node.inputs[0])
            if shape is not None and len(shape) != 4:
                found.append(Finding(key, node.op_type, "rank-4", f"input rank {len(shape)}; only rank 4 runs"))
        if view is not None and view.op_type == "Conv" and len(view.kernel) == 2:
            found += self._conv(view)
        if view is not None and view.op_type == "ConvTranspose" and len(view.kernel) == 2:
            form = _form(view.kernel, view.stride)
            if form not in rules.conv_transpose or view.group not in rules.conv_transpose_groups:
                found.append(Finding(key, "ConvTranspose", "conv-transpose-shape",
                                     f"{form} group {view.group}; allowed: {', '.join(sorted(rules.conv_transpose))}"
                                     f", group {sorted(rules.conv_transpose_groups)}"))
        if node.op_type in ("Resize", "Upsample"):
            found += self._resize(graph, key, node)
        if node.op_type == "ArgMax":
            found += self._argmax(graph, key, node)
        if node.op_type in rules.binary_ops_need_constant and len(node.inputs) == 2 and all(
                constant_value(graph, tensor) is None for tensor in node.inputs):
            found.append(Finding(key, node.op_type, "binary-nonconstant",
                                 f"{node.op_type} of two computed tensors; one operand must be constant"))
        return found

    def _conv(self, view: _Conv) -> list[Finding]:
        rules = self.rules
        found = []
        form = _form(view.kernel, view.stride)
        if view.is_depthwise and form not in rules.depthwise:
            found.append(Finding(view.key, "Conv", "dw-kernel-stride",
                                 f"depthwise {form}; allowed: {', '.join(sorted(rules.depthwise))}"))
        if not rules.even_conv_kernels and any(k % 2 == 0 for k in view.kernel):
            found.append(Finding(view.key, "Conv", "even-kernel", f"even kernel {'x'.join(map(str, view.kernel))}"))
        elif not view.is_depthwise and 2 in view.stride and max(view.kernel) > rules.max_kernel_at_stride2:
            found.append(Finding(view.key, "Conv", "kernel-stride", f"{form}: kernels larger than "
                                 f"{rules.max_kernel_at_stride2} do not run at stride 2"))
        return found

    def _argmax(self, graph: Graph, key: str, node) -> list[Finding]:
        shape = graph.shape(node.inputs[0]) if node.inputs else None
        axis = int(node.attrs.get("axis", 0))
        rank = len(shape) if shape is not None else 4   # TIDL tensors are NCHW
        where = f"node {key!r} (ArgMax) attribute axis"
        allowed = {normalize_axis(value, rank, "rule set argmax_axes") for value in self.rules.argmax_axes
                   if -rank <= value < rank}
        if normalize_axis(axis, rank, where) in allowed:
            return []
        return [Finding(key, "ArgMax", "argmax-axis", f"axis {axis} of a rank-{rank} input; allowed "
                        f"{list(self.rules.argmax_axes)} (the channel axis)")]

    def _resize(self, graph: Graph, key: str, node) -> list[Finding]:
        found = []
        mode = node.attrs.get("mode", "nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in self.rules.resize_modes:
            found.append(Finding(key, node.op_type, "resize-mode",
                                 f"mode {mode!r}; allowed {sorted(self.rules.resize_modes)}"))
        before, after = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
        if self.rules.resize_power_of_two_scales and before and after and len(before) == len(after):
            for axis, (size_in, size_out) in enumerate(zip(before, after)):
                if not (isinstance(size_in, int) and isinstance(size_out, int)) or size_in == size_out:
                    continue
                if size_in <= 0 or size_out <= 0:
                    found.append(Finding(key, node.op_type, "resize-scale", f"axis {axis} has size "
                                                                             f"{size_in} -> {size_out}"))
                    continue
                ratio = size_out / size_in if size_out > size_in else size_in / size_out
                if not ratio.is_integer() or not log2(ratio).is_integer():
                    found.append(Finding(key, node.op_type, "resize-scale",
                                         f"axis {axis} scales {size_in} -> {size_out}; only powers of two run"))
        return found



def _lite(graph: Graph, convs: dict[str, _Conv]) -> tuple[list[Finding], str]:
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

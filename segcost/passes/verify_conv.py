"""Depthwise/grouped-convolution consistency, the "Lite" rule, and target support rules.

Three families of findings, each naming the layer, a rule id and the reason:

* structure — C_in % group == 0, weight = [C_out, C_in/group, k…], C_out % group == 0;
* lite-group — the encoder's group size propagates into neck and decoder: where the
  encoder's k×k convs are depthwise (MobileNet) or grouped with width G (RegNetX), every
  3×3/5×5 conv after the encoder must be too. The encoder is everything upstream of the
  first tensor fanned out to ≥ 3 convolutions (an ASPP) or first upsampled;
* target — the accelerator's support table (`segcost/targets/tidl-rules.toml`):
  depthwise kernel/stride pairs, even kernels, ConvTranspose shapes, Resize modes and
  scales, ArgMax axis, rank-4 tensors, Sub/Div of two computed tensors.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from math import log2

import networkx as nx

from segcost.errors import InputError
from segcost.ir import Graph
from segcost.passes._infra import PassBase, PassResult

__all__ = ["Finding", "VerifyGroupedConvPass", "VerifyResult", "load_rules"]

CONV_TYPES = ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger")
UPSAMPLE_TYPES = ("Resize", "Upsample", "ConvTranspose")
ASPP_FAN_OUT = 3


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


@cache
def _rules_file() -> dict:
    text = importlib.resources.files("segcost.targets").joinpath("tidl-rules.toml").read_text()
    return tomllib.loads(text)["rulesets"]


def load_rules(name: str = "current") -> dict:
    rulesets = _rules_file()
    if name not in rulesets:
        raise InputError(f"unknown rule set {name!r} (known: {', '.join(sorted(rulesets))})")
    return rulesets[name]


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
    if weight_shape is None or not all(isinstance(dim, int) for dim in weight_shape) or len(weight_shape) < 3:
        return None
    in_channels = input_shape[1] if input_shape is not None and len(input_shape) > 1 and isinstance(
        input_shape[1], int) else None
    kernel_rank = len(weight_shape) - 2
    stride = tuple(node.attrs.get("strides") or (1,) * kernel_rank)
    return _Conv(key, node.op_type, int(node.attrs.get("group", 1)), in_channels, tuple(weight_shape), stride)


class VerifyGroupedConvPass(PassBase):
    """Report structural, Lite-rule and target-support violations; never changes the graph.

    Attributes:
        rules: name of the rule set in tidl-rules.toml ("current", "legacy").
        lite: check the Lite group-propagation rule.
        target: check the target's support table.
    """

    name = "verify-conv"
    changes_input = False

    def __init__(self, rules: str = "current", lite: bool = True, target: bool = True):
        self.rules = load_rules(rules)
        self.lite = lite
        self.target = target

    def call(self, graph: Graph) -> VerifyResult:
        order = graph.topological_order()
        convs = {key: view for key in order if (view := _conv_view(graph, key)) is not None}
        findings = [finding for view in convs.values() for finding in self._structure(view)]
        style = "dense"
        if self.lite:
            lite_findings, style = self._lite(graph, order, convs)
            findings += lite_findings
        if self.target:
            for key in order:
                findings += self._target(graph, key, convs.get(key))
        notes = [f"{len(findings)} findings"] if findings else []
        return VerifyResult(graph, False, notes, findings, style)

    @staticmethod
    def _structure(view: _Conv) -> list[Finding]:
        found = []
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

    def _lite(self, graph: Graph, order: list[str], convs: dict[str, _Conv]) -> tuple[list[Finding], str]:
        encoder = encoder_nodes(graph, order)
        if encoder is None:
            return [], "dense"
        spatial = [view for key, view in convs.items() if key in encoder and max(view.kernel, default=1) >= 3
                   and (view.in_channels or 0) > 4]  # skip the stem conv on the image
        if not spatial:
            return [], "dense"
        depthwise = sum(view.is_depthwise for view in spatial)
        grouped = Counter(view.group_width for view in spatial if view.group > 1 and not view.is_depthwise)
        if depthwise * 2 >= len(spatial):
            style = "depthwise"
        elif grouped and sum(grouped.values()) * 2 >= len(spatial):
            style = f"grouped:{grouped.most_common(1)[0][0]}"
        else:
            return [], "dense"
        findings = []
        for key, view in convs.items():
            if key in encoder or view.op_type == "ConvTranspose" or max(view.kernel, default=1) not in (3, 5):
                continue
            kernel = "x".join(map(str, view.kernel))
            if style == "depthwise" and not view.is_depthwise:
                findings.append(Finding(key, view.op_type, "lite-group",
                                        f"{kernel} conv with group {view.group} after a depthwise encoder; "
                                        "Lite heads use depthwise convolutions here"))
            elif style.startswith("grouped:") and view.group_width != int(style.split(":")[1]):
                findings.append(Finding(key, view.op_type, "lite-group",
                                        f"{kernel} conv with group width {view.group_width} after an encoder of "
                                        f"group width {style.split(':')[1]}"))
        return findings, style

    def _target(self, graph: Graph, key: str, view: _Conv | None) -> list[Finding]:
        node = graph.node(key)
        rules = self.rules
        found = []
        if node.op_type in rules["rank4_ops"]:
            shape = graph.shape(node.inputs[0])
            if shape is not None and len(shape) != 4:
                found.append(Finding(key, node.op_type, "rank-4", f"input rank {len(shape)}; only rank 4 runs"))
        if view is not None and view.op_type == "Conv" and len(view.kernel) == 2:
            square = view.kernel[0] == view.kernel[1] and view.stride[0] == view.stride[1]
            pair = [view.kernel[0], view.stride[0]]
            if view.is_depthwise and (not square or pair not in rules["depthwise_kernel_stride"]):
                allowed = ", ".join(f"{k}x{k} s{s}" for k, s in rules["depthwise_kernel_stride"])
                found.append(Finding(key, "Conv", "dw-kernel-stride",
                                     f"depthwise {view.kernel[0]}x{view.kernel[1]} stride {view.stride[0]}x"
                                     f"{view.stride[1]}; allowed: {allowed}"))
            if not rules["even_conv_kernels"] and any(k % 2 == 0 for k in view.kernel):
                found.append(Finding(key, "Conv", "even-kernel", f"even kernel {view.kernel[0]}x{view.kernel[1]}"))
        if view is not None and view.op_type == "ConvTranspose" and len(view.kernel) == 2:
            pair = [view.kernel[0], view.stride[0]]
            if (view.kernel[0] != view.kernel[1] or pair not in rules["conv_transpose_kernel_stride"]
                    or view.group not in rules["conv_transpose_groups"]):
                allowed = ", ".join(f"{k}x{k} s{s}" for k, s in rules["conv_transpose_kernel_stride"])
                found.append(Finding(key, "ConvTranspose", "conv-transpose-shape",
                                     f"{view.kernel[0]}x{view.kernel[1]} stride {view.stride[0]} group {view.group}; "
                                     f"allowed: {allowed}, group {rules['conv_transpose_groups']}"))
        if node.op_type in ("Resize", "Upsample"):
            found += self._resize(graph, key, node)
        if node.op_type == "ArgMax" and node.attrs.get("axis", 0) not in rules["argmax_axes"]:
            found.append(Finding(key, "ArgMax", "argmax-axis",
                                 f"axis {node.attrs.get('axis', 0)}; allowed {rules['argmax_axes']}"))
        if node.op_type in rules["binary_ops_need_constant"] and len(node.inputs) == 2 and not any(
                tensor in graph.initializers for tensor in node.inputs):
            found.append(Finding(key, node.op_type, "binary-nonconstant",
                                 f"{node.op_type} of two computed tensors"))
        return found

    def _resize(self, graph: Graph, key: str, node) -> list[Finding]:
        found = []
        mode = node.attrs.get("mode", "nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in self.rules["resize_modes"]:
            found.append(Finding(key, node.op_type, "resize-mode",
                                 f"mode {mode!r}; allowed {self.rules['resize_modes']}"))
        before, after = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
        if self.rules["resize_power_of_two_scales"] and before and after and len(before) == len(after):
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


def encoder_nodes(graph: Graph, order: list[str]) -> set[str] | None:
    """Nodes upstream of (and including the producer of) the first ASPP fan-out or upsample input."""
    split = None
    for key in order:
        node = graph.node(key)
        if node.op_type in UPSAMPLE_TYPES and not node.domain:
            split = node.inputs[0]
            break
        for tensor in node.outputs:
            conv_users = [user for user in graph.consumers(tensor) if graph.node(user).op_type in CONV_TYPES]
            if len(conv_users) >= ASPP_FAN_OUT:
                split = tensor
                break
        if split is not None:
            break
    producer = graph.producer(split) if split is not None else None
    if producer is None:
        return None
    return nx.ancestors(graph.dag, producer) | {producer}

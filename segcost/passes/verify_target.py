"""Target support rules: which layers TI's toolchain (TIDL) runs on the C7x/MMA accelerator.

The rule sets are data (`segcost/targets/tidl-rules.toml`, read by
segcost.passes.target_rules), one per documented toolchain version, each key quoting the
sentence of TI's document it transcribes. Every key is checked by one function below or in
segcost.passes.target_op_checks (the SDK 11.00 per-op limits).

A sequence of ops TI imports as one layer (LayerNorm, GELU: `fused_patterns`) is matched first
and its nodes are not checked op by op (graph_target_findings).

Rule ids (`PLACEMENT_RULES`: each finding means "this layer runs on the fallback core"):

* unsupported-op — op type outside `ops`, or a custom domain;
* rank-4 — a `rank4_ops` layer whose input is not NCHW;
* dw-kernel-stride — a depthwise Conv form outside `depthwise`;
* even-kernel, kernel-stride, conv-stride, conv-dilation — Conv kernel/stride/dilation limits;
* conv-transpose-shape — a ConvTranspose form, group or dilation outside the table;
* resize-mode, resize-scale, resize-axis, resize-symmetric — Resize/Upsample limits;
* argmax-axis, softmax-axis, depth-to-space, global-pool-plane, pool-dilation;
* binary-nonconstant, binary-constant-form — Sub/Div that are not `x - c` / `x / c` with a
  constant `c` that is a scalar or varies along one of `constant_operand_axes` only;
* layernorm-axis, layernorm-params — a LayerNormalization over other than `layer_norm_axes`, or
  with scale/bias not a vector;
* variable-dims — a `max_variable_dims` op whose computed input has more non-singleton dims;
* concat-axis, pad-form, argmax-attribute, resize-coordinates, resize-attribute — the SDK 11.00
  table's Concat axes, Pad mode/axes, ArgMax and Resize attribute limits
  (segcost.passes.target_op_checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import prod

from segcost.ir import Graph, is_static_shape
from segcost.ir.graph import Node
from segcost.ir.opforms import constant_value, normalize_axis, read_operand
from segcost.passes.target_op_checks import (
    OP_CHECKS,
    argmax_attribute_findings,
    axis_allowed,
    resize_attribute_findings,
    variable_dims,
)
from segcost.passes.target_patterns import fused_layers
from segcost.passes.target_rules import Finding, RuleSet, load_rules, rule_set_names

__all__ = ["CONV_TYPES", "PLACEMENT_RULES", "ConvView", "Finding", "RuleSet", "conv_view", "graph_target_findings",
           "load_rules", "rule_set_names", "target_findings"]

CONV_TYPES = ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger")
PLACEMENT_RULES = frozenset({
    "unsupported-op", "rank-4", "dw-kernel-stride", "even-kernel", "kernel-stride", "conv-stride", "conv-dilation",
    "conv-transpose-shape", "resize-mode", "resize-scale", "resize-axis", "resize-symmetric", "argmax-axis",
    "softmax-axis", "depth-to-space", "global-pool-plane", "pool-dilation", "binary-nonconstant",
    "binary-constant-form", "layernorm-axis", "layernorm-params", "variable-dims", "concat-axis", "pad-form",
    "argmax-attribute", "resize-coordinates", "resize-attribute"})
_SYMBOL = {"Sub": "-", "Div": "/"}


def _form(kernel: tuple[int, ...], stride: tuple[int, ...]) -> str:
    """ "KHxKWsS" for a 2-D kernel with equal strides, else a form no rule set lists."""
    text = "x".join(map(str, kernel))
    return f"{text}s{stride[0]}" if len(set(stride)) == 1 else f"{text}s{'x'.join(map(str, stride))}"


@dataclass(frozen=True)
class ConvView:
    """A Conv-like node's group, channels, weight shape, strides and dilations."""

    key: str
    op_type: str
    group: int
    in_channels: int | None
    weight_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def kernel(self) -> tuple[int, ...]:
        return self.weight_shape[2:]

    @property
    def is_depthwise(self) -> bool:
        return self.group > 1 and self.weight_shape[1] == 1 and self.group == self.in_channels

    @property
    def group_width(self) -> int:
        return self.weight_shape[1]

    @property
    def is_patch_embedding(self) -> bool:
        """An NxN kernel at stride N, undilated (TI: "NxN by stride N convolution")."""
        return (len(set(self.kernel)) == 1 and self.stride == self.kernel and self.kernel[0] > 1
                and set(self.dilation) == {1})


def conv_view(graph: Graph, key: str) -> ConvView | None:
    """The ConvView of node `key`, or None when it is no conv or its weight shape is unknown."""
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
    dilation = tuple(node.attrs.get("dilations") or (1,) * kernel_rank)
    return ConvView(key, node.op_type, int(node.attrs.get("group", 1)), in_channels, tuple(weight_shape), stride,
                    dilation)


def graph_target_findings(graph: Graph, order: list[str], convs: dict[str, ConvView],
                          rules: RuleSet) -> list[Finding]:
    """Findings of every node in `order` under `rules`; the nodes of a sequence TI imports as one layer
    (rules.fused_patterns, segcost.passes.target_patterns) have none, their ops alone would.

    Raises:
        InputError: an axis attribute out of range for its input.
    """
    fused = fused_layers(graph, rules.fused_patterns) if rules.fused_patterns else {}
    return [finding for key in order if key not in fused
            for finding in target_findings(graph, key, convs.get(key), rules)]


def target_findings(graph: Graph, key: str, view: ConvView | None, rules: RuleSet) -> list[Finding]:
    """Findings of node `key` under `rules` (empty: it runs on the accelerator).

    Raises:
        InputError: an axis attribute out of range for its input.
    """
    node = graph.node(key)
    if node.domain not in ("", "ai.onnx") or (rules.ops is not None and node.op_type not in rules.ops):
        where = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
        return [Finding(key, node.op_type, "unsupported-op", f"op {where} is not supported by rule set {rules.name!r}")]
    found = []
    if node.op_type in rules.rank4_ops and node.inputs:
        shape = graph.shape(node.inputs[0])
        if shape is not None and len(shape) != 4:
            found.append(Finding(key, node.op_type, "rank-4", f"input rank {len(shape)}; only rank 4 runs"))
    if view is not None and view.op_type == "Conv" and len(view.kernel) == 2:
        found += _conv(view, rules)
    if view is not None and view.op_type == "ConvTranspose" and len(view.kernel) == 2:
        found += _conv_transpose(view, rules)
    check = _CHECKS.get(node.op_type)
    if check is not None:
        found += check(graph, key, node, rules)
    if node.op_type in rules.channelwise_constant_ops:
        found += _channelwise(graph, key, node, rules)
    limit = dict(rules.max_variable_dims).get(node.op_type)
    if limit is not None:
        found += variable_dims(graph, key, node, limit)
    return found


def _conv(view: ConvView, rules: RuleSet) -> list[Finding]:
    found = []
    form = _form(view.kernel, view.stride)
    patch = rules.patch_embedding and view.is_patch_embedding
    if view.is_depthwise and form not in rules.depthwise:
        found.append(Finding(view.key, "Conv", "dw-kernel-stride",
                             f"depthwise {form}; allowed: {', '.join(sorted(rules.depthwise))}"))
    if not rules.even_conv_kernels and any(k % 2 == 0 for k in view.kernel) and not patch:
        found.append(Finding(view.key, "Conv", "even-kernel", f"even kernel {'x'.join(map(str, view.kernel))}"))
    elif not view.is_depthwise and 2 in view.stride and max(view.kernel) > rules.max_kernel_at_stride2:
        found.append(Finding(view.key, "Conv", "kernel-stride", f"{form}: kernels larger than "
                             f"{rules.max_kernel_at_stride2} do not run at stride 2"))
    if rules.equal_strides and len(set(view.stride)) > 1:
        found.append(Finding(view.key, "Conv", "conv-stride", f"strides {list(view.stride)}; H and W strides "
                                                              "must be equal"))
    elif not view.is_depthwise and max(view.stride) > 2 and not patch and form not in rules.large_stride_forms:
        allowed = ", ".join(sorted(rules.large_stride_forms)) or "none"
        found.append(Finding(view.key, "Conv", "conv-stride", f"{form}: above stride 2 only {allowed}"
                             + (" or an NxN kernel at stride N" if rules.patch_embedding else "")))
    if not rules.dilated_conv_at_stride and max(view.dilation) > 1 and max(view.stride) > 1:
        found.append(Finding(view.key, "Conv", "conv-dilation", f"dilation {list(view.dilation)} at stride "
                                                                f"{list(view.stride)}; dilated convs run at stride 1"))
    return found


def _conv_transpose(view: ConvView, rules: RuleSet) -> list[Finding]:
    form = _form(view.kernel, view.stride)
    dilated = max(view.dilation) > 1 and not rules.conv_transpose_dilated
    if form in rules.conv_transpose and view.group in rules.conv_transpose_groups and not dilated:
        return []
    what = f"{form} group {view.group}" + (f" dilation {list(view.dilation)}" if dilated else "")
    dilation = "" if rules.conv_transpose_dilated else ", dilation 1"
    return [Finding(view.key, "ConvTranspose", "conv-transpose-shape",
                    f"{what}; allowed: {', '.join(sorted(rules.conv_transpose))}, group "
                    f"{sorted(rules.conv_transpose_groups)}{dilation}")]


def _argmax(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    shape = graph.shape(node.inputs[0]) if node.inputs else None
    axis = int(node.attrs.get("axis", 0))
    rank = len(shape) if shape is not None else 4   # TIDL tensors are NCHW
    found = argmax_attribute_findings(key, node, rules)
    if axis_allowed(axis, rules.argmax_axes, rank, f"node {key!r} (ArgMax) attribute axis"):
        return found
    return [Finding(key, "ArgMax", "argmax-axis", f"axis {axis} of a rank-{rank} input; allowed "
                    f"{list(rules.argmax_axes)} (the channel axis)"), *found]


def _softmax(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    shape = graph.shape(node.inputs[0]) if node.inputs else None
    axis = read_operand(graph, key, "axis").scalar()
    rank = len(shape) if shape is not None else 4
    if axis is None or axis_allowed(int(axis), rules.softmax_axes, rank, f"node {key!r} (Softmax) attribute axis"):
        return []
    return [Finding(key, "Softmax", "softmax-axis", f"axis {axis} of a rank-{rank} input; allowed "
                    f"{list(rules.softmax_axes)}")]


def _depth_to_space(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    block = int(node.attrs.get("blocksize", 0))
    if not rules.depth_to_space_blocksizes or block in rules.depth_to_space_blocksizes:
        return []
    return [Finding(key, "DepthToSpace", "depth-to-space",
                    f"blocksize {block}; allowed {sorted(rules.depth_to_space_blocksizes)}")]


def _global_pool(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    shape = graph.shape(node.inputs[0]) if node.inputs else None
    if not rules.global_pool_max_plane or not is_static_shape(shape) or len(shape) < 3:
        return []
    plane = prod(shape[2:])
    if plane <= rules.global_pool_max_plane:
        return []
    return [Finding(key, node.op_type, "global-pool-plane", f"plane {'x'.join(map(str, shape[2:]))} = {plane} "
                    f"elements; at most {rules.global_pool_max_plane} run")]


def _pool(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    dilation = list(node.attrs.get("dilations") or [1])
    if rules.pool_dilated or max(dilation) == 1:
        return []
    return [Finding(key, node.op_type, "pool-dilation", f"dilation {dilation}; only dilation 1 runs")]


def _channelwise(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """x - c and x / c with c constant, a scalar or varying along one of `constant_operand_axes` only."""
    if len(node.inputs) != 2:
        return []
    left, right = (constant_value(graph, tensor) for tensor in node.inputs)
    symbol = _SYMBOL.get(node.op_type, node.op_type)
    if left is None and right is None:
        return [Finding(key, node.op_type, "binary-nonconstant",
                        f"{node.op_type} of two computed tensors; one operand must be constant")]
    if right is None:
        return [Finding(key, node.op_type, "binary-constant-form", f"c {symbol} x with a constant c on the left "
                        f"is not a per-channel scale or shift; only x {symbol} c runs")]
    if left is not None:
        return []   # constant by constant: folded before it reaches the target
    shape = graph.shape(node.inputs[0])
    rank = len(shape) if shape is not None else 4
    dims = [1] * (rank - right.ndim) + list(right.shape) if right.ndim <= rank else list(right.shape)
    spread = [axis for axis, size in enumerate(dims) if size != 1]
    if right.ndim <= rank and (not spread or (len(spread) == 1 and axis_allowed(
            spread[0], rules.constant_operand_axes, rank, f"node {key!r} ({node.op_type}) constant"))):
        return []
    return [Finding(key, node.op_type, "binary-constant-form", f"x {symbol} c with c of shape {list(right.shape)} "
                    f"on a rank-{rank} x varies along axes {spread}; only a scalar or a c varying along one of "
                    f"axes {list(rules.constant_operand_axes)} runs")]


def _resize_ratios(graph: Graph, key: str, node: Node) -> dict[int, Fraction | None]:
    """Axis → out/in ratio of every axis whose size may change (None: the size is 0 or negative)."""
    before, after = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
    ratios: dict[int, Fraction | None] = {}
    if before is not None and after is not None and len(before) == len(after):
        for axis, (size_in, size_out) in enumerate(zip(before, after)):
            if isinstance(size_in, int) and isinstance(size_out, int) and size_in != size_out:
                ratios[axis] = Fraction(size_out, size_in) if size_in > 0 and size_out > 0 else None
        if all(isinstance(size, int) for size in (*before, *after)):
            return ratios
    scales = read_operand(graph, key, "scales").floats()
    if not scales:
        return ratios
    rank = len(before) if before is not None else len(scales)
    axes = node.attrs.get("axes") or range(len(scales))
    for axis, scale in zip(axes, scales):
        axis = normalize_axis(int(axis), rank, f"node {key!r} ({node.op_type}) attribute axes")
        if axis not in ratios and scale != 1.0:
            ratios[axis] = Fraction(scale).limit_denominator(1 << 16) if scale > 0 else None
    return ratios


def _resize(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    found = []
    mode = node.attrs.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in rules.resize_modes:
        found.append(Finding(key, node.op_type, "resize-mode", f"mode {mode!r}; allowed {sorted(rules.resize_modes)}"))
    found += resize_attribute_findings(key, node, rules)
    ratios = _resize_ratios(graph, key, node)
    shape = graph.shape(node.inputs[0])
    rank = len(shape) if shape is not None else 4
    spatial = {}
    for axis, ratio in sorted(ratios.items()):
        if not axis_allowed(axis, rules.resize_axes, rank, f"node {key!r} ({node.op_type})"):
            found.append(Finding(key, node.op_type, "resize-axis", f"axis {axis} of a rank-{rank} input scales by "
                                 f"{ratio}; only axes {list(rules.resize_axes)} (H, W) resize"))
            continue
        spatial[axis] = ratio
        if ratio is None:
            found.append(Finding(key, node.op_type, "resize-scale", f"axis {axis} has a size of 0 or less"))
        elif ratio < 1 and not rules.resize_downscale:
            found.append(Finding(key, node.op_type, "resize-scale", f"axis {axis} scales by {ratio} < 1; only "
                                 "upscaling runs"))
        elif rules.resize_power_of_two_scales and not _power_of_two(ratio):
            found.append(Finding(key, node.op_type, "resize-scale",
                                 f"axis {axis} scales by {ratio}; only powers of two run"))
    if rules.resize_symmetric:
        plane = [normalize_axis(axis, rank, "rule set resize_axes") for axis in rules.resize_axes
                 if -rank <= axis < rank]
        scales = [spatial.get(axis, Fraction(1)) for axis in plane]
        if len(set(scales)) > 1:
            found.append(Finding(key, node.op_type, "resize-symmetric", f"scales {[str(s) for s in scales]} on "
                                 f"axes {plane}; H and W must scale alike"))
    return found


def _power_of_two(ratio: Fraction) -> bool:
    """2^k for an integer k (k < 0: a downscale by a power of two)."""
    value = ratio if ratio >= 1 else 1 / ratio
    return value.denominator == 1 and value.numerator & (value.numerator - 1) == 0


_CHECKS = {
    "Resize": _resize, "Upsample": _resize, "ArgMax": _argmax, "Softmax": _softmax, "DepthToSpace": _depth_to_space,
    "GlobalAveragePool": _global_pool, "MaxPool": _pool, "AveragePool": _pool, **OP_CHECKS,
}

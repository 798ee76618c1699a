"""Per-op checks of the constraints TI's SDK 10/11 support tables state (segcost/targets/tidl-rules.toml).

Each check reads the rule set keys it names; a key's "no limit" value (an empty list or table,
or a false flag) makes it return no finding, so the older sets, whose documents state no such
limit, carry the key without effect. Sources: edgeai-tidl-tools docs/supported_ops_rts_versions.md
@ d64aaabbd6465783a0eab7a0b9c08d809379dc17 (SDK 11.00), quoted by row in the table file.
"""

from __future__ import annotations

from segcost.ir import Graph
from segcost.ir.graph import Node
from segcost.ir.opforms import normalize_axis, read_operand
from segcost.passes.target_rules import Finding, RuleSet

__all__ = ["OP_CHECKS", "argmax_attribute_findings", "axis_allowed", "is_constant", "resize_attribute_findings",
           "variable_dims"]


def axis_allowed(axis: int, allowed: tuple[int, ...], rank: int, where: str) -> bool:
    """`axis` is one of `allowed` (both normalized by `rank`; allowed axes outside the rank never match).

    Raises:
        InputError: `axis` outside [-rank, rank) (`where` names it).
    """
    wanted = {normalize_axis(value, rank, "rule set axes") for value in allowed if -rank <= value < rank}
    return normalize_axis(axis, rank, where) in wanted


def is_constant(graph: Graph, tensor: str) -> bool:
    """An initializer or a Constant node's output (TI: not a "variable" input)."""
    key = graph.producer(tensor)
    return tensor in graph.initializers or (key is not None and graph.node(key).op_type == "Constant")


def variable_dims(graph: Graph, key: str, node: Node, limit: int) -> list[Finding]:
    """TI: "Number of non-singleton variable input dimensions must be less than <= N" (dims known > 1 count)."""
    found = []
    for tensor in node.inputs:
        shape = graph.shape(tensor) if tensor else None
        if shape is None or is_constant(graph, tensor):
            continue
        wide = [size for size in shape if isinstance(size, int) and size != 1]
        if len(wide) > limit:
            found.append(Finding(key, node.op_type, "variable-dims", f"input {tensor!r} of shape {list(shape)} has "
                                 f"{len(wide)} non-singleton dims; at most {limit} run"))
    return found


def _rank(graph: Graph, tensor: str) -> int | None:
    shape = graph.shape(tensor) if tensor else None
    return None if shape is None else len(shape)


def _layer_norm(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """LayerNormalization normalizes axes [axis, rank); TI's layer normalizes `layer_norm_axes` only."""
    rank = _rank(graph, node.inputs[0]) if node.inputs else None
    if rank is None:
        return []
    axis = normalize_axis(int(node.attrs.get("axis", -1)), rank, f"node {key!r} (LayerNormalization) attribute axis")
    normalized = set(range(axis, rank))
    allowed = {normalize_axis(value, rank, "rule set axes") for value in rules.layer_norm_axes if -rank <= value < rank}
    found = []
    if normalized != allowed:
        found.append(Finding(key, node.op_type, "layernorm-axis", f"normalizes axes {sorted(normalized)} of a rank-"
                             f"{rank} input; only axes {list(rules.layer_norm_axes)} (the width axis) run"))
    if rules.layer_norm_vector_params:
        for tensor in node.inputs[1:3]:
            param = graph.shape(tensor) if tensor else None
            if param is not None and not (len(param) == 1 or (len(param) == 2 and param[0] == 1)):
                found.append(Finding(key, node.op_type, "layernorm-params", f"scale/bias {tensor!r} of shape "
                                     f"{list(param)}; only [N] or [1, N] run"))
    return found


def _concat(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """SDK 11.00 row 11: "Only supported for axis values of -3, -2 & -1"; "Not supported along the batch dimension".

    TIDL right-aligns a tensor to N×C×H×W, so the batch axis exists from rank 4 on, where -3..-1
    already exclude it; below rank 4 every axis is one of -3..-1 (a shape vector's axis 0 is -1).
    """
    rank = _rank(graph, node.inputs[0]) if node.inputs else None
    if not rules.concat_axes or rank is None:
        return []
    axis = int(node.attrs.get("axis", 0))
    if axis_allowed(axis, rules.concat_axes, rank, f"node {key!r} (Concat) attribute axis"):
        return []
    return [Finding(key, node.op_type, "concat-axis", f"axis {axis} of rank-{rank} inputs; allowed "
                    f"{list(rules.concat_axes)}")]


def _pad(graph: Graph, key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """SDK 11.00 row 19: "Only constant pad mode is supported"; "Padding is only supported for width/height axes"."""
    found = []
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if rules.pad_modes and mode not in rules.pad_modes:
        found.append(Finding(key, node.op_type, "pad-form", f"mode {mode!r}; allowed {sorted(rules.pad_modes)}"))
    rank = _rank(graph, node.inputs[0]) if node.inputs else None
    pads = read_operand(graph, key, "pads").ints()
    if not rules.pad_axes or rank is None or pads is None:
        return found
    axes = read_operand(graph, key, "axes").ints() or tuple(range(rank))
    where = f"node {key!r} (Pad) axes"
    padded = sorted({normalize_axis(axis, rank, where) for axis, begin, end in zip(axes, pads, pads[len(axes):])
                     if begin or end})
    outside = [axis for axis in padded if not axis_allowed(axis, rules.pad_axes, rank, where)]
    if outside:
        found.append(Finding(key, node.op_type, "pad-form", f"pads axes {outside} of a rank-{rank} input; only axes "
                             f"{list(rules.pad_axes)} (H, W) pad"))
    return found


def _text(node: Node, name: str, default: str) -> str:
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def resize_attribute_findings(key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """SDK 11.00 row 16's attribute limits of Resize (Upsample has none of these attributes)."""
    if node.op_type != "Resize":
        return []
    found = []
    mode = _text(node, "mode", "nearest")
    coordinates = _text(node, "coordinate_transformation_mode", "half_pixel")
    if rules.resize_coordinate_modes and coordinates not in rules.resize_coordinate_modes:
        found.append(Finding(key, node.op_type, "resize-coordinates", f"coordinate_transformation_mode "
                             f"{coordinates!r}; allowed {sorted(rules.resize_coordinate_modes)}"))
    wanted = dict(rules.resize_nearest_modes).get(coordinates)
    nearest = _text(node, "nearest_mode", "round_prefer_floor")
    if mode == "nearest" and wanted is not None and nearest != wanted:
        found.append(Finding(key, node.op_type, "resize-coordinates", f"nearest_mode {nearest!r} with "
                             f"{coordinates!r}; only {wanted!r} runs"))
    if mode == "linear" and coordinates == "asymmetric" and not rules.resize_linear_asymmetric:
        found.append(Finding(key, node.op_type, "resize-coordinates", "'linear' mode with 'asymmetric' coordinates"))
    if rules.resize_default_attributes:
        given = {name: node.attrs.get(name) for name in ("antialias", "exclude_outside", "keep_aspect_ratio_policy")}
        odd = [f"{name}={value!r}" for name, value in given.items()
               if value is not None and value not in (0, "stretch", b"stretch")]
        if odd:
            found.append(Finding(key, node.op_type, "resize-attribute", f"{', '.join(odd)}; only the defaults run"))
    return found


def argmax_attribute_findings(key: str, node: Node, rules: RuleSet) -> list[Finding]:
    """SDK 11.00 row 15: "Only keepdims = 1 (default)", "Only select_last_index = 0 (default) is supported"."""
    if not rules.argmax_default_attributes:
        return []
    odd = [f"{name}={node.attrs[name]}" for name, default in (("keepdims", 1), ("select_last_index", 0))
           if name in node.attrs and int(node.attrs[name]) != default]
    return [Finding(key, node.op_type, "argmax-attribute", f"{', '.join(odd)}; only the defaults run")] if odd else []


OP_CHECKS = {"LayerNormalization": _layer_norm, "Concat": _concat, "Pad": _pad}

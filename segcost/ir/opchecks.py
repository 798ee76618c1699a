"""Degenerate attributes and operands are input errors, checked in this one place.

A Conv with ``dilations=[0, 0]`` or ``strides=[0, 0]``, a kernel dimension 0, a group that
does not divide the channels, or a Resize with a negative scale is not a model onnxruntime
runs; counting it would print a number for nothing. `check_node` raises an `InputError`
naming the node and the attribute (one line). The cost-rule registry calls it for every op
type listed in `CHECKED_OP_TYPES` before the op's rule, so no rule repeats these checks.

Constraints are the ONNX operator spec's (onnx/docs/Operators.md): strides, dilations,
kernel_shape, group, blocksize and LRN size are ≥ 1; pads and output_padding are ≥ 0
("can take any value greater than or equal to 0"); Conv's group divides C_in and C_out;
kernel_shape, when given, is the weight's kernel (W's dims 2..; onnxruntime refuses
any other); Resize scales are > 0 and finite, sizes > 0, Upsample scales ≥ 1; TopK's k ≥ 0;
GroupNormalization's num_groups divides the channels.
"""

from __future__ import annotations

from segcost.errors import InputError
from segcost.ir.graph import Graph
from segcost.ir.opforms import check_resize_operands, read_operand

__all__ = ["CHECKED_OP_TYPES", "check_graph", "check_node"]

_CONV = ("strides", "dilations", "kernel_shape", "group")
_POOL = ("strides", "dilations", "kernel_shape")
# op_type → (attributes whose values must all be ≥ 1, attributes whose values must all be ≥ 0)
_ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Conv": (_CONV, ("pads",)),
    "ConvInteger": (_CONV, ("pads",)),
    "QLinearConv": (_CONV, ("pads",)),
    "FusedConv": (_CONV, ("pads",)),
    "ConvTranspose": (_CONV, ("pads", "output_padding", "output_shape")),
    "DeformConv": ((*_CONV, "offset_group"), ("pads",)),
    "MaxPool": (_POOL, ("pads",)),
    "AveragePool": (_POOL, ("pads",)),
    "LpPool": (_POOL, ("pads",)),
    "MaxUnpool": (("strides", "kernel_shape"), ("pads",)),
    "DepthToSpace": (("blocksize",), ()),
    "SpaceToDepth": (("blocksize",), ()),
    "LRN": (("size",), ()),
    "GroupNormalization": (("num_groups",), ()),
}
# (input index of X, input index of W) of the grouped convolutions
_GROUPED = {"Conv": (0, 1), "ConvInteger": (0, 1), "FusedConv": (0, 1), "QLinearConv": (0, 3),
            "ConvTranspose": (0, 1), "DeformConv": (0, 1)}
CHECKED_OP_TYPES = frozenset({*_ATTRIBUTES, "Resize", "Upsample", "TopK"})  # GroupNormalization is in _ATTRIBUTES


def check_node(graph: Graph, key: str) -> None:
    """Raise InputError when node `key` has a degenerate attribute or constant operand.

    Shapes are read from the graph where known (group against channels, kernel dims of
    the weight); an unknown shape is left to the cost rule, which reports it.

    Raises:
        InputError: "node 'KEY' (OpType): attribute NAME = VALUE must ..." for the first
            degenerate attribute or operand found.
    """
    node = graph.node(key)
    op_type, attrs = node.op_type, node.attrs
    positive, non_negative = _ATTRIBUTES.get(op_type, ((), ()))
    for name in positive:
        value = attrs.get(name)
        if value is not None and _smallest(value) < 1:
            raise InputError(f"{_where(key, op_type)}: attribute {name} = {_show(value)} must be >= 1")
    for name in non_negative:
        value = attrs.get(name)
        if value is not None and _smallest(value) < 0:
            raise InputError(f"{_where(key, op_type)}: attribute {name} = {_show(value)} must be >= 0")
    if op_type in _GROUPED:
        _check_grouping(graph, key, *_GROUPED[op_type])
    elif op_type in ("Resize", "Upsample"):
        check_resize_operands(graph, key)
    elif op_type == "GroupNormalization":
        shape = graph.shape(node.inputs[0]) if node.inputs and node.inputs[0] else None
        groups = int(attrs.get("num_groups", 1))
        if shape is not None and len(shape) > 1 and isinstance(shape[1], int) and shape[1] % groups:
            raise InputError(f"{_where(key, op_type)}: attribute num_groups = {groups} does not divide the input's "
                             f"{shape[1]} channels")
    elif op_type == "TopK":
        k = read_operand(graph, key, "k")
        if k.known and any(value < 0 for value in k.ints() or ()):
            raise InputError(f"{_where(key, op_type)}: k = {k.ints()} must be >= 0")


def _check_grouping(graph: Graph, key: str, x_index: int, w_index: int) -> None:
    node = graph.node(key)
    inputs = node.inputs
    group = node.attrs.get("group", 1)
    x_shape = graph.shape(inputs[x_index]) if len(inputs) > x_index and inputs[x_index] else None
    w_shape = graph.shape(inputs[w_index]) if len(inputs) > w_index and inputs[w_index] else None
    if w_shape is not None and len(w_shape) > 2:
        kernel = w_shape[2:]
        if any(isinstance(dim, int) and dim < 1 for dim in kernel):
            raise InputError(f"{_where(key, node.op_type)}: weight {inputs[w_index]!r} has kernel {list(kernel)}; "
                             "every kernel dimension must be >= 1")
        declared = node.attrs.get("kernel_shape")   # the spec: "inferred from input W" when absent
        if declared is not None and all(isinstance(dim, int) for dim in kernel) and list(declared) != list(kernel):
            raise InputError(f"{_where(key, node.op_type)}: attribute kernel_shape = {_show(declared)} does not "
                             f"match the {list(kernel)} kernel of weight {inputs[w_index]!r}")
    channels_in = x_shape[1] if x_shape is not None and len(x_shape) > 1 else None
    if isinstance(channels_in, int) and channels_in % group:
        raise InputError(f"{_where(key, node.op_type)}: attribute group = {group} does not divide the input's "
                         f"{channels_in} channels")
    channels_out = w_shape[0] if w_shape else None
    if node.op_type != "ConvTranspose" and isinstance(channels_out, int) and channels_out % group:
        raise InputError(f"{_where(key, node.op_type)}: attribute group = {group} does not divide the "
                         f"{channels_out} output channels of weight {inputs[w_index]!r}")


def _smallest(value) -> int:
    """Smallest element of an INT or INTS attribute (1 for an empty list or a non-integer value)."""
    if isinstance(value, (list, tuple)):
        return min((item for item in value if isinstance(item, int)), default=1)
    return value if isinstance(value, int) else 1


def _where(key: str, op_type: str) -> str:
    return f"node {key!r} ({op_type})"


def _show(value) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def check_graph(graph: Graph) -> None:
    """check_node for every node of `graph` whose op type has checks (commands that run no cost
    rule, such as `segcost verify`, call this; the cost-rule registry checks nodes as it costs them).

    Raises:
        InputError: for the first degenerate attribute or operand, as check_node.
    """
    for key, node in graph.nodes.items():
        if node.op_type in CHECKED_OP_TYPES:
            check_node(graph, key)

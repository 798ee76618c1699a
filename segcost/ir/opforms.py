"""Read an op's operands whatever form its opset gives them: attribute or (constant) input.

ONNX moved many operands from attributes to inputs over the opsets, so one operator has
several forms in the wild (sources: the ONNX operator changelog, onnx/docs/Changelog.md,
and each operator's version history in onnx/docs/Operators.md):

==================  =========================================================  ========
op                  operand: attribute form → input form                       since
==================  =========================================================  ========
Clip                min, max → inputs #1, #2 (an empty name means absent)      11
Dropout             ratio → input #1; training_mode input #2 added             12
Pad                 pads, value → inputs #1 (pads), #2 (constant_value)        11
                    axes input #3 added                                        18
Slice               starts, ends, axes → inputs #1–#3; steps input #4 added    10
Split               split → input #1                                           13
Squeeze/Unsqueeze   axes → input #1                                            13
ReduceSum           axes → input #1                                            13
Reduce* (others)    axes → input #1                                            18
TopK                k → input #1                                               10
Upsample            scales → input #1                                          9
Resize              scales input #1 (opset 10); roi #1, scales #2, sizes #3    11
Reshape             shape → input #1                                           5
Softmax/LogSoftmax/ axis default 1 → −1                                        13
Hardmax
==================  =========================================================  ========

`read_operand(graph, key, name)` picks the form from the graph's opset for the node's
domain (`ModelInfo.opset_imports`) and returns an `Operand`: its value when it is an
attribute, a spec default, or a constant input — an initializer or the output of a
`Constant` node — and otherwise says that the value is only known at run time.
Operands not in the table above are plain attributes at every opset.

`normalize_axis` / `normalize_axes` turn negative axes into 0..rank−1 (ONNX: "negative
value means counting dimensions from the back") and make an out-of-range or repeated
axis an `InputError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segcost.errors import InputError
from segcost.ir.graph import Graph, Node

__all__ = ["ABSENT", "ATTRIBUTE", "DEFAULT", "DYNAMIC", "INPUT", "Operand", "constant_value",
           "normalize_axes", "normalize_axis", "opset_of", "read_operand", "resize_output_shape"]

# Where an operand's value came from.
ATTRIBUTE = "attribute"   # a node attribute
INPUT = "input"           # a constant input: initializer or Constant node output
DEFAULT = "default"       # not given; the spec's default applies (value holds it)
ABSENT = "absent"         # not given and the spec has no default (e.g. Clip's max: unbounded)
DYNAMIC = "dynamic"       # an input computed at run time: value unknown before running

# (op_type) → {operand: ((since_version, attribute name | input index, default), ...)}, oldest first.
# A default of None means "absent" when the operand is not given.
_Form = tuple[int, "str | int", Any]
_INF = float("inf")
_REDUCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
              "ReduceLogSumExp", "ReduceSumSquare")
_FORMS: dict[str, dict[str, tuple[_Form, ...]]] = {
    "Clip": {"min": ((6, "min", -_INF), (11, 1, None)), "max": ((6, "max", _INF), (11, 2, None))},
    "Dropout": {"ratio": ((7, "ratio", 0.5), (12, 1, 0.5)), "training_mode": ((12, 2, False),)},
    "Pad": {"pads": ((2, "pads", None), (11, 1, None)), "constant_value": ((2, "value", 0.0), (11, 2, 0.0)),
            "axes": ((18, 3, None),)},
    "Slice": {"starts": ((1, "starts", None), (10, 1, None)), "ends": ((1, "ends", None), (10, 2, None)),
              "axes": ((1, "axes", None), (10, 3, None)), "steps": ((10, 4, None),)},
    "Split": {"split": ((2, "split", None), (13, 1, None))},
    "Squeeze": {"axes": ((1, "axes", None), (13, 1, None))},
    "Unsqueeze": {"axes": ((1, "axes", None), (13, 1, None))},
    "ReduceSum": {"axes": ((1, "axes", None), (13, 1, None))},
    **{op: {"axes": ((1, "axes", None), (18, 1, None))} for op in _REDUCE_18},
    "TopK": {"k": ((1, "k", None), (10, 1, None))},
    "Upsample": {"scales": ((7, "scales", None), (9, 1, None))},
    "Resize": {"scales": ((10, 1, None), (11, 2, None)), "roi": ((11, 1, None),), "sizes": ((11, 3, None),)},
    "Reshape": {"shape": ((1, "shape", None), (5, 1, None))},
    **{op: {"axis": ((1, "axis", 1), (13, "axis", -1))} for op in ("Softmax", "LogSoftmax", "Hardmax")},
}
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True, slots=True)
class Operand:
    """One operand of a node, read from whichever form the opset uses.

    Attributes:
        name: the operand's name in the latest spec ("min", "axes", "scales", ...).
        source: ATTRIBUTE, INPUT, DEFAULT, ABSENT or DYNAMIC (see the module constants).
        value: numpy array (numbers) or str (string attributes); None when ABSENT or DYNAMIC.
        tensor: the input tensor's name for INPUT and DYNAMIC, else None.
        where: "node 'KEY' (OpType)", for error messages.
    """

    name: str
    source: str
    value: Any = None
    tensor: str | None = None
    where: str = ""

    @property
    def known(self) -> bool:
        """True when the value is known without running the model."""
        return self.value is not None

    @property
    def given(self) -> bool:
        """True when the node states the operand (attribute or input), known or not."""
        return self.source in (ATTRIBUTE, INPUT, DYNAMIC)

    def ints(self) -> tuple[int, ...] | None:
        """The value flattened to Python ints, or None when not known."""
        return None if self.value is None else tuple(int(v) for v in np.asarray(self.value).reshape(-1))

    def floats(self) -> tuple[float, ...] | None:
        """The value flattened to Python floats, or None when not known."""
        return None if self.value is None else tuple(float(v) for v in np.asarray(self.value).reshape(-1))

    def scalar(self) -> float | int | None:
        """The single element of the value (int for integer dtypes), None when not known.

        Raises:
            InputError: the value has more than one element.
        """
        if self.value is None:
            return None
        flat = np.asarray(self.value).reshape(-1)
        if flat.size != 1:
            raise InputError(f"{self.where or 'operand'}: {self.name!r} must be a scalar, got {flat.size} elements")
        item = flat[0].item()
        return item


def opset_of(graph: Graph, domain: str = "") -> int:
    """The opset version the model imports for `domain` ("" and "ai.onnx" are the same); 0 if none."""
    imports = graph.info.opset_imports
    if domain in _DEFAULT_DOMAINS:
        return imports.get("", imports.get("ai.onnx", 0))
    return imports.get(domain, 0)


def read_operand(graph: Graph, key: str, name: str) -> Operand:
    """Operand `name` of node `key`, from the attribute or input form of the graph's opset.

    Args:
        graph: the IR; its ModelInfo gives the opset of the node's domain.
        key: node key in `graph`.
        name: operand name as in the newest spec (e.g. "axes" for Squeeze at any opset).

    Returns:
        An Operand. An input given with an empty name is absent (ONNX: "an empty string
        may be used in place of an actual argument's name to indicate a missing argument"):
        Clip(x, "", max) has no lower bound.

    Raises:
        InputError: the node uses a form its opset does not have (e.g. a Squeeze at opset 13
            with an ``axes`` attribute), or a Constant's tensor keeps its data outside the file.
    """
    node = graph.node(key)
    where = f"node {key!r} ({node.op_type})"
    forms = _FORMS.get(node.op_type) if node.domain in _DEFAULT_DOMAINS else None
    spec = forms.get(name) if forms is not None else None
    if spec is None:  # a plain attribute at every opset
        return _from_attribute(node, name, None, name, where)
    opset = opset_of(graph, node.domain) or 10**6  # no import recorded: read the newest form
    current = None
    for candidate in spec:
        if candidate[0] <= opset:
            current = candidate
    if current is None:  # the operand does not exist yet at this opset
        return Operand(name, ABSENT, where=where)
    _, form, default = current
    for _, other, _ in spec:  # an attribute form the opset no longer (or not yet) has
        if isinstance(other, str) and other != form and other in node.attrs:
            raise InputError(f"{where}: attribute {other!r} is not part of "
                             f"{node.op_type} at opset {opset}; there {name!r} is "
                             f"{'input #' + str(form) if isinstance(form, int) else 'attribute ' + repr(form)}")
    if isinstance(form, str):
        return _from_attribute(node, form, default, name, where)
    tensor = node.inputs[form] if form < len(node.inputs) else ""
    if not tensor:
        return _absent(name, default, where)
    value = constant_value(graph, tensor)
    return Operand(name, INPUT if value is not None else DYNAMIC, value, tensor, where)


def constant_value(graph: Graph, tensor: str) -> np.ndarray | None:
    """Data of `tensor` when it is constant — an initializer or a Constant node's output — else None.

    Raises:
        InputError: a Constant node's tensor has external data (it is read only through the
            loader, which confines external files to the model's folder).
    """
    init = graph.initializers.get(tensor)
    if init is not None:
        return init.array
    key = graph.producer(tensor)
    if key is None:
        return None
    node = graph.node(key)
    if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
        return None
    return _constant_node_value(key, node)


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    """`axis` in [-rank, rank) as 0..rank−1 (ONNX counts a negative axis from the back).

    Args:
        axis: the axis as written in the model.
        rank: rank of the tensor the axis refers to.
        what: how the error names it, e.g. "node 'am' (ArgMax) attribute axis".

    Raises:
        InputError: axis outside [-rank, rank).
    """
    axis = int(axis)
    if not -rank <= axis < rank:
        raise InputError(f"{what} = {axis} is out of range for a rank-{rank} tensor "
                         f"(valid: {-rank}..{rank - 1})")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Iterable[int], rank: int, what: str = "axes") -> tuple[int, ...]:
    """Each axis normalized as in `normalize_axis`, in the given order.

    Raises:
        InputError: an axis out of range, or an axis given twice (also as -1 and rank−1).
    """
    result = tuple(normalize_axis(axis, rank, what) for axis in axes)
    if len(set(result)) != len(result):
        raise InputError(f"{what} = {list(axes)} repeats an axis (rank {rank})")
    return result


def resize_output_shape(graph: Graph, key: str, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of a Resize or Upsample node from its sizes or scales; None when those are dynamic.

    Sizes win over scales (Resize-11+: exactly one of them is given; at opset 11–12 the
    unused one is an empty tensor). From scales, out = floor(float32(in) · scale) per axis,
    as onnx shape inference and onnxruntime compute it; Resize-18's ``axes`` restricts
    scales/sizes to those axes and ``keep_aspect_ratio_policy`` (not_larger / not_smaller)
    rescales sizes by one common factor, out = round(factor · in). Source: ONNX Resize-10,
    -11, -13, -18 and Upsample-7, -9 in onnx/docs/Changelog.md.

    Args:
        input_shape: concrete shape of input X (elements ≥ 0).

    Raises:
        InputError: a scale ≤ 0 (Upsample: < 1), a size ≤ 0, or a count of scales/sizes that
            is not the input's rank (or the number of ``axes``); the message names node and operand.
    """
    node = graph.node(key)
    rank = len(input_shape)
    where = f"node {key!r} ({node.op_type})"
    axes_attr = node.attrs.get("axes") if node.op_type == "Resize" else None
    axes = normalize_axes(axes_attr, rank, f"{where} attribute axes") if axes_attr else tuple(range(rank))
    sizes = read_operand(graph, key, "sizes") if node.op_type == "Resize" else Operand("sizes", ABSENT, where=where)
    scales = read_operand(graph, key, "scales")
    if sizes.source == DYNAMIC or (scales.source == DYNAMIC and not (sizes.known and sizes.value.size)):
        return None
    out = list(input_shape)
    if sizes.known and sizes.value.size:
        values = sizes.ints() or ()
        _check_count(values, axes, where, "sizes")
        if any(size <= 0 for size in values):
            raise InputError(f"{where}: sizes {list(values)} must all be > 0")
        policy = node.attrs.get("keep_aspect_ratio_policy", b"stretch")
        policy = policy.decode() if isinstance(policy, bytes) else policy
        if policy == "stretch":
            for axis, size in zip(axes, values):
                out[axis] = size
            return tuple(out)
        ratios = [np.float32(size) / np.float32(input_shape[axis]) for axis, size in zip(axes, values)]
        factor = min(ratios) if policy == "not_larger" else max(ratios)
        for axis in axes:
            out[axis] = int(np.floor(factor * np.float32(input_shape[axis]) + np.float32(0.5)))
        return tuple(out)
    if not scales.known or not np.asarray(scales.value).size:
        raise InputError(f"{where}: neither scales nor sizes is given")
    factors = scales.floats() or ()
    _check_count(factors, axes, where, "scales")
    upsample = node.op_type == "Upsample"  # Upsample-9: "scale ... greater or equal to 1"
    if not all(np.isfinite(scale) and (scale >= 1 if upsample else scale > 0) for scale in factors):
        raise InputError(f"{where}: scales {list(factors)} must all be finite and {'>= 1' if upsample else '> 0'}")
    for axis, scale in zip(axes, factors):
        out[axis] = int(np.floor(np.float32(input_shape[axis]) * np.float32(scale)))
    return tuple(out)


def _check_count(values: tuple, axes: tuple[int, ...], where: str, name: str) -> None:
    if len(values) != len(axes):
        raise InputError(f"{where}: {name} has {len(values)} values for {len(axes)} axes")


def _from_attribute(node: Node, attribute: str, default: Any, name: str, where: str) -> Operand:
    value = node.attrs.get(attribute)
    if value is None:
        return _absent(name, default, where)
    if isinstance(value, bytes):
        return Operand(name, ATTRIBUTE, value.decode("utf-8", "replace"), where=where)
    if isinstance(value, (int, float, list, tuple, np.ndarray)):
        return Operand(name, ATTRIBUTE, np.asarray(value), where=where)
    return Operand(name, ATTRIBUTE, value, where=where)  # a tensor or graph attribute: passed through


def _absent(name: str, default: Any, where: str) -> Operand:
    if default is None:
        return Operand(name, ABSENT, where=where)
    return Operand(name, DEFAULT, np.asarray(default), where=where)


def _constant_node_value(key: str, node: Node) -> np.ndarray | None:
    # A Constant holds exactly one of these attributes (ONNX Constant-13); helper.get_attribute_value
    # has decoded the scalar/list forms already, `value` is still a TensorProto.
    for attribute in ("value_float", "value_floats", "value_int", "value_ints"):
        if attribute in node.attrs:
            return np.asarray(node.attrs[attribute],
                              dtype=np.float32 if attribute.startswith("value_float") else np.int64)
    value = node.attrs.get("value")
    if value is None:
        return None  # sparse_value / strings: never an operand of a counted op
    if isinstance(value, np.ndarray):  # set by a pass
        return value
    # onnx is imported here, as in ir.graph.Initializer, so that the IR loads without its C extension
    from onnx import TensorProto, numpy_helper

    if value.data_location == TensorProto.EXTERNAL:
        raise InputError(f"node {key!r} (Constant): tensor {value.name or node.outputs[0]!r} keeps its data "
                         "in an external file, which segcost reads only for initializers")
    return numpy_helper.to_array(value)

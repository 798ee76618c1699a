"""The values shape chains compute (Shape → Gather → Cast → Div → Concat → ...), in numpy.

`shapes.evaluate` chooses which tensors are constant once shapes are static; their values
used to come from onnxruntime alone. The ops exporters write for shape arithmetic are few
and their integer (and exact float) semantics fit in a line of numpy each, while importing
onnxruntime and building one session per chain round cost more than the rest of the
resolution (PP-OCRv4 rec: 20 ms import + ~1 ms per session, against ~3 ms of evaluation).

The contract is onnxruntime's result, bit for bit: an op is evaluated here only where numpy
gives exactly what onnxruntime's CPU kernels give — integer division truncates toward zero
(C++ `/`), `Mod` follows the divisor's sign unless `fmod`, float → int `Cast` truncates and
is refused when the value does not fit (C++ leaves it undefined), float `Pow` only when the
result is exactly representable (then every implementation within an ulp returns it). Any
other op, dtype or operand (division by zero, an index out of range, float16) raises
`NotExact`, and the caller runs onnxruntime on the whole slice instead
(tests/test_shapes_values.py compares every op here with onnxruntime).

Why not onnx.reference: it is the reference for op *semantics*, not for onnxruntime's
results (its integer `Div` divides in floating point), and importing it costs ~14 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.errors import InputError
from segcost.ir.opforms import normalize_axes

# dtypes whose arithmetic numpy and onnxruntime both do in IEEE / two's complement
EXACT_DTYPES = frozenset(np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"))
_FLOATS = (np.dtype("float32"), np.dtype("float64"))


class NotExact(Exception):
    """numpy would not reproduce onnxruntime's value here (or the op is not implemented)."""


Arrays = list[np.ndarray | None]
Attrs = dict[str, Any]
OpFunction = Callable[[Arrays, Attrs, int], list[np.ndarray]]
OPS: dict[str, OpFunction] = {}


def _op(*names: str) -> Callable[[OpFunction], OpFunction]:
    def register(function: OpFunction) -> OpFunction:
        for name in names:
            if name in OPS:
                raise ValueError(f"op {name} registered twice")
            OPS[name] = function
        return function
    return register


def compute_values(targets: list[str], producer: Mapping[str, onnx.NodeProto], known: dict[str, np.ndarray],
             opset: int) -> dict[str, np.ndarray]:
    """{target: value} computed from `known` values through the nodes of `producer` ({output: node}).

    `known` holds initializers and the values of Shape/Size nodes (it is extended with every
    intermediate value). `opset` is the default domain's version (Slice, Squeeze, Unsqueeze
    and Reshape changed their signatures across opsets).

    Raises:
        NotExact: an op, dtype or operand this module does not evaluate exactly as onnxruntime does.
    """
    stack = list(targets)
    with np.errstate(all="ignore"):   # integer wrap-around is two's complement in both
        while stack:
            name = stack[-1]
            if name in known:
                stack.pop()
                continue
            node = producer.get(name)
            if node is None:
                raise NotExact(f"{name!r} has no value")
            names = tuple(node.input)
            pending = [tensor for tensor in names if tensor and tensor not in known]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            _apply(node, [known[tensor] if tensor else None for tensor in names], known, opset)
            if name not in known:
                raise NotExact(f"op {node.op_type}: no output {name!r}")
    return {name: known[name] for name in targets}


def _apply(node: onnx.NodeProto, inputs: Arrays, known: dict[str, np.ndarray], opset: int) -> None:
    """Evaluate `node` on `inputs`; its outputs go into `known`."""
    op_type = node.op_type
    function = OPS.get(op_type) if node.domain in ("", "ai.onnx") else None
    if function is None:
        raise NotExact(f"op {op_type}")
    if any(array is not None and array.dtype not in EXACT_DTYPES for array in inputs):
        raise NotExact(f"op {op_type}: dtype")
    attributes = node.attribute
    attrs = {attribute.name: helper.get_attribute_value(attribute) for attribute in attributes} if attributes else {}
    try:
        outputs = function(inputs, attrs, opset)
    except (ValueError, IndexError, TypeError, KeyError) as error:   # shapes that do not broadcast, ...
        raise NotExact(f"op {op_type}: {error}") from None
    for output, value in zip(node.output, outputs):
        if output:
            value = np.asarray(value)
            if value.dtype not in EXACT_DTYPES:
                raise NotExact(f"op {op_type}: result dtype {value.dtype}")
            known[output] = value


def _required(inputs: Arrays, count: int) -> list[np.ndarray]:
    if len(inputs) < count or any(array is None for array in inputs[:count]):
        raise NotExact("missing input")
    return [array for array in inputs[:count] if array is not None]


def _same_dtype(*arrays: np.ndarray) -> None:
    if len({array.dtype for array in arrays}) != 1:
        raise NotExact("mixed dtypes")


def _ints(array: np.ndarray | None) -> list[int]:
    """A 0-d or 1-D integer operand (axes, shapes, indices) as Python ints."""
    if array is None or array.dtype.kind not in "iu" or array.ndim > 1:
        raise NotExact("not an integer vector")
    return [int(value) for value in array.reshape(-1)]


def _axes(axes: list[int], rank: int) -> tuple[int, ...]:
    """ir.normalize_axes, an axis out of range or repeated left to onnxruntime (NotExact)."""
    try:
        return normalize_axes(axes, rank)
    except InputError:
        raise NotExact("axis out of range or repeated") from None


@_op("Identity")
def _identity(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x."""
    return _required(inputs, 1)


@_op("Constant")
def _constant(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = the `value` tensor, or `value_int(s)` / `value_float(s)`."""
    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    if "value_int" in attrs or "value_ints" in attrs:
        return [np.array(attrs.get("value_int", attrs.get("value_ints")), dtype=np.int64)]
    if "value_float" in attrs or "value_floats" in attrs:
        return [np.array(attrs.get("value_float", attrs.get("value_floats")), dtype=np.float32)]
    raise NotExact("Constant of another kind")


@_op("Cast")
def _cast(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x converted to `to`: floats to ints truncate toward zero (refused when out of range)."""
    (x,) = _required(inputs, 1)
    to = helper.tensor_dtype_to_np_dtype(int(attrs["to"])) if attrs.get("to") in _CASTABLE else None
    if to is None or to not in EXACT_DTYPES:
        raise NotExact("Cast to this dtype")
    if x.dtype in _FLOATS and to.kind in "iu":
        if not np.all(np.isfinite(x)):
            raise NotExact("Cast of a non-finite value")
        truncated = np.trunc(x.astype(np.float64))
        info = np.iinfo(to)
        if np.any(truncated < info.min) or np.any(truncated >= float(info.max) + 1):   # 2**63 for int64
            raise NotExact("Cast out of range")
    return [x.astype(to)]


_CASTABLE = frozenset(getattr(onnx.TensorProto, name) for name in (
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FLOAT", "DOUBLE"))


@_op("Concat")
def _concat(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = the inputs joined along `axis`."""
    arrays = _required(inputs, len(inputs))
    _same_dtype(*arrays)
    if not arrays or len({array.ndim for array in arrays}) != 1 or arrays[0].ndim == 0:
        raise NotExact("Concat ranks")
    return [np.concatenate(arrays, axis=_axes([int(attrs["axis"])], arrays[0].ndim)[0])]


@_op("Gather")
def _gather(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x[..., indices, ...] along `axis` (negative indices count from the end)."""
    x, indices = _required(inputs, 2)
    if indices.dtype.kind not in "iu" or x.ndim == 0:
        raise NotExact("Gather operands")
    axis = _axes([int(attrs.get("axis", 0))], x.ndim)[0]
    size = x.shape[axis]
    index = indices.astype(np.int64)
    index = np.where(index < 0, index + size, index)
    if np.any(index < 0) or np.any(index >= size):
        raise NotExact("Gather index out of range")
    return [np.take(x, index, axis=axis)]


@_op("Slice")
def _slice(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x[start:end:step] per axis, with ONNX's clamping (not Python's: a negative step's start clamps to dim-1)."""
    x = _required(inputs, 1)[0]
    if opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(_required(inputs, 3)[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise NotExact("Slice operands")
    for axis, start, end, step in zip(_axes(axes, x.ndim), starts, ends, steps):
        dim = x.shape[axis]
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        x = np.take(x, np.arange(start, end, step, dtype=np.int64), axis=axis)
    return [x]


@_op("Unsqueeze")
def _unsqueeze(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x with size-1 dims inserted at `axes` (of the output's rank)."""
    x = _required(inputs, 1)[0]
    axes = list(attrs["axes"]) if opset < 13 else _ints(_required(inputs, 2)[1])
    return [x.reshape(_unsqueezed(x.shape, axes))]


def _unsqueezed(shape: tuple[int, ...], axes: list[int]) -> list[int]:
    rank = len(shape) + len(axes)
    inserted = set(_axes(axes, rank))
    dims = iter(shape)
    return [1 if axis in inserted else next(dims) for axis in range(rank)]


@_op("Squeeze")
def _squeeze(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x without the size-1 dims at `axes` (all size-1 dims when no axes are given)."""
    x = _required(inputs, 1)[0]
    given = attrs.get("axes") if opset < 13 else (inputs[1] if len(inputs) > 1 else None)
    if given is None:
        return [x.reshape([dim for dim in x.shape if dim != 1])]
    axes = _axes(list(given) if opset < 13 else _ints(given), x.ndim)
    if any(x.shape[axis] != 1 for axis in axes):
        raise NotExact("Squeeze of a dim other than 1")
    return [x.reshape([dim for axis, dim in enumerate(x.shape) if axis not in axes])]


@_op("Reshape")
def _reshape(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x with the target shape (0 copies the input's dim unless `allowzero`; one -1 takes the rest)."""
    if opset < 5:
        raise NotExact("Reshape-1")
    x, target = _required(inputs, 2)
    dims = _ints(target)
    if not attrs.get("allowzero", 0):
        if any(dim == 0 and axis >= x.ndim for axis, dim in enumerate(dims)):
            raise NotExact("Reshape 0 past the input's rank")
        dims = [x.shape[axis] if dim == 0 else dim for axis, dim in enumerate(dims)]
    if dims.count(-1) > 1 or any(dim < -1 for dim in dims):
        raise NotExact("Reshape target")
    try:
        return [x.reshape(dims)]
    except ValueError:
        raise NotExact("Reshape does not fit") from None


@_op("Transpose")
def _transpose(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x with its axes permuted by `perm` (reversed by default)."""
    x = _required(inputs, 1)[0]
    perm = list(attrs.get("perm", range(x.ndim - 1, -1, -1)))
    if sorted(perm) != list(range(x.ndim)):
        raise NotExact("Transpose perm")
    return [np.transpose(x, perm)]


@_op("ConstantOfShape")
def _constant_of_shape(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = a tensor of the input's shape filled with `value` (float32 0 by default)."""
    dims = _ints(_required(inputs, 1)[0])
    fill = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, dtype=np.float32)
    if any(dim < 0 for dim in dims) or fill.size != 1:
        raise NotExact("ConstantOfShape operands")
    return [np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)]


@_op("Expand")
def _expand(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x broadcast with the shape input (bidirectionally, as numpy broadcasts)."""
    x, shape = _required(inputs, 2)
    try:
        return [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(_ints(shape)))).copy()]
    except ValueError:
        raise NotExact("Expand does not broadcast") from None


@_op("Range")
def _range(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = start, start + delta, ... while short of limit: max(ceil((limit - start) / delta), 0) integers."""
    start, limit, delta = _required(inputs, 3)
    _same_dtype(start, limit, delta)
    if start.dtype.kind not in "iu" or start.size != 1 or limit.size != 1 or delta.size != 1:
        raise NotExact("Range of floats")   # onnxruntime accumulates float steps; not reproduced here
    first, last, step = int(start.reshape(-1)[0]), int(limit.reshape(-1)[0]), int(delta.reshape(-1)[0])
    if step == 0:
        raise NotExact("Range with delta 0")
    count = max(-((first - last) // step), 0)
    return [np.array([first + index * step for index in range(count)], dtype=start.dtype)]


def _binary(function: Callable[[np.ndarray, np.ndarray], np.ndarray], kinds: str = "biuf") -> OpFunction:
    def apply(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
        a, b = _required(inputs, 2)
        _same_dtype(a, b)
        if a.dtype.kind not in kinds:
            raise NotExact("dtype")
        return [np.asarray(function(a, b))]
    return apply


_op("Add")(_binary(np.add, "iuf"))
_op("Sub")(_binary(np.subtract, "iuf"))
_op("Mul")(_binary(np.multiply, "iuf"))
_op("Equal")(_binary(np.equal))
_op("Greater")(_binary(np.greater, "iuf"))
_op("GreaterOrEqual")(_binary(np.greater_equal, "iuf"))
_op("Less")(_binary(np.less, "iuf"))
_op("LessOrEqual")(_binary(np.less_equal, "iuf"))
_op("And")(_binary(np.logical_and, "b"))
_op("Or")(_binary(np.logical_or, "b"))
_op("Xor")(_binary(np.logical_xor, "b"))


@_op("Div")
def _div(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = a / b: IEEE for floats; integers truncate toward zero (C++), division by zero is refused."""
    a, b = _required(inputs, 2)
    _same_dtype(a, b)
    if a.dtype in _FLOATS:
        return [np.asarray(np.divide(a, b))]
    if a.dtype.kind not in "iu" or np.any(b == 0):
        raise NotExact("Div operands")
    quotient = np.floor_divide(a, b)
    inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return [np.asarray(np.where(inexact, quotient + 1, quotient).astype(a.dtype))]


@_op("Mod")
def _mod(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = a mod b: the divisor's sign for integers, C fmod with `fmod=1`; b = 0 is refused."""
    a, b = _required(inputs, 2)
    _same_dtype(a, b)
    fmod = int(attrs.get("fmod", 0))
    if a.dtype.kind not in "iuf" or (a.dtype in _FLOATS and not fmod) or np.any(b == 0):
        raise NotExact("Mod operands")
    return [np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))]


@_op("Pow")
def _pow(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = a ** b for a float32 base, only where the result is exactly a float32 (e.g. 64 ** 0.5 = 8)."""
    a, b = _required(inputs, 2)
    if a.dtype != np.float32 or b.dtype.kind not in "iuf":
        raise NotExact("Pow operands")
    exact = np.power(a.astype(np.float64), b.astype(np.float64))
    result = exact.astype(np.float32)
    if not np.all(np.isfinite(exact)) or not np.array_equal(result.astype(np.float64), exact):
        raise NotExact("Pow result not exactly a float32")
    return [result]


def _unary(function: Callable[[np.ndarray], np.ndarray], kinds: str) -> OpFunction:
    def apply(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
        (x,) = _required(inputs, 1)
        if x.dtype.kind not in kinds:
            raise NotExact("dtype")
        return [np.asarray(function(x))]
    return apply


_op("Not")(_unary(np.logical_not, "b"))
_op("Neg")(_unary(np.negative, "if"))
_op("Abs")(_unary(np.abs, "iuf"))
_op("Floor")(_unary(np.floor, "f"))
_op("Ceil")(_unary(np.ceil, "f"))
_op("Sqrt")(_unary(np.sqrt, "f"))   # IEEE: correctly rounded everywhere


@_op("Where")
def _where(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
    """y = x where condition else z (broadcast)."""
    condition, x, z = _required(inputs, 3)
    _same_dtype(x, z)
    if condition.dtype != np.bool_:
        raise NotExact("Where condition")
    return [np.asarray(np.where(condition, x, z))]


def _extreme(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFunction:
    def apply(inputs: Arrays, attrs: Attrs, opset: int) -> list[np.ndarray]:
        arrays = _required(inputs, len(inputs))
        if not arrays:
            raise NotExact("no operands")
        _same_dtype(*arrays)
        if arrays[0].dtype.kind not in "iuf" or any(np.isnan(array).any() for array in arrays
                                                    if array.dtype.kind == "f"):
            raise NotExact("Min/Max operands")   # NaN handling differs between versions
        result = arrays[0]
        for array in arrays[1:]:
            result = function(result, array)
        return [np.asarray(result)]
    return apply


_op("Min")(_extreme(np.minimum))   # y = the element-wise minimum of the inputs (broadcast)
_op("Max")(_extreme(np.maximum))   # y = the element-wise maximum of the inputs (broadcast)

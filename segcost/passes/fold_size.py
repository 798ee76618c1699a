"""How large a folded result would be, computed from input shapes and values before evaluating.

Constant folding runs on untrusted models. A few hundred bytes of ConstantOfShape, Expand,
Tile or Range describe gigabytes of output, and evaluating first and checking after (as
onnx.reference does when asked) allocates them. `result_elements` gives an upper bound on
the number of elements each output of a foldable op can have, from the static shapes of
its inputs and — for the ops whose output size is data (a shape, repeats, a range) — their
values, which are constants by the time folding considers the node. An op without a rule
here is never folded.

A fold must also not make the model larger: its result may exceed the constants it replaces
(the inputs no other node reads, which folding leaves dead) by at most MAX_FOLD_GROWTH_BYTES
(`fold_growth`). Exporters compute index tables from a few scalars at run time (HF BEiT's
relative-position index: Range → Expand → Sub over patch pairs, 330 KB of int64 per layer
at 192²); folded, they doubled the written model. Peers: onnxscript's optimizer keeps an
output over 512·512 elements only when it is not larger than its single-use inputs, and
never folds ConstantOfShape ("to avoid increasing model size"); onnx-simplifier skips
Tile/ConstantOfShape/Expand results over `--tensor-size-threshold` (opt-in, default 1.5 GB);
onnxruntime's ConstantFolding has no size check (it folds in memory at session start).
segcost writes the model, and its limit is in bytes of growth, not of result.

Formulas follow the ONNX operator specs (onnx/docs/Operators.md): broadcasting is numpy's
multidirectional broadcast; Gather's output is data.shape[:axis] + indices.shape +
data.shape[axis+1:]; Range has max(ceil((limit − start) / delta), 0) elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = ["ELEMENT_BYTES_BOUND", "MAX_FOLDED_BYTES", "MAX_FOLDED_BYTES_PER_PASS", "MAX_FOLD_GROWTH_BYTES",
           "fold_growth", "result_bytes_at_least", "result_elements"]

# Bounds of constant folding (documented in the README's `optimize` section): one folded
# tensor may hold at most 64 MiB, and one pass run folds at most 256 MiB in all, each
# element counted at 8 bytes (the widest type folding makes: int64/float64). A larger
# result stays a node (onnxruntime computes it at run time) and the pass says so in a note.
MAX_FOLDED_BYTES = 64 << 20
MAX_FOLDED_BYTES_PER_PASS = 256 << 20
ELEMENT_BYTES_BOUND = 8
# A fold whose result is larger than the constants it replaces by more than this stays a node
# (README `optimize`). 256 bytes is 32 int64: every shape vector, Reshape/Expand target and
# Slice/Pad/Resize parameter (at most 2·rank elements) folds, and it is about what the removed
# node costs in the file (median NodeProto of an exporter shape chain: 80-180 bytes in the
# corpus). Each exporter shape-chain fold of the 26 corpus models grows by at most 40 bytes;
# BEiT's index tables grow by 1-330 KB a fold.
MAX_FOLD_GROWTH_BYTES = 256

Values = Sequence[np.ndarray | None]   # the op's inputs in order; None for an omitted optional one


def _size(shape: Iterable[int]) -> int:
    return math.prod(abs(int(dim)) for dim in shape)   # abs: a negative dim must not hide a large product


def _at(values: Values, index: int) -> np.ndarray:
    value = values[index]
    if value is None:
        raise ValueError(f"input {index} is missing")
    return np.asarray(value)


def _broadcast(values: Values) -> int:
    return _broadcast_shapes([value.shape for value in values if value is not None])


def _broadcast_shapes(shapes: Sequence[Sequence[int]]) -> int:
    rank = max((len(shape) for shape in shapes), default=0)
    dims = []
    for axis in range(rank):
        sizes = {shape[axis - rank + len(shape)] for shape in shapes if axis - rank + len(shape) >= 0}
        sizes.discard(1)
        dims.append(max(sizes, default=1))   # mismatched dims make evaluation fail; the bound still holds
    return _size(dims)


def _largest_input(values: Values) -> int:
    return max((value.size for value in values if value is not None), default=0)


def _constant_of_shape(values: Values) -> int:
    return _size(_at(values, 0).reshape(-1).tolist()) if values and values[0] is not None else 1


def _expand(values: Values) -> int:
    return _broadcast_shapes([_at(values, 0).shape, [abs(int(dim)) for dim in _at(values, 1).reshape(-1).tolist()]])


def _tile(values: Values) -> int:
    return _at(values, 0).size * _size(_at(values, 1).reshape(-1).tolist())


def _range(values: Values) -> int:
    start, limit, delta = (float(_at(values, index).reshape(-1)[0]) for index in range(3))
    if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
        return 0 if delta == 0 else 1 << 62   # Range with delta 0 fails; infinities are refused by size
    return max(math.ceil((limit - start) / delta), 0)


def _gather(values: Values, axis: int) -> int:
    data, indices = _at(values, 0), _at(values, 1)
    axis = axis + data.ndim if axis < 0 else axis
    return _size(data.shape[:axis]) * indices.size * _size(data.shape[axis + 1:])


def _concat(values: Values) -> int:
    return sum(value.size for value in values if value is not None)


_ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Equal", "Where", "Max", "Min", "Greater", "Less")
_NOT_GROWING = ("Floor", "Ceil", "Sqrt", "Neg", "Abs", "Not", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Slice",
                "Transpose", "Flatten", "Split", "ReduceProd", "Identity")
_RULES: dict[str, Callable[[Values], int]] = {
    **{op: _broadcast for op in _ELEMENTWISE},
    **{op: _largest_input for op in _NOT_GROWING},
    "ConstantOfShape": _constant_of_shape, "Expand": _expand, "Tile": _tile, "Range": _range, "Concat": _concat,
}


_EXACT = frozenset({*_ELEMENTWISE, "ConstantOfShape", "Expand", "Tile", "Range", "Concat", "Gather"})
MIN_ELEMENT_BITS = 2   # the narrowest ONNX element type (int2/uint2, packed 4 to a byte)


def result_bytes_at_least(op_type: str, elements: int) -> int:
    """A lower bound on the bytes of one output whose `result_elements` bound is `elements`; 0 when not known.

    The rules of the ops that make new data (broadcasting ops, ConstantOfShape, Expand, Tile,
    Range, Concat, Gather) are exact whenever the op evaluates at all (one element less for
    Range, whose float steps onnx.reference takes in the input's precision); a shape they do
    not fit makes evaluation fail, and the node is not folded either. So a fold that would grow
    the model is refused before its result is allocated (a 16 MiB index table at BEiT 512²).
    """
    return max(elements - 1, 0) * MIN_ELEMENT_BITS // 8 if op_type in _EXACT else 0


def fold_growth(result_nbytes: int, replaced_nbytes: int, allowance: int = MAX_FOLD_GROWTH_BYTES) -> int | None:
    """Bytes by which folding grows the model when that is over `allowance` bytes, else None (fold).

    result_nbytes: bytes of the folded outputs; replaced_nbytes: bytes of the constant inputs
    that no other node reads (they are dropped with the node).
    """
    growth = result_nbytes - replaced_nbytes
    return growth if growth > allowance else None


def result_elements(op_type: str, values: Values, attrs: dict) -> int | None:
    """Upper bound on the elements of any one output of `op_type` on `values`; None: no rule (do not fold).

    Shape/Size results are their input's rank or one element and are not asked about here.
    Raises nothing for malformed inputs: a bound that cannot be computed is None.
    """
    try:
        if op_type == "Gather":
            return _gather(values, int(attrs.get("axis", 0)))
        if op_type == "Constant":   # only a sparse_value Constant is still a node: its dense size
            sparse = attrs.get("sparse_value")
            return _size(sparse.dims) if sparse is not None else None
        rule = _RULES.get(op_type)
        return rule(values) if rule is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None

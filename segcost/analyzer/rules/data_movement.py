"""Ops that only move, reshape, select or describe data: zero by convention.

They are counted as `zero_by_convention` (no MACs, no flops) so coverage can tell them
apart from ops segcost does not know.
"""

from __future__ import annotations

from segcost.analyzer.registry import ZERO_BY_CONVENTION, OpCost, OpView, cost_rule
from segcost.errors import ShapeError
from segcost.ir import is_static_shape
from segcost.shapes.export_size import dynamic_axes_hint, export_size_note
from segcost.shapes.fit import reshape_misfit

DATA_MOVEMENT_OPS = (
    "Identity", "Dropout", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Pad",
    "Expand", "Tile", "Shape", "Size", "Cast", "CastLike", "Constant", "ConstantOfShape", "Range",
    "DepthToSpace", "SpaceToDepth", "NonZero", "OneHot", "Trilu", "EyeLike", "Compress", "ReverseSequence",
    "SplitToSequence", "ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
    "SequenceInsert", "SequenceLength", "Optional", "OptionalGetElement", "OptionalHasElement",
    # MaxUnpool scatters values into zeros, CenterCropPad crops/pads, TensorScatter writes rows of a
    # cache, BitCast reinterprets bytes: no arithmetic on the values
    "MaxUnpool", "CenterCropPad", "TensorScatter", "BitCast", "SequenceErase",
)


_ZERO = OpCost(status=ZERO_BY_CONVENTION)  # immutable, so one instance serves every node


@cost_rule(*DATA_MOVEMENT_OPS)
def data_movement(op: OpView) -> OpCost:
    """MACs = flops = 0 (layout, selection and type changes; bytes moved are still reported)."""
    return _ZERO


@cost_rule("Reshape")
def reshape(op: OpView) -> OpCost:
    """MACs = flops = 0; a constant target shape must fit the input's element count (ShapeError otherwise)."""
    data = op.input_shapes[0] if op.input_shapes else None
    if op.graph is None or len(op.node.inputs) < 2 or not is_static_shape(data):
        return _ZERO
    target = op.operand("shape").ints()
    if target is None:   # computed at run time: nothing baked to check
        return _ZERO
    misfit = reshape_misfit(tuple(data), target, bool(op.attr("allowzero", 0)))
    if misfit:
        note = export_size_note(op.graph)
        advice = (f"; {note}: the target was fixed for that size — give the export shape, or re-export with "
                  f"{dynamic_axes_hint(op.graph)}" if note else "; the target was fixed when the model was "
                  "exported: give the input shape it was exported for")
        raise ShapeError(f"{op.where}: its fixed target shape {list(target)} does not fit its input "
                         f"{list(data)}: {misfit}{advice}")
    return _ZERO



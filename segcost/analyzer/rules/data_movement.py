"""Ops that only move, reshape, select or describe data: zero by convention.

They are counted as `zero_by_convention` (no MACs, no flops) so coverage can tell them
apart from ops segcost does not know.
"""

from __future__ import annotations

from segcost.analyzer.registry import ZERO_BY_CONVENTION, OpCost, OpView, cost_rule

DATA_MOVEMENT_OPS = (
    "Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Pad",
    "Expand", "Tile", "Shape", "Size", "Cast", "CastLike", "Constant", "ConstantOfShape", "Range",
    "DepthToSpace", "SpaceToDepth", "NonZero", "OneHot", "Trilu", "EyeLike", "Compress", "ReverseSequence",
    "SplitToSequence", "ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
    "SequenceInsert", "SequenceLength", "Optional", "OptionalGetElement", "OptionalHasElement",
)


_ZERO = OpCost(status=ZERO_BY_CONVENTION)  # immutable, so one instance serves every node


@cost_rule(*DATA_MOVEMENT_OPS)
def data_movement(op: OpView) -> OpCost:
    """MACs = flops = 0 (layout, selection and type changes; bytes moved are still reported)."""
    return _ZERO

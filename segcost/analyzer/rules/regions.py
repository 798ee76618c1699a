"""Region-of-interest pooling: RoiAlign and MaxRoiPool (ONNX RoiAlign-16/22, MaxRoiPool-1/22).

Both pool R regions of the C-channel feature map into R × C × oh × ow bins; no MACs.

RoiAlign (torchvision.ops.roi_align; ONNX's reference implementation) samples S = s_h·s_w
points per bin with `sampling_ratio` s per axis, each a bilinear interpolation of 4
neighbours — a weighted sum, 7 flops per channel, as Resize and GridSample count it — and
reduces them: "avg" S − 1 adds and 1 divide (S), "max" S − 1 compares. Placing the points
costs 2 flops per axis and point (start + index · bin size), shared by the C channels. With
`sampling_ratio` 0 the count per bin is ceil(roi size / bins), known only from the ROI
values: the rule then counts S = 1 (a lower bound) and reports the layer as not exactly
counted (status shape_unknown), so budgets do not pass on it. By --count category the sampling
(interpolation and placing) is resize, as GridSample's, and the bins' reduction pooling.

MaxRoiPool's bins cover the pixels of each ROI (Fast R-CNN); their sizes depend on the ROI
values, so only the lower bound of one compare per pooled element is counted, with status
shape_unknown.
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import COUNTED, SHAPE_UNKNOWN, OpCost, OpView, cost_rule
from segcost.errors import ShapeError

INTERPOLATE_2D = 7   # bilinear: a weighted sum of 4 neighbours, 4 multiplies + 3 adds
PLACE_PER_POINT = 4  # start + index·bin size, per axis (2 axes)


def _rois(op: OpView, bins: tuple[int, int], width: int) -> tuple[int, int, tuple[int, ...]]:
    """(R, C, output shape [R, C, oh, ow]) of a 4-D feature map and an [R, width] ROI tensor."""
    x_shape, rois_shape = op.input_shape(0), op.input_shape(1)
    if len(x_shape) != 4 or len(rois_shape) != 2 or rois_shape[1] != width or min(bins) <= 0:
        raise ShapeError(f"{op.where}: input {list(x_shape)} and rois {list(rois_shape)} with {list(bins)} bins "
                         f"are not an NCHW map and [R, {width}] regions")
    return rois_shape[0], x_shape[1], (rois_shape[0], x_shape[1], *bins)


@cost_rule("RoiAlign", pure=True)
def roi_align(op: OpView) -> OpCost:
    """flops = R·C·oh·ow·(7·S + S if avg, 8·S − 1 if max) + 4·R·oh·ow·S, S = sampling_ratio² (0: S = 1, bound)."""
    bins = (int(op.attr("output_height", 1)), int(op.attr("output_width", 1)))
    regions, channels, output_shape = _rois(op, bins, 4)   # (x1, y1, x2, y2)
    ratio = int(op.attr("sampling_ratio", 0))
    samples = ratio * ratio if ratio > 0 else 1
    mode = op.attr("mode", "avg")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    reduce = samples if mode == "avg" else samples - 1
    points = regions * prod(bins) * samples
    pooled = prod(output_shape) * reduce   # the bins' average or max: category pooling; the sampling resize
    flops = prod(output_shape) * INTERPOLATE_2D * samples + pooled + PLACE_PER_POINT * points
    return OpCost(flops=flops, status=SHAPE_UNKNOWN if ratio <= 0 else COUNTED, output_shape=output_shape,
                  category_flops=(("pooling", pooled),) if pooled else ())


@cost_rule("MaxRoiPool", pure=True)
def max_roi_pool(op: OpView) -> OpCost:
    """flops ≥ R·C·ph·pw (one compare per pooled element; bin sizes depend on the ROI values: shape_unknown)."""
    pooled = tuple(int(dim) for dim in op.attr("pooled_shape") or ())
    if len(pooled) != 2:
        raise ShapeError(f"{op.where}: pooled_shape {list(pooled)} must give 2 sizes")
    _, _, output_shape = _rois(op, (pooled[0], pooled[1]), 5)   # (batch index, x1, y1, x2, y2)
    return OpCost(flops=prod(output_shape), status=SHAPE_UNKNOWN, output_shape=output_shape)

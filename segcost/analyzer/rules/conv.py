"""Convolution rules: Conv, ConvTranspose and their quantized / fused forms.

MACs = N · C_out · prod(spatial_out) · (C_in / group) · prod(kernel) for Conv and
N · C_in · prod(spatial_in) · (C_out / group) · prod(kernel) for ConvTranspose, where
C_in/group (resp. C_out/group) is read from the weight's dim 1, so grouped and depthwise
convolutions need no special case. Spatial sizes come from shape inference; when it gave
none they are derived here from pads/auto_pad/strides/dilations, so an exact count never
depends on inference succeeding for the whole graph.

DeformConv (ONNX DeformConv-19/22; torchvision.ops.deform_conv2d) is a Conv whose kernel taps
read the input at offset positions, bilinearly interpolated: its MACs are Conv's, and its
flops add, with S = N·C_in·prod(out)·prod(kernel) sampled values and P = N·offset_group·
prod(out)·prod(kernel) sampling points: 2·4^r − 1 per sampled value for the r-linear
interpolation (a weighted sum of 2^r neighbours per axis pair, as Resize and GridSample:
7 in 2-D), one multiply per sampled value by the mask when given, and one add per axis and
sampling point to place it (base position + offset). The offsets are shared by the
C_in/offset_group channels of a group, so placing counts per point, interpolating per value.
By convention category (analyzer.conventions): the interpolation is "resize" (Resize's linear
arithmetic), the offset adds and mask multiplies "elementwise", the bias adds "bias".
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import OpCost, OpView, cost_rule
from segcost.analyzer.rules.elementwise import ACTIVATION_FLOPS, activation_flops
from segcost.errors import ShapeError


def _spatial_attrs(op: OpView, rank: int) -> tuple[list[int], list[int], list[int]]:
    strides = list(op.attr("strides") or [1] * rank)
    dilations = list(op.attr("dilations") or [1] * rank)
    pads = list(op.attr("pads") or [0] * (2 * rank))
    if len(strides) != rank or len(dilations) != rank or len(pads) != 2 * rank:
        raise ShapeError(f"node {op.key!r} ({op.op_type}): strides/dilations/pads do not match "
                         f"the {rank}-D kernel")
    return strides, dilations, pads


def conv_output_spatial(op: OpView, spatial_in: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[int, ...]:
    """Output spatial size of Conv per the ONNX spec (explicit pads or auto_pad)."""
    strides, dilations, pads = _spatial_attrs(op, len(kernel))
    auto_pad = _auto_pad(op)
    out = []
    for axis, (size, k, s, d) in enumerate(zip(spatial_in, kernel, strides, dilations)):
        effective = d * (k - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-size // s))
        elif auto_pad == "VALID":
            out.append((size - effective) // s + 1)
        else:
            out.append((size + pads[axis] + pads[axis + len(kernel)] - effective) // s + 1)
    if any(dim <= 0 for dim in out):
        raise ShapeError(f"node {op.key!r} ({op.op_type}): input spatial size {list(spatial_in)} is too small "
                         f"for kernel {list(kernel)} (output {out})")
    return tuple(out)


def conv_transpose_output_spatial(op: OpView, spatial_in: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[int, ...]:
    """Output spatial size of ConvTranspose: output_shape if given, else s·(in−1)+op+d·(k−1)+1−pads."""
    output_shape = op.attr("output_shape")
    if output_shape:
        return tuple(int(dim) for dim in output_shape[-len(kernel):])
    strides, dilations, pads = _spatial_attrs(op, len(kernel))
    output_padding = list(op.attr("output_padding") or [0] * len(kernel))
    auto_pad = _auto_pad(op)
    out = []
    for axis, (size, k, s, d) in enumerate(zip(spatial_in, kernel, strides, dilations)):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(size * s)
            continue
        total_pad = 0 if auto_pad == "VALID" else pads[axis] + pads[axis + len(kernel)]
        out.append(s * (size - 1) + output_padding[axis] + d * (k - 1) + 1 - total_pad)
    return tuple(out)


def _auto_pad(op: OpView) -> str:
    auto_pad = op.attr("auto_pad", "NOTSET")
    return auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad


def conv_kind(group: int, in_channels: int, weight_shape: tuple[int, ...]) -> str:
    """depthwise (one input channel per group, group == C_in), grouped, pointwise (1×…×1) or dense."""
    kernel = weight_shape[2:]
    if group > 1:
        return "depthwise" if weight_shape[1] == 1 and group == in_channels else "grouped"
    return "pointwise" if all(k == 1 for k in kernel) else "dense"


def _conv_cost(op: OpView, x_index: int, w_index: int, bias_index: int | None) -> OpCost:
    x_shape = op.input_shape(x_index)
    w_shape = op.input_shape(w_index)
    group = int(op.attr("group", 1))
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise ShapeError(f"node {op.key!r} ({op.op_type}): input rank {len(x_shape)} and weight rank "
                         f"{len(w_shape)} do not form an N-D convolution")
    if group <= 0 or x_shape[1] != w_shape[1] * group:
        raise ShapeError(f"node {op.key!r} ({op.op_type}): input has {x_shape[1]} channels but weight "
                         f"{list(w_shape)} with group={group} expects {w_shape[1] * group}")
    kernel = w_shape[2:]
    spatial_out = conv_output_spatial(op, x_shape[2:], kernel)
    output_shape = (x_shape[0], w_shape[0], *spatial_out)
    macs = prod(output_shape) * w_shape[1] * prod(kernel)
    bias_adds = prod(output_shape) if bias_index is not None and op.has_input(bias_index) else 0
    strides = op.attr("strides") or (1,) * len(kernel)  # validated by conv_output_spatial
    return OpCost(macs=macs, flops=bias_adds, kind=conv_kind(group, x_shape[1], w_shape), group=group,
                  kernel=tuple(kernel), stride=tuple(strides), output_shape=output_shape, bias_flops=bias_adds)


@cost_rule("Conv", pure=True)
def conv(op: OpView) -> OpCost:
    """MACs = N·C_out·prod(out_spatial)·(C_in/group)·prod(kernel); flops += one add per output if biased."""
    return _conv_cost(op, x_index=0, w_index=1, bias_index=2)


def fused_activation(op: OpView, cost: OpCost, outputs: int) -> OpCost:
    """`cost` plus the per-element flops of op's `activation` attribute (onnxruntime's fused forms) on `outputs`.

    Raises:
        ShapeError: an activation name not in elementwise.ACTIVATION_FLOPS (onnxruntime refuses it too).
    """
    name = op.attr("activation", "")
    per_element = activation_flops(name)
    if per_element is None:
        raise ShapeError(f"{op.where}: fused activation {name!r} is not one segcost counts "
                         f"({', '.join(key for key in ACTIVATION_FLOPS if key)})")
    activation = per_element * outputs
    return cost._replace(flops=cost.flops + activation,
                         category_flops=(*cost.category_flops, ("activation", activation)))


@cost_rule("FusedConv", domains=("com.microsoft",), pure=True)
def fused_conv(op: OpView) -> OpCost:
    """As Conv; flops + the fused activation's per output (Relu 1, Sigmoid 4, ...) + 1 per output for the Z sum."""
    cost = _conv_cost(op, x_index=0, w_index=1, bias_index=2)
    outputs = prod(cost.output_shape or ())
    summed = outputs if op.has_input(3) else 0   # Y = activation(conv + B + Z) (onnxruntime FusedConv)
    cost = cost._replace(flops=cost.flops + summed, category_flops=(("elementwise", summed),))
    return fused_activation(op, cost, outputs)


@cost_rule("ConvInteger", pure=True)
def conv_integer(op: OpView) -> OpCost:
    """MACs as Conv (inputs x, w, x_zero_point, w_zero_point); no bias."""
    return _conv_cost(op, x_index=0, w_index=1, bias_index=None)


@cost_rule("QLinearConv", pure=True)
def qlinear_conv(op: OpView) -> OpCost:
    """MACs as Conv (inputs x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias); bias adds as Conv."""
    return _conv_cost(op, x_index=0, w_index=3, bias_index=8)


@cost_rule("ConvTranspose", pure=True)
def conv_transpose(op: OpView) -> OpCost:
    """MACs = N·C_in·prod(in_spatial)·(C_out/group)·prod(kernel); flops += one add per output if biased."""
    x_shape = op.input_shape(0)
    w_shape = op.input_shape(1)
    group = int(op.attr("group", 1))
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise ShapeError(f"node {op.key!r} (ConvTranspose): input rank {len(x_shape)} and weight rank "
                         f"{len(w_shape)} do not form an N-D convolution")
    if group <= 0 or x_shape[1] != w_shape[0]:
        raise ShapeError(f"node {op.key!r} (ConvTranspose): input has {x_shape[1]} channels, "
                         f"weight {list(w_shape)} expects {w_shape[0]}")
    kernel = w_shape[2:]
    spatial_out = conv_transpose_output_spatial(op, x_shape[2:], kernel)
    output_shape = (x_shape[0], w_shape[1] * group, *spatial_out)
    macs = prod(x_shape) * w_shape[1] * prod(kernel)
    bias_adds = prod(output_shape) if op.has_input(2) else 0
    strides, _, _ = _spatial_attrs(op, len(kernel))
    depthwise = group > 1 and group == x_shape[1] and w_shape[1] == 1
    kind = "depthwise" if depthwise else ("grouped" if group > 1 else "dense")
    return OpCost(macs=macs, flops=bias_adds, kind=kind, group=group, kernel=tuple(kernel),
                  stride=tuple(strides), output_shape=output_shape, bias_flops=bias_adds)


@cost_rule("DeformConv", pure=True)
def deform_conv(op: OpView) -> OpCost:
    """MACs as Conv; flops += (2^(r+1)−1)·S + S·mask + r·P + bias; S = N·C_in·Π(out)·Π(k), P = S·offset_group/C_in."""
    x_shape, w_shape, offset_shape = op.input_shape(0), op.input_shape(1), op.input_shape(2)
    group, offset_group = int(op.attr("group", 1)), int(op.attr("offset_group", 1))
    rank = len(x_shape) - 2
    kernel = tuple(w_shape[2:])
    if rank < 1 or len(w_shape) != len(x_shape) or group <= 0 or x_shape[1] != w_shape[1] * group:
        raise ShapeError(f"{op.where}: input {list(x_shape)} and weight {list(w_shape)} with group={group} do not "
                         "form a deformable convolution")
    if offset_group <= 0 or x_shape[1] % offset_group:
        raise ShapeError(f"{op.where}: offset_group {offset_group} does not divide the {x_shape[1]} input channels")
    spatial_out = conv_output_spatial(op, x_shape[2:], kernel)
    taps = prod(kernel)
    if list(offset_shape) != [x_shape[0], offset_group * taps * rank, *spatial_out]:
        raise ShapeError(f"{op.where}: offset {list(offset_shape)} is not [N, offset_group·prod(kernel)·{rank}, "
                         f"*out] = {[x_shape[0], offset_group * taps * rank, *spatial_out]}")
    output_shape = (x_shape[0], w_shape[0], *spatial_out)
    values = x_shape[0] * x_shape[1] * prod(spatial_out) * taps
    points = x_shape[0] * offset_group * prod(spatial_out) * taps
    interpolation = (2 * 2**rank - 1) * values                  # as Resize's (bi)linear: "resize"
    placing = rank * points + (values if op.has_input(4) else 0)   # offset adds, mask multiplies: "elementwise"
    bias_adds = prod(output_shape) if op.has_input(3) else 0
    strides, _, _ = _spatial_attrs(op, rank)
    return OpCost(macs=prod(output_shape) * w_shape[1] * taps, flops=interpolation + placing + bias_adds,
                  kind=conv_kind(group, x_shape[1], w_shape), group=group, kernel=kernel, stride=tuple(strides),
                  output_shape=output_shape, bias_flops=bias_adds,
                  category_flops=(("resize", interpolation), ("elementwise", placing)))


@cost_rule("CausalConvWithState", pure=True)
def causal_conv_with_state(op: OpView) -> OpCost:
    """MACs = B·C·L·k (depthwise causal 1-D, weight (C, 1, k)); flops += B·C·L if bias, 5·B·C·L if silu/swish."""
    x_shape, w_shape = op.input_shape(0), op.input_shape(1)
    if len(x_shape) != 3 or len(w_shape) != 3 or w_shape[0] != x_shape[1] or w_shape[1] != 1:
        raise ShapeError(f"{op.where}: input {list(x_shape)} and weight {list(w_shape)} are not (B, C, L) and "
                         "(C, 1, k)")
    elements = prod(x_shape)
    activation = op.attr("activation", "none")
    activation = activation.decode() if isinstance(activation, bytes) else activation
    bias_adds = elements if op.has_input(2) else 0
    silu = 5 * elements if activation in ("silu", "swish") else 0   # x·sigmoid(x), as Swish: "activation"
    return OpCost(macs=elements * w_shape[2], flops=bias_adds + silu, kind="depthwise", group=x_shape[1],
                  kernel=(w_shape[2],), stride=(1,), output_shape=tuple(x_shape), bias_flops=bias_adds,
                  category_flops=(("activation", silu),))

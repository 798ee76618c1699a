"""What the runtime does to a graph before running it: ops it folds into convs, and its blocked layout.

Both are properties of the runtime named by a profile (onnxruntime for `cpu`, TIDL for the
accelerators), so the cost model asks here instead of assuming the graph runs as written.

Blocked layout (profile.blocked_layout; onnxruntime's NCHWc transformer on x86): activations
live in blocks of `align_width` channels. A conv joins the blocked path when the kernels
can read its input in blocks — a group-1 conv with input channels a multiple of
`path_channel_multiple` or fewer than one block (the image stem), a depthwise conv with
channels a multiple of it — and its output channels are padded to whole blocks (measured on
this CPU: 84- and 108-channel depthwise convs run at the speed of aligned ones, 18-, 38-, 54-
and 62-channel ones 3-4x slower per MAC, so the multiple is 4, not the 8-channel block). Resize, pooling and elementwise
ops stay blocked when their producers are (they then process the padded channels); a Concat
also needs every input but the last to fill whole blocks. Everything else runs the plain
NCHW kernels, which the profile's unaligned_* factors price. Where a blocked tensor meets a
plain consumer or a model output the runtime inserts a ReorderOutput, where a plain tensor
(or the model input) meets a blocked conv that reads whole blocks a ReorderInput: real
kernels (2-8 ms for a 19-class full-resolution output here), listed by `layout_reorders`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segcost.targets.cost_model import PreparedModel, _Features
    from segcost.targets.profile import TargetProfile


def whole_tiles(item: _Features, width: int) -> bool:
    """Channels in whole tiles: output channels always, input channels unless the conv reads fewer than one tile
    (an image stem, which runtimes feed through a dedicated path); 1x1 convs always count as whole."""
    layer = item.layer
    if layer.kind == "pointwise":
        return True   # a 1x1 conv is a matrix multiply on every path
    if layer.kind == "depthwise":
        return (layer.group or 1) % width == 0
    if item.out_dim % width:
        return False
    return item.reduce_dim % width == 0 or ((layer.group or 1) == 1 and item.reduce_dim < width)


def blocked_conv(item: _Features, block: int, multiple: int) -> bool:
    """Whether a blocked-layout runtime runs this conv on its blocked kernels (see the module docstring)."""
    layer = item.layer
    group = layer.group or 1
    if layer.op_type == "ConvTranspose":
        return False   # onnxruntime has no blocked ConvTranspose (its cost is efficiency.transposed alone)
    if layer.kind == "depthwise":
        return group % multiple == 0
    if group == 1:
        return item.reduce_dim < block or item.reduce_dim % multiple == 0
    return item.reduce_dim % multiple == 0 and item.out_dim % multiple == 0


def valid_tap_fraction(attrs: dict, input_shape, output_shape, kernel: list[int] | None) -> float:
    """Fraction of a Conv's kernel taps that read the input for at least one output position.

    Runtimes that drop the others (profile.skips_padding_taps: onnxruntime's NCHWc convs) do
    only this fraction of the counted MACs. It is below 1 only for dilated convs on maps not
    much larger than the dilation: a 3x3 conv with dilation 12 on a 12x12 map reaches the
    input with its centre tap alone (measured 4x faster than with dilation 6, whose taps all
    reach it somewhere). 1.0 when the geometry is not static or uses auto_pad.
    """
    if not kernel or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") or input_shape is None \
            or output_shape is None or len(input_shape) != len(kernel) + 2 or len(output_shape) != len(kernel) + 2:
        return 1.0
    rank = len(kernel)
    strides = list(attrs.get("strides") or [1] * rank)
    dilations = list(attrs.get("dilations") or [1] * rank)
    pads = list(attrs.get("pads") or [0] * (2 * rank))
    fraction = 1.0
    for axis in range(rank):
        size, out = input_shape[axis + 2], output_shape[axis + 2]
        if not (isinstance(size, int) and isinstance(out, int)) or out <= 0:
            return 1.0
        reaching = sum(1 for tap in range(kernel[axis]) if any(
            0 <= position * strides[axis] - pads[axis] + tap * dilations[axis] < size for position in range(out)))
        fraction *= reaching / kernel[axis]
    return fraction


# Ops onnxruntime's NCHWc transformer runs on blocked tensors (beside convolutions).
BLOCKED_OPS = frozenset({"Resize", "Upsample", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool",
                         "Add", "Sum", "Mul", "Concat", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid",
                         "HardSigmoid", "HardSwish", "Tanh"})


def float_conv(item: _Features, prepared: PreparedModel) -> bool:
    """A rank-4 float Conv: its weight is not dequantized (a Conv on a DequantizeLinear'd weight is an int8 QDQ
    conv; a float-weight Conv reading a DequantizeLinear'd input is a float layer between int8 ones, which
    segcost.quant.float_layers keeps float in onnxruntime)."""
    layer = item.layer
    if layer.op_type != "Conv" or layer.domain or len(layer.output_shape or ()) != 4:
        return False
    return len(layer.inputs) < 2 or prepared.producer_op_types.get(layer.inputs[1]) != "DequantizeLinear"


def blocked_layers(prepared: PreparedModel, profile: TargetProfile) -> set[str]:
    """Names of the layers a blocked-layout runtime runs on blocked tensors (empty without one).

    Only float Conv joins from a MAC layer: MatMul/Gemm run on plain tensors, and a conv on a
    dequantized weight is an int8 QDQ conv, which onnxruntime fuses into an NHWC
    QLinearConv instead."""
    if not profile.blocked_layout:
        return set()
    width = profile.align_width
    multiple = profile.path_channel_multiple or width
    blocked: set[str] = set()
    for item in prepared.features:   # topological order: producers first
        layer = item.layer
        producers = [prepared.producers.get(tensor) for tensor in item.input_tensors]
        if layer.macs:
            if float_conv(item, prepared) and blocked_conv(item, width, multiple):
                blocked.add(layer.name)
            continue
        joins = layer.op_type in BLOCKED_OPS and not layer.domain and bool(producers) and all(
            producer in blocked for producer in producers)
        if joins and layer.op_type == "Concat":
            joins = all(len(shape) == 4 and isinstance(shape[1], int) and shape[1] % width == 0
                        for shape in layer.input_shapes[:-1] if shape is not None)
        if joins:
            blocked.add(layer.name)
    return blocked


def aligned_layers(prepared: PreparedModel, profile: TargetProfile, blocked: set[str]) -> dict[str, bool]:
    """Layer name → whether it runs on the runtime's fast, aligned path: with a blocked layout, a float
    conv or a vector op on blocked tensors (`blocked`); other MAC layers by whole tiles."""
    width = profile.align_width
    aligned: dict[str, bool] = {}
    for item in prepared.features:
        layer = item.layer
        if profile.blocked_layout and (not layer.macs or float_conv(item, prepared)):
            aligned[layer.name] = layer.name in blocked
        elif layer.macs:
            aligned[layer.name] = layer.op_type == "ConvTranspose" or whole_tiles(item, width)
    return aligned


def layout_reorders(prepared: PreparedModel, profile: TargetProfile, blocked: set[str]
                    ) -> list[tuple[str, str | None, str, str]]:
    """(tensor, producer or None for a model input, consumer or "output", "blocked->plain" | "plain->blocked")
    for every tensor the runtime converts between layouts; empty without a blocked layout."""
    if not profile.blocked_layout:
        return []
    reorders: list[tuple[str, str | None, str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(tensor: str, producer: str | None, consumer: str, direction: str) -> None:
        if (tensor, direction) not in seen:
            seen.add((tensor, direction))
            reorders.append((tensor, producer, consumer, direction))

    for item in prepared.features:
        layer = item.layer
        consumer_blocked = layer.name in blocked
        for tensor in item.input_tensors:
            producer = prepared.producers.get(tensor)
            producer_blocked = producer in blocked
            if producer_blocked and not consumer_blocked:
                add(tensor, producer, layer.name, "blocked->plain")
            elif consumer_blocked and not producer_blocked and layer.macs and item.reduce_dim >= profile.align_width:
                add(tensor, producer, layer.name, "plain->blocked")   # a stem reads the plain input directly
    for tensor in sorted(prepared.model_outputs):
        producer = prepared.producers.get(tensor)
        if producer in blocked:
            add(tensor, producer, "output", "blocked->plain")
    return reorders


def runtime_folded(prepared: PreparedModel, profile: TargetProfile, placements: dict[str, str],
                   blocked: set[str]) -> dict[str, str]:
    """Layer → the conv the runtime folds it into (profile.fused_into_conv_ops), following chains (Conv→Add→Relu).

    A sum (Add) folds only into a conv without an activation yet: the fused kernel computes
    act(conv + sum), so a sum after the activation has to run on its own; with a blocked
    layout every addend must be blocked too.
    """
    if not profile.fused_into_conv_ops:
        return {}
    conv_of: dict[str, str] = {}   # a conv, or a layer already folded into one → that conv
    activated: set[str] = set()    # convs that already apply an activation
    for item in prepared.features:
        layer = item.layer
        if layer.op_type in ("Conv", "ConvTranspose") and not layer.domain:
            conv_of[layer.name] = layer.name
            continue
        if item.fused_into in conv_of:
            conv_of[layer.name] = conv_of[item.fused_into]
            activated.add(conv_of[layer.name])
            continue
        if layer.op_type not in profile.fused_into_conv_ops or layer.domain:
            continue
        is_sum = layer.op_type in ("Add", "Sum")
        if is_sum and profile.blocked_layout and not all(
                prepared.producers.get(tensor) in blocked for tensor in item.input_tensors):
            continue   # a blocked conv can only add a blocked tensor (ERFNet's sums after a ConvTranspose)
        for tensor in item.input_tensors:
            producer = prepared.producers.get(tensor)
            conv = conv_of.get(producer) if producer is not None else None
            if (conv is not None and producer is not None and prepared.consumer_counts.get(tensor) == 1
                    and tensor not in prepared.model_outputs and placements[producer] == placements[layer.name]
                    and not (is_sum and conv in activated)):
                conv_of[layer.name] = conv
                if not is_sum:
                    activated.add(conv)
                break
    return {name: conv for name, conv in conv_of.items() if name != conv}

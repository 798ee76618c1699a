"""onnxruntime's int8 CPU kernels against its float ones: the measured rates and the per-layer latency
`segcost.quant.mixed_cost` builds the cpu target's precision choice on.

Every rate comes from benchmarks/int8_layer_rates.py: both graphs of `optimize --int8` run in
onnxruntime's CPUExecutionProvider with its profiler (1 thread); each int8 layer's kernel time
is matched to its float layer's by name; per kind, the rate is the one for which the cost
model's int8 time of that kind, scaled by the same layers' measured/predicted float time,
equals the measured int8 time; then the median over the models (see CPU_INT8_RATES).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segcost.ir import Graph

VNNI_INT8_SPEEDUP = 4.0   # peak int8 MACs per fp32 MAC per cycle on AVX-512 VNNI (64 u8·s8 products vs 16 fp32 FMAs)


@dataclass(frozen=True)
class Int8Rates:
    """How fast onnxruntime's int8 CPU kernels run against its float ones, per layer kind (the cpu target).

    Conv kinds: int8 MACs per fp32 MAC per cycle, applied to the calibrated float profile's
    efficiency of that kind (so 4.0 is the VNNI peak ratio; below 1 the int8 kernel is slower).
    `stem`: a dense k×k conv with a reduction shorter than STEM_REDUCTION (an image stem).
    `plain_resize`: speed of a float Resize off the blocked (NCHWc) path — as every float Resize
    of a QDQ graph runs, since onnxruntime's NCHWc transformer only starts from float Convs —
    relative to the profile's rate for vector work (the blocked Upsample's).
    `nearest_resize`: output elements per cycle of a quantized nearest Resize: onnxruntime drops
    its Q/DQ pair and runs its generic uint8 Resize kernel (it has no flops to rate).
    """

    dense: float
    pointwise: float
    grouped: float
    depthwise: float
    stem: float
    plain_resize: float
    nearest_resize: float
    source: str = field(default="", repr=False)

    def by_kind(self) -> dict[str, float]:
        return {"dense": self.dense, "pointwise": self.pointwise, "grouped": self.grouped,
                "depthwise": self.depthwise}


# benchmarks/int8_layer_rates.py --load (4 rounds of --runs 21 --save, per-node medians of the rounds), onnxruntime
# 1.32 CPU, 1 thread, AMD EPYC with AVX-512 VNNI, 2026-11-30: the median over the per-model rates of the built-in
# DeepLabV3Lite, zoo MobileNetV2+UNetLite and RegNetX400MF+FPNLite and corpus smp_unet_resnet18 (grouped: RegNetX
# alone). Held out, predicted vs measured int8/fp32 kernel time: MobileNetV2+FPNLite 0.64 vs 0.61, smp_manet_resnet18
# 0.42 vs 0.39, tv_lraspp_mobilenetv3 0.99 vs 0.94 (the fitted ones within 7%). Per model the rates spread: depthwise
# 0.24-0.34 (0.15 on LR-ASPP's 8x10 maps), plain_resize 0.25-0.35, pointwise 4.0-4.2; the machine is shared, single
# rounds moved a model's int8/fp32 by up to 15%.
RATES_SOURCE = ("int8 kernel rates per layer kind measured in onnxruntime 1.32 CPU, 1 thread, AVX-512 VNNI "
                "(benchmarks/int8_layer_rates.py: fitted on 4 models, within 7% on 3 held-out ones)")
CPU_INT8_RATES = Int8Rates(dense=3.403, pointwise=4.083, grouped=0.58, depthwise=0.267, stem=0.417, plain_resize=0.268,
                           nearest_resize=0.659, source=RATES_SOURCE)


def cpu_variants(rates: Int8Rates = CPU_INT8_RATES):
    """(float profile, int8 profile) of the cpu target: the calibrated float profile, and the same with
    1-byte tensors and VNNI_INT8_SPEEDUP x the MACs per cycle at each kind's efficiency x rate / 4."""
    from segcost.targets.cost_model import load_profile

    fp32 = load_profile("cpu")
    efficiency = dict(fp32.efficiency)
    for kind, rate in rates.by_kind().items():
        efficiency[kind] *= rate / VNNI_INT8_SPEEDUP
    return fp32, fp32.with_values(dtype="uint8", macs_per_cycle=fp32.macs_per_cycle * VNNI_INT8_SPEEDUP,
                                  efficiency=efficiency)


STEM_REDUCTION = 64   # a dense conv reducing over fewer C_in/group x kh x kw products is an image stem (see stem_keys)


def stem_keys(graph: Graph) -> set[str]:
    """Dense Convs with a reduction (C_in/group·kh·kw) shorter than STEM_REDUCTION, one 512-bit register of
    uint8: the 3×3 stems on 3 channels (27) run 1.8-2.0x slower in onnxruntime's int8 kernel than in its
    float one, the 7×7 stems of ResNet-18 (147) 0.9x (benchmarks/int8_layer_rates.py)."""
    stems = set()
    for key in graph.dag:
        node = graph.node(key)
        weight = graph.shape(node.inputs[1]) if node.op_type == "Conv" and len(node.inputs) > 1 else None
        dims = [dim for dim in weight or () if isinstance(dim, int)]
        if len(dims) == 4 and int(node.attrs.get("group", 1)) == 1 and dims[2] * dims[3] > 1 \
                and dims[1] * dims[2] * dims[3] < STEM_REDUCTION:
            stems.add(key)
    return stems


def nearest_resizes(graph: Graph) -> list[str]:
    """Keys of the nearest-neighbour Resize layers of `graph`."""
    modes = {key: graph.node(key).attrs.get("mode", "nearest") for key in graph.dag
             if graph.node(key).op_type == "Resize"}
    return [key for key, mode in modes.items() if (mode.decode() if isinstance(mode, bytes) else mode) == "nearest"]


def elements(graph: Graph, tensor: str) -> int:
    """Elements of `tensor` (a symbolic dimension counts 1)."""
    elements = 1
    for dim in graph.shape(tensor) or ():
        elements *= dim if isinstance(dim, int) else 1
    return elements


def cpu_layer_ms(static_float: Graph, folded_int8: Graph, fp32_profile, int8_profile, rates: Int8Rates
                  ) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, list[tuple[str, float]]],
                             dict[str, float]]:
    """Per-layer latency on the cpu target, in ms: ({key: in the float graph}, {key: as an int8 unit at `rates`},
    {label: as the QDQ graph `folded_int8` runs it in float}, {key: [(tensor, ms)] of the float graph's layout
    reorders charged to that layer: its output's, or for a model input the reading conv's}, {key of
    `folded_int8`: ms at `fp32_profile` without the per-layer overhead}, the Q/DQ costs mixed_cost._qdq_ms reads).

    `static_float` is the fused float graph with static shapes, `folded_int8` the full-int8 QDQ graph after
    `fold_weights`; the profiles are `cpu_variants(rates)`.
    """
    from segcost.targets.cost_model import estimate_prepared, prepare

    # A layer both graphs run pays the profile's per-layer overhead in both (25 µs, fitted on float convs). Kernels
    # only the QDQ graph runs — float activations onnxruntime cannot fuse into a QLinearConv (HardSwish), Q/DQ
    # (mixed_cost._qdq_ms) — and the float graph's layout reorders are priced without it: onnxruntime dispatches a
    # small elementwise node in 0.2 µs here (benchmarks/int8_layer_rates.py prints it).
    bare = {"layer_overhead_cycles": 0.0}
    resize = {"unaligned_vector_efficiency": fp32_profile.unaligned_vector_efficiency * rates.plain_resize}
    in_float, in_qdq = prepare(static_float, None), prepare(folded_int8, None)

    def run(prepared, profile, keep=lambda layer: True) -> dict[str, float]:
        return {layer.name: layer.ms for layer in estimate_prepared(prepared, profile).layers if keep(layer)}

    def is_resize(layer) -> bool:
        return layer.op_type == "Resize"

    fp32 = run(in_float, fp32_profile)
    fp32.update(run(in_float, fp32_profile.with_values(**resize), is_resize))
    int8 = run(in_float, int8_profile)
    for key in nearest_resizes(static_float):
        cycles = elements(static_float, static_float.node(key).outputs[0]) / rates.nearest_resize
        int8[key] = cycles / (int8_profile.clock_ghz * 1e6)
    stems = stem_keys(static_float)
    if stems:
        efficiency = dict(int8_profile.efficiency)
        efficiency["dense"] = fp32_profile.efficiency["dense"] * rates.stem / VNNI_INT8_SPEEDUP
        int8.update(run(in_float, int8_profile.with_values(efficiency=efficiency), lambda layer: layer.name in stems))
    qdq = run(in_qdq, fp32_profile)
    qdq.update(run(in_qdq, fp32_profile.with_values(**resize), is_resize))
    alone = run(in_qdq, fp32_profile.with_values(**bare))   # for the kernels the float graph does not run
    free = {static_float.node(key).name or key for key in static_float.dag if not fp32.get(key)}
    in_int8 = {}
    for key, ms in qdq.items():
        label = folded_int8.node(key).name or key
        in_int8[label] = alone[key] if label in free else ms
    reorders: dict[str, list[tuple[str, float]]] = {}
    # A reorder is a streaming copy too: no per-layer overhead (measured here: 24-47 µs for 1.2 MB each way, its bytes
    # through L2 alone predict 44 µs; with the overhead, 69).
    # Charged to the producer, or for a model input to the reading conv.
    for transfer in estimate_prepared(in_float, fp32_profile.with_values(**bare)).transfers:
        charged = transfer.producer if transfer.producer in static_float.dag else transfer.consumer
        if charged in static_float.dag:
            reorders.setdefault(charged, []).append((transfer.tensor, transfer.ms))
    return fp32, int8, in_int8, reorders, alone


def crossing_layout_ms(profile, elements: int, float_conv: bool) -> float:
    """ms to convert the layout of a tensor crossing between a float and an int8 layer on the cpu target, beside
    its QuantizeLinear or DequantizeLinear: onnxruntime runs QLinearConv in NHWC, so the uint8 tensor is
    transposed (a copy, 1 byte per element read and written), and a float Conv on the other side runs NCHWc, so
    the float tensor is reordered too (4 bytes). Streaming copies: no per-layer overhead. Measured (the default
    model with its stem and classifier kept float): Transpose + ReorderOutput 0.33 + 0.43 ms on 2.1 M elements,
    Transpose + ReorderInput 0.46 + 1.22 ms on 5.0 M; predicted 0.60 and 1.43."""
    return copy_ms(profile, 2 * elements * (1 + (4 if float_conv else 0)))


def copy_ms(profile, moved: int) -> float:
    """ms to stream `moved` bytes (read + written) through the innermost memory level of `profile` that holds them."""
    level = next(level for level in profile.memory if level.capacity_bytes is None or moved <= level.capacity_bytes)
    return moved / level.bytes_per_cycle / (profile.clock_ghz * 1e6)

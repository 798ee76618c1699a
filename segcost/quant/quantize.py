"""Static int8 quantization of a (fused) IR with onnxruntime.quantization, then QDQ passes.

onnxruntime's quantizer does calibration and QDQ insertion (a well-kept library; we do
not re-implement either). segcost chooses the format per target and post-processes:

* ``target="cpu"`` — uint8 activations, int8 per-channel weights, QDQ: the fastest
  combination measured in onnxruntime on x86 (benchmarks/int8.py); the signed/signed
  variant is slower than fp32 on depthwise-heavy models. The output tail — the resampling
  ops between the last conv and a graph output (the final bilinear upsample) — stays in
  float: onnxruntime has no fused int8 Resize (its uint8 Resize is ~2x slower than the float
  one) and quantizing it only adds a Q/DQ pair at full output resolution (measured with
  benchmarks/int8.py, 1 thread: int8/fp32 0.72 -> 0.65 on the built-in DeepLabV3Lite,
  0.95 -> 0.83 on UNetLite).
* ``target="tda4vm"`` — int8 symmetric activations and weights (every zero point 0), as
  the accelerator requires; ``pow2_scales`` rounds scales to powers of two (first-generation
  devices, usually with per-tensor weights).

float16 models are quantized through a float32 copy (segcost.quant.prepare.to_float32): onnxruntime's
CPU int8 kernels and fusions take float32 scales (with float16 scales its QLinearConcat fusion makes
an invalid graph). The int8 model keeps the float16 interface: Casts at its inputs and outputs.

Concat inputs share the output's scale where their ranges allow (ShareConcatScalesPass in
segcost.passes.qdq_share: a whole-graph union-find; other inputs are requantized on the edge).

Two steps from Nagel et al. 2019 (data-free quantization) run around onnxruntime's
quantizer, both on statistics of the calibration data: cross-layer equalization of
Conv → [Relu] → Conv channel ranges before calibration (per-channel weights only;
segcost.quant.equalize) and bias correction of the int8 Convs after (segcost.quant.bias_correction).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from segcost.errors import InputError, SegcostError
from segcost.ir import Graph, is_static_shape
from segcost.ir.runtime import open_session
from segcost.quant.calibration import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CalibrationSource,
    in_input_dtype,  # noqa: F401 - re-exported (tests/quant/test_integer_input.py)
    input_dtype,
    open_source,
)

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("cpu", "tda4vm")
# Equalization must keep the float outputs: max|y - y_eq| <= EQUALIZE_RTOL * max(max|y|, 1e-6). Rescaling
# channels only changes float32 rounding (~1e-7 relative on every model tried); 1e-3 leaves room for deep graphs.
EQUALIZE_RTOL = 1e-3
# Ops that move or resample values without arithmetic worth quantizing; a run of them in
# front of a graph output is the "output tail" kept in float for target cpu.
TAIL_OPS = frozenset({"Resize", "Upsample", "Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


# Ops that only a quantized graph has: quantizing it again would stack a second QDQ layer.
_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                            "MatMulInteger", "DynamicQuantizeLinear"})


class QuantizationError(SegcostError):
    """onnxruntime's quantizer failed on this model; the message names the layer and a workaround."""


@dataclass
class QuantizeOptions:
    """Options of `quantize_graph`; see the module docstring for the target defaults."""

    calibration: str = "synthetic"
    calib_size: int = 16
    per_channel: bool = True
    pow2_scales: bool = False
    method: str = "minmax"
    target: str = "cpu"
    exclude_nodes: tuple[str, ...] = ()
    seed: int = 0
    float_fallback: bool = True   # keep Concats of mismatched ranges and their readers in float
    equalize: bool = True         # cross-layer equalization (with per-channel weights)
    bias_correction: bool = True  # fold the mean int8 weight-rounding error into Conv biases
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass
class QuantizeResult:
    """The int8 model and IR, and `float_model`: the float model that was quantized, tensor for tensor —
    after cross-layer equalization the same function as the input (up to float rounding) with rescaled
    channels inside, which the per-layer comparison needs."""

    model: onnx.ModelProto
    graph: Graph
    float_model: onnx.ModelProto
    source: CalibrationSource
    notes: list[str] = field(default_factory=list)
    # Failed self-checks of the written graph (a Concat input not at its output's scale, a removed
    # Relu/Clip that no longer clips): each names the layer; `segcost optimize` prints them as
    # warnings ahead of the int8 report and exits 1.
    problems: list[str] = field(default_factory=list)


def single_image_input(graph: Graph, calibration: str | None = None) -> tuple[str, tuple[int, ...]]:
    """(name, shape of one sample) of the model's only input; a symbolic batch dim becomes 1.

    Other symbolic dims are taken from the calibration data when it is a .npy/.npz file
    (read from its header); otherwise they need --input-shape. Raises InputError.
    """
    if len(graph.inputs) != 1:
        raise InputError(f"int8 calibration supports one-input models; this one has {len(graph.inputs)}")
    name = graph.inputs[0]
    shape = graph.shape(name)
    if shape is None:
        raise InputError(f"input {name!r} has no known rank; give --input-shape {name}=1x3xHxW")
    dims = [1 if index == 0 and not isinstance(dim, int) else dim for index, dim in enumerate(shape)]
    if not all(isinstance(dim, int) for dim in dims) and calibration is not None:
        from segcost.quant.calibration import array_file_sample_shape

        data_shape = array_file_sample_shape(calibration, name)
        if data_shape is not None and len(data_shape) == len(dims) - 1:
            dims = [dims[0]] + [dim if isinstance(dim, int) else data_shape[index]
                                for index, dim in enumerate(dims[1:])]
    if not all(isinstance(dim, int) for dim in dims):
        raise InputError(f"input {name!r} has symbolic dims {list(shape)}: calibration needs --input-shape "
                         f"{name}=1x3xHxW (or a .npy/.npz calibration file, whose shape is used)")
    static = tuple(dims)
    assert is_static_shape(static), "checked just above"
    return name, static


def float_output_tail(graph: Graph) -> list[str]:
    """Names of the TAIL_OPS nodes whose results reach only graph outputs, walking back from each output."""
    tail: list[str] = []
    tail_keys: set[str] = set()
    pending = [graph.producer(output) for output in graph.outputs]
    while pending:
        key = pending.pop()
        if key is None or key in tail_keys:
            continue
        node = graph.node(key)
        if node.op_type not in TAIL_OPS:
            continue
        if not all(consumer in tail_keys for tensor in node.outputs for consumer in graph.consumers(tensor)):
            continue
        tail_keys.add(key)
        tail.append(node.name or key)   # the name to_model writes, which the quantizer matches
        pending.extend(graph.producer(tensor) for tensor in node.inputs[:1])
    return tail


def _check_excluded(graph: Graph, names: tuple[str, ...]) -> None:
    known = {graph.node(key).name or key for key in graph.dag}
    unknown = [name for name in names if name not in known]
    if unknown:
        close = sorted(known, key=lambda name: (unknown[0] not in name, len(name)))[:3]
        raise InputError(f"--exclude-nodes: no node named {unknown[0]!r} in the fused graph "
                         f"(names look like: {', '.join(close)}; `segcost analyze` lists them)")


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer logs "please pre-process" warnings on the root logger and raises
    Future/Deprecation warnings; none of it is for segcost's user (segcost runs its own fusions)."""
    root = logging.getLogger()
    silence, sink = logging.Filter("segcost.never"), logging.NullHandler()
    root.addFilter(silence)
    root.addHandler(sink)  # keeps logging.warning() from installing a stderr handler on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        root.removeFilter(silence)
        root.removeHandler(sink)


def _save_external(model: onnx.ModelProto, path: Path) -> None:
    """Save with weights in `<path>.data`; on a copy, since onnx.save_model moves the data out of the proto."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, path, save_as_external_data=True, location=f"{path.name}.data")


def _failure_message(error: Exception, message: str, graph: Graph, options: QuantizeOptions) -> str:
    """The QuantizationError text: what failed, and only workarounds that change what failed.

    An onnxruntime error running the model (calibration runs the float model as it is) is not
    cured by --exclude-nodes or --per-tensor, so none is offered; a quantizer error gets
    --exclude-nodes for the layer it names and --per-tensor when weights were per channel.
    """
    layer = _layer_in(str(error), graph)
    where = f" at layer {layer!r}" if layer else ""
    if "[ONNXRuntimeError]" in message:
        return (f"onnxruntime could not run the model on the calibration data{where}: {message} (neither "
                "--exclude-nodes nor --per-tensor changes this run; check the model runs in onnxruntime)")
    hints = ([f"--exclude-nodes {layer}"] if layer else []) + (["--per-tensor"] if options.per_channel else [])
    hint = f"; workaround: {' or '.join(hints)}" if hints else "; please report this model"
    return f"onnxruntime's quantizer failed{where}: {type(error).__name__}: {message}{hint}"


def _layer_in(message: str, graph: Graph) -> str | None:
    names = sorted((graph.node(key).name for key in graph.dag if graph.node(key).name), key=len, reverse=True)
    return next((name for name in names if name in message), None)


def _equalized(graph: Graph, float_model: onnx.ModelProto, source: CalibrationSource, options: QuantizeOptions,
               directory: Path) -> tuple[Graph | None, dict[str, np.ndarray], list[str], bool]:
    """(float graph to quantize or None, per-channel means of every Conv input in it, notes, equalized).

    One extra float run over the calibration data for the per-channel statistics.
    """
    from segcost.frontends.onnx import load_model
    from segcost.quant.equalize import EqualizeConvPairsPass, EqualizeResult
    from segcost.quant.ranges import channel_statistics

    if not (options.bias_correction or (options.equalize and options.per_channel)):
        return None, {}, [], False
    path = directory / "original.onnx"
    _save_external(float_model, path)
    conv_inputs = [node.inputs[0] for key in graph.dag if (node := graph.node(key)).op_type == "Conv"]
    stats = channel_statistics(path, source, conv_inputs)
    copy = load_model(float_model, label="float")
    if not (options.equalize and options.per_channel):
        return copy, {tensor: item.mean for tensor, item in stats.items()}, [], False
    result = EqualizeConvPairsPass(stats)(copy)
    assert isinstance(result, EqualizeResult), "EqualizeConvPairsPass returns an EqualizeResult"
    if result.modified:
        # Checked like every pass: the float outputs must not change (up to float rounding). A
        # failure is a segcost bug; the user's model is then quantized without equalization.
        difference = _equalization_error(path, result.graph, source, directory)
        if difference > EQUALIZE_RTOL:
            plain = load_model(float_model, label="float")
            return plain, {tensor: item.mean for tensor, item in stats.items()}, [
                f"cross-layer equalization skipped: it changed the float outputs by {difference:.2g} of their "
                f"range (more than {EQUALIZE_RTOL:g}; please report this model)"], False
    for tensor, scale in result.scales.items():
        if tensor in stats:
            stats[tensor] = stats[tensor].scaled(1.0 / scale)
    return result.graph, {tensor: item.mean for tensor, item in stats.items()}, result.notes, result.modified


def _equalization_error(original: Path, equalized: Graph, source: CalibrationSource, directory: Path) -> float:
    """max |y - y_eq| / max(max |y|, 1e-6) over the outputs on the first calibration sample (onnxruntime,
    no graph optimizations), y from the model file at `original`, y_eq from the equalized graph."""
    import onnxruntime as ort

    from segcost.ir.onnx_io import to_model

    path = directory / "equalized.onnx"
    _save_external(to_model(equalized), path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    feeds = next(iter(source)).feeds
    want, got = (open_session(model, options).run(None, feeds)
                 for model in (original, path))
    worst = 0.0
    for a, b in zip(want, got):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        error = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not np.isfinite(error):
            return float("inf")
        worst = max(worst, error / max(scale, 1e-6))
    return worst


def quantize_graph(graph: Graph, options: QuantizeOptions,
                   progress: Callable[[int, int], None] | None = None,
                   float_model: onnx.ModelProto | None = None) -> QuantizeResult:
    """Quantize a float IR (fuse first: BatchNorm must already be folded); returns the QDQ model.

    `float_model` is `to_model(graph)` when the caller already has it (not modified here).

    Raises InputError for bad options or data, QuantizationError (naming the layer and a
    workaround) when onnxruntime's quantizer fails.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.passes import EliminateDeadNodesPass, PassBase, PassManager
    from segcost.passes.qdq import PowerOfTwoScalesPass, non_pow2_scales
    from segcost.passes.qdq_clips import RestoreClipsPass, lost_clips, removed_clips, unlocated_clips
    from segcost.passes.qdq_share import ShareConcatScalesPass, concat_scale_mismatches
    from segcost.quant.bias_correction import CorrectConvBiasPass
    from segcost.quant.fallback import mismatched_concats, nonfinite_tensors
    from segcost.quant.float_layers import pin_float_layers, pin_notes
    from segcost.quant.prepare import is_float16, prepare_for_quantizer, reattach_biases, to_float32, with_float16_io
    from segcost.quant.ranges import collect_ranges

    if options.method not in METHODS:
        raise InputError(f"unknown calibration method {options.method!r} ({', '.join(METHODS)})")
    if options.target not in TARGETS:
        raise InputError(f"unknown quantization target {options.target!r} ({', '.join(TARGETS)})")
    if options.calib_size <= 0:
        raise InputError("--calib-size must be positive")
    quantized = sorted({node.op_type for key in graph.dag if (node := graph.node(key)).op_type in _QUANTIZED_OPS})
    if quantized:
        raise InputError(f"the model is already quantized ({', '.join(quantized)} nodes); --int8 needs a float model")
    _check_excluded(graph, options.exclude_nodes)
    input_name, input_shape = single_image_input(graph, options.calibration)
    float_model = float_model if float_model is not None else to_model(graph)
    original_model, float16 = float_model, is_float16(float_model)
    if float16:   # quantized as float32, then given back its float16 inputs and outputs (module docstring)
        float_model = to_float32(float_model)
        graph = load_model(float_model, label=graph.info.path)
    # in the (float32-converted) input's dtype, read once: e.g. raw uint8 pixels for a uint8 image input
    source = open_source(options.calibration, input_name, input_shape, options.calib_size, options.seed,
                         options.mean, options.std, split="train", dtype=input_dtype(graph, input_name))
    if len(source) == 0:
        raise InputError(f"calibration data {options.calibration!r} gave no samples")
    excluded = list(options.exclude_nodes)
    if options.target == "cpu":
        excluded += [name for name in float_output_tail(graph) if name not in excluded]
    symmetric = options.target == "tda4vm"
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.method]
    with tempfile.TemporaryDirectory(prefix="segcost-int8-") as directory, _quiet_quantizer():
        output = Path(directory) / "int8.onnx"
        # Paths, not ModelProtos: quantize_static rewrites a proto it is given (it moves
        # initializers to external data in place).
        # Weights as external data: the calibrator then re-reads only the graph for each chunk.
        calibrated_path = quantizer_path = Path(directory) / "prepared.onnx"
        try:   # the statistics runs and the quantizer: onnxruntime's errors become a QuantizationError
            reference, means, notes, equalized = _equalized(graph, float_model, source, options, Path(directory))
            quantizable = to_model(reference) if reference is not None and equalized else float_model
            prepared = prepare_for_quantizer(quantizable, options.per_channel)
            _save_external(prepared.model, quantizer_path)
            if prepared.detached_biases:  # calibrate the model as it computes, with its biases
                calibrated_path = Path(directory) / "float.onnx"
                _save_external(quantizable, calibrated_path)
            calibrated = collect_ranges(calibrated_path, source, method, Path(directory), progress)
            ranges = calibrated.path
            # int8 cannot hold ±Inf/NaN at all: always, not an option like the Concat fallback
            keep, fallback_notes = nonfinite_tensors(graph, calibrated.nonfinite)
            if options.float_fallback:
                concats, concat_notes = mismatched_concats(graph, ranges)
                keep, fallback_notes = keep + concats, fallback_notes + concat_notes
            excluded += [name for name in keep if name not in excluded]
            quantize_static(
                quantizer_path, output, None, quant_format=QuantFormat.QDQ,
                per_channel=prepared.per_channel,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=method, nodes_to_exclude=excluded or None, calibration_cache_path=ranges,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
        except (InputError, MemoryError):
            raise
        except Exception as error:  # noqa: BLE001 - onnxruntime's quantizer raises bare numpy/ORT errors
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise QuantizationError(_failure_message(error, message, graph, options)) from None
        quantized = onnx.load(output)  # weights inline: the temp dir goes away
    int8_graph = load_model(quantized, label="int8")
    notes += list(prepared.notes) + fallback_notes
    if prepared.detached_biases:
        restored = reattach_biases(int8_graph, prepared, quantizable)
        notes.append(f"{restored} grouped ConvTranspose biases quantized with C_out scales s_x*tile(s_w, group)")
    # activations whose clipping now lives in a scale/zero point, found in the float graph that was quantized
    quantized_float = reference if reference is not None and equalized else graph
    clips = removed_clips(quantized_float, int8_graph)
    unlocated = unlocated_clips(quantized_float, int8_graph, clips)
    steps: list[PassBase] = [ShareConcatScalesPass(clips)]
    if options.pow2_scales:
        steps.append(PowerOfTwoScalesPass())
    steps.append(RestoreClipsPass(clips))   # where a scale change undid a removed activation's clipping
    if options.bias_correction and reference is not None:
        steps.append(CorrectConvBiasPass(reference, means))
    steps.append(EliminateDeadNodesPass())
    result = PassManager(steps)(int8_graph)
    notes += [note for record in result.records for note in record.notes]
    problems = concat_scale_mismatches(result.graph) + lost_clips(result.graph, clips) + unlocated
    if options.pow2_scales:
        problems += non_pow2_scales(result.graph)
    int8_model, int8_result = to_model(result.graph), result.graph
    pinned, unpinned = pin_float_layers(int8_model)   # else onnxruntime quantizes their weights per tensor
    if pinned and not float16:
        int8_result = load_model(int8_model, label="int8")
    notes += pin_notes(pinned, unpinned)
    if float16:
        int8_model = with_float16_io(int8_model)
        int8_result = load_model(int8_model, label="int8")
        notes.append("float16 model: quantized as float32, with Casts from/to float16 at its inputs and outputs")
    # The float model the int8 one is compared with: the equalized one (same function, the channels the
    # int8 graph has), or for float16 the original (its float16 interface is the int8 model's).
    return QuantizeResult(int8_model, int8_result, original_model if float16 else quantizable, source, notes,
                          problems)

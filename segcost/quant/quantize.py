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

Concat inputs share the output's scale where their ranges allow (ShareConcatScalesPass in
segcost.passes.qdq_share: a whole-graph union-find; other inputs are requantized on the edge).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from segcost.errors import InputError
from segcost.ir import Graph
from segcost.quant.calibration import IMAGENET_MEAN, IMAGENET_STD, CalibrationSource, open_source

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("cpu", "tda4vm")
# Ops that move or resample values without arithmetic worth quantizing; a run of them in
# front of a graph output is the "output tail" kept in float for target cpu.
TAIL_OPS = frozenset({"Resize", "Upsample", "Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


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
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    graph: Graph
    float_model: onnx.ModelProto
    source: CalibrationSource
    notes: list[str] = field(default_factory=list)


class _Reader:
    """onnxruntime CalibrationDataReader over a CalibrationSource, reporting progress."""

    def __init__(self, source: CalibrationSource, progress: Callable[[int, int], None] | None):
        self.iterator = iter(source)
        self.total = len(source)
        self.done = 0
        self.progress = progress

    def get_next(self):
        sample = next(self.iterator, None)
        if sample is None:
            return None
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return sample.feeds

    def rewind(self):  # onnxruntime's reader protocol; our source is single-pass per quantization
        pass


def single_image_input(graph: Graph) -> tuple[str, tuple[int, ...]]:
    if len(graph.inputs) != 1:
        raise InputError(f"int8 calibration supports one-input models; this one has {len(graph.inputs)}")
    name = graph.inputs[0]
    shape = graph.shape(name)
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        raise InputError(f"input {name!r} needs a static shape for calibration (--input-shape)")
    return name, tuple(shape)


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


def quantize_graph(graph: Graph, options: QuantizeOptions,
                   progress: Callable[[int, int], None] | None = None) -> QuantizeResult:
    """Quantize a float IR (fuse first: BatchNorm must already be folded); returns the QDQ model."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.passes import EliminateDeadNodesPass, PassManager
    from segcost.passes.qdq import PowerOfTwoScalesPass
    from segcost.passes.qdq_share import ShareConcatScalesPass, concat_scale_mismatches

    if options.method not in METHODS:
        raise InputError(f"unknown calibration method {options.method!r} ({', '.join(METHODS)})")
    if options.target not in TARGETS:
        raise InputError(f"unknown quantization target {options.target!r} ({', '.join(TARGETS)})")
    if options.calib_size <= 0:
        raise InputError("--calib-size must be positive")
    input_name, input_shape = single_image_input(graph)
    source = open_source(options.calibration, input_name, input_shape, options.calib_size, options.seed,
                         options.mean, options.std, split="train")
    if len(source) == 0:
        raise InputError(f"calibration data {options.calibration!r} gave no samples")
    float_model = to_model(graph)
    excluded = list(options.exclude_nodes)
    if options.target == "cpu":
        excluded += [name for name in float_output_tail(graph) if name not in excluded]
    symmetric = options.target == "tda4vm"
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.method]
    with tempfile.TemporaryDirectory(prefix="segcost-int8-") as directory:
        output = Path(directory) / "int8.onnx"
        # A path, not the ModelProto: quantize_static rewrites a proto it is given (it moves
        # initializers to external data in place).
        float_path = Path(directory) / "float.onnx"
        onnx.save_model(float_model, float_path)
        quantize_static(
            float_path, output, _Reader(source, progress), quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, nodes_to_exclude=excluded or None,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        quantized = onnx.load(output)  # weights inline: the temp dir goes away
    int8_graph = load_model(quantized, label="int8")
    steps = [ShareConcatScalesPass()]
    if options.pow2_scales:
        steps.append(PowerOfTwoScalesPass())
    steps.append(EliminateDeadNodesPass())
    result = PassManager(steps, count_macs=False)(int8_graph)
    notes = [note for record in result.records for note in record.notes]
    notes += [f"check failed: {problem}" for problem in concat_scale_mismatches(result.graph)]
    return QuantizeResult(to_model(result.graph), result.graph, float_model, source, notes)

"""Activation ranges for static quantization, with bounded memory.

onnxruntime's calibrators hold every requested intermediate of every sample until the end
(HistogramCalibrater for entropy/percentile), and its MinMax calibrator runs an augmented
graph (Reshape + ReduceMin + ReduceMax per tensor) that peaked at 3.2 GB for one 576x576
UperNet-ConvNeXt sample whose plain run needs 0.8 GB (measured here with onnxruntime 1.32).
Here the float model itself runs, asking onnxruntime for the tensors to calibrate as extra
outputs in chunks of at most CHUNK_BYTES per run (one run per chunk per sample when the
model's activations exceed it; one run per sample otherwise), and statistics are updated
as each run returns:

* minmax — running min/max per tensor;
* entropy/percentile — onnxruntime's own HistogramCollector (the same bins, merging and
  thresholds as its calibrators), fed per run.

The tensors are the ones onnxruntime's calibrator would pick (float inputs/outputs of
nodes, not initializers, with types from ONNX shape inference), so the result, written
with onnxruntime's `save_tensors_data`, is what `quantize_static(calibration_cache_path=)`
expects. Memory: the model's own peak plus CHUNK_BYTES of requested tensors.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx

from segcost.ir.runtime import open_session
from segcost.quant.calibration import CalibrationSource

T = TypeVar("T")

CHUNK_BYTES = 512 << 20   # calibrated tensors returned by one onnxruntime run
HISTOGRAM = {"entropy": {"num_bins": 128, "num_quantized_bins": 128, "percentile": 99.999},  # onnxruntime's
             "percentile": {"num_bins": 2048, "num_quantized_bins": 128, "percentile": 99.999}}  # defaults


def tensors_to_calibrate(model: onnx.ModelProto) -> dict[str, int]:
    """{tensor: float32 bytes for one sample} as onnxruntime's CalibraterBase.select_tensors_to_calibrate picks them."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {info.name: info for info in itertools.chain(inferred.graph.value_info, inferred.graph.output,
                                                        inferred.graph.input)}
    constants = {init.name for init in model.graph.initializer}
    chosen: dict[str, int] = {}
    for node in model.graph.node:
        for name in itertools.chain(node.input, node.output):
            info = infos.get(name)
            if info is None or name in constants or not info.type.HasField("tensor_type"):
                continue
            if info.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                continue
            chosen[name] = float32_bytes(info)
    return chosen


def float32_bytes(info: onnx.ValueInfoProto) -> int:
    """Bytes of the tensor `info` describes, as float32 (symbolic, unknown or non-positive dims — paddle2onnx's
    dynamic batch `dim_value: -1` — count as 1: one sample)."""
    dims = info.type.tensor_type.shape.dim
    return 4 * int(np.prod([dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
                            for dim in dims]))


def chunks_by_bytes(items: Iterable[T], size: Callable[[T], int], budget: int) -> list[list[T]]:
    """`items` in order, cut into runs whose `size` (bytes) sums to at most `budget` (an item larger than
    the budget runs alone): how many extra outputs one onnxruntime run may hold at once."""
    chunks: list[list[T]] = []
    used = budget
    for item in items:
        item_size = size(item)
        if used + item_size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += item_size
    return chunks


def stream_tensors(model_path: Path, source: CalibrationSource, tensors: Iterable[str] | None = None,
                   budget: int | None = None) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Run the model at `model_path` over `source`, yielding (run, runs, {tensor: value}) per onnxruntime run.

    `tensors` (default: every tensor to calibrate) are asked for as extra outputs, at most
    `budget` bytes of them per run (CHUNK_BYTES by default); graph inputs come from the
    feeds, once per sample. The model's weights stay in their external file.
    """
    import onnxruntime as ort

    model = onnx.load(model_path, load_external_data=False)   # weights stay in their file, read by onnxruntime
    sizes = tensors_to_calibrate(model)
    wanted = list(sizes) if tensors is None else list(dict.fromkeys(t for t in tensors if t in sizes))
    inputs = {tensor.name for tensor in model.graph.input}
    chunks = chunks_by_bytes([tensor for tensor in wanted if tensor not in inputs], sizes.__getitem__,
                             CHUNK_BYTES if budget is None else budget) or [[]]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as onnxruntime's calibrators
    options.enable_cpu_mem_arena = False   # free each tensor when it dies instead of growing an arena
    runs, done = len(source) * len(chunks), 0
    for chunk in chunks:
        extra = with_outputs(model, chunk)
        chunk_path = model_path.parent / f"{model_path.stem}.chunk.onnx"   # beside the external data it names
        onnx.save_model(extra, chunk_path)
        del extra
        session = open_session(chunk_path, options)
        for sample in source:
            values = dict(zip(chunk, session.run(chunk, sample.feeds))) if chunk else {}
            if chunk is chunks[0]:
                values.update({tensor: value for tensor, value in sample.feeds.items() if tensor in wanted})
            done += 1
            yield done, runs, values
            del values
        del session


@dataclass
class CalibratedRanges:
    """Where collect_ranges wrote the ranges, and the tensors int8 cannot represent.

    `nonfinite` is {tensor: number of NaN/±Inf values over the calibration samples} for each
    tensor that held any (an attention mask's -inf, …); the ranges file holds the range of its
    finite values only.
    """

    path: Path
    nonfinite: dict[str, int] = field(default_factory=dict)


def collect_ranges(model_path: Path, source: CalibrationSource, method, directory: Path,
                   progress: Callable[[int, int], None] | None = None, budget: int | None = None
                   ) -> CalibratedRanges:
    """Statistics of every tensor to calibrate over `source`; returns the ranges file for quantize_static.

    `method` is an onnxruntime CalibrationMethod (MinMax, Entropy, Percentile).

    Non-finite values are counted per tensor (CalibratedRanges.nonfinite) and left out of the
    statistics. onnxruntime's calibrators (onnxruntime/quantization/calibrate.py, 1.32) do not
    handle them: MinMaxCalibrater takes np.nanmin/np.nanmax, which skip NaN but keep ±inf, so
    a -inf attention mask calibrates to an unbounded range and compute_scale_zp
    (quant_utils.py) turns it into scale = inf (every value dequantizes to 0·inf = NaN or
    ±inf); HistogramCollector passes the data to np.histogram, which raises on an infinite
    range. int8 has no infinity, so such a tensor is kept out of int8 altogether
    (segcost.quant.fallback.nonfinite_tensors), and its finite range is never used.
    """
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        HistogramCollector,
        TensorsData,
        save_tensors_data,
    )

    name = {CalibrationMethod.Entropy: "entropy", CalibrationMethod.Percentile: "percentile"}.get(method)
    collector = HistogramCollector(method=name, symmetric=False, scenario="same", **HISTOGRAM[name]) if name else None
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    nonfinite: dict[str, int] = {}
    for done, runs, values in stream_tensors(model_path, source, budget=budget):
        for tensor, value in values.items():
            finite = np.isfinite(value)
            if not finite.all():
                nonfinite[tensor] = nonfinite.get(tensor, 0) + value.size - int(np.count_nonzero(finite))
                values[tensor] = value[finite]   # 1-D: the collector flattens every array anyway
        if collector is not None:
            with contextlib.redirect_stdout(io.StringIO()):   # the collector prints a line per call
                # an all-non-finite run is left out: the collector's np.nanmax of an empty array raises
                collector.collect({tensor: [value] for tensor, value in values.items() if value.size or
                                   tensor not in nonfinite})
        for tensor, value in values.items():
            if value.size:
                low[tensor] = min(low.get(tensor, np.inf), float(np.min(value)))
                high[tensor] = max(high.get(tensor, -np.inf), float(np.max(value)))
        if progress is not None:
            progress(done, runs)
    if collector is not None:
        ranges = TensorsData(method, collector.compute_collection_result())
    else:
        sizes = tensors_to_calibrate(onnx.load(model_path, load_external_data=False))
        ranges = TensorsData(CalibrationMethod.MinMax, {
            tensor: (np.array([low.get(tensor, 0.0)], np.float32), np.array([high.get(tensor, 0.0)], np.float32))
            for tensor in sizes})
    path = directory / "ranges.json"
    save_tensors_data(ranges, path)
    return CalibratedRanges(path, nonfinite)


@dataclass
class ChannelStats:
    """Per-channel statistics of one N×C×... float tensor over the calibration samples (axis 1 = channels)."""

    low: np.ndarray    # [C] minimum
    high: np.ndarray   # [C] maximum
    mean: np.ndarray   # [C] mean over samples, batch and spatial positions

    def scaled(self, factor: np.ndarray) -> ChannelStats:
        """The statistics of the tensor multiplied by a positive per-channel `factor` [C]."""
        return ChannelStats(self.low * factor, self.high * factor, self.mean * factor)


def channel_statistics(model_path: Path, source: CalibrationSource, tensors: Iterable[str],
                       budget: int | None = None) -> dict[str, ChannelStats]:
    """Per-channel min, max and mean of `tensors` (rank >= 2, float) of the float model at `model_path`.

    Streams like collect_ranges (stream_tensors): only the [C] accumulators are kept.
    Tensors of rank < 2 or that the model does not compute in float are left out.
    """
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    total: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for _, _, values in stream_tensors(model_path, source, tensors, budget):
        for tensor, value in values.items():
            if value.ndim < 2 or value.size == 0:
                continue
            axes = (0, *range(2, value.ndim))
            lo, hi = value.min(axis=axes).astype(np.float64), value.max(axis=axes).astype(np.float64)
            low[tensor] = np.minimum(low[tensor], lo) if tensor in low else lo
            high[tensor] = np.maximum(high[tensor], hi) if tensor in high else hi
            total[tensor] = total.get(tensor, 0.0) + value.sum(axis=axes, dtype=np.float64)
            count[tensor] = count.get(tensor, 0) + value.size // value.shape[1]
    return {tensor: ChannelStats(low[tensor], high[tensor], total[tensor] / count[tensor]) for tensor in low}


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names` (those not already graph outputs)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {output.name for output in copy.graph.output}
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in dict.fromkeys(names)
                             if name not in present)
    return copy


def quiet_session(model: onnx.ModelProto):
    """An onnxruntime CPU session of `model` for comparisons: no log noise, no memory arena (tensors are
    freed as they die, so a compared chunk is the only surplus)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    return open_session(model, options)

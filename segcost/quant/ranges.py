"""Activation ranges for static quantization, collected one sample at a time.

onnxruntime's calibrators keep every requested intermediate tensor of every sample until
the end (HistogramCalibrater for entropy/percentile: all activations × all samples; its
MinMax `CalibMaxIntermediateOutputs` option drops the collected chunk instead of merging
it). Here each sample goes through the calibrator on its own: MinMax ranges are merged
(running min/max) and histograms are extended (onnxruntime's HistogramCollector merges a
new batch into the existing bins) after every sample, so memory is one sample's
intermediates, whatever --calib-size is. The result is written with onnxruntime's own
`save_tensors_data`, and `quantize_static(calibration_cache_path=...)` reads it back: the
quantizer itself stays onnxruntime's.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

from segcost.quant.calibration import CalibrationSource


class _OneSample:
    """onnxruntime CalibrationDataReader yielding a single feed dict."""

    def __init__(self, feeds: dict):
        self.feeds: dict | None = feeds

    def get_next(self):
        feeds, self.feeds = self.feeds, None
        return feeds

    def rewind(self):  # the reader protocol; a one-sample reader is never rewound
        pass


def collect_ranges(model_path: Path, source: CalibrationSource, method, directory: Path,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Run `source` through `model_path` one sample at a time; returns the ranges file for quantize_static.

    `method` is an onnxruntime CalibrationMethod. Peak memory: the augmented model's
    intermediates for one sample (+ fixed-size histograms for entropy/percentile).
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(model_path, None, augmented_model_path=str(directory / "augmented.onnx"),
                                   calibrate_method=method, extra_options={})
    total = len(source)
    for done, sample in enumerate(source, 1):
        # HistogramCollector prints a line per call; keep it off the user's terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            calibrator.collect_data(_OneSample(sample.feeds))
        if progress is not None:
            progress(done, total)
    ranges = calibrator.compute_data()
    del calibrator
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / "augmented.onnx")
    path = directory / "ranges.json"
    save_tensors_data(ranges, path)
    return path

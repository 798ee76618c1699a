"""Bounded-memory calibration gives onnxruntime's ranges (issue 16, item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from segcost.quant.calibration import open_source
from segcost.quant.ranges import collect_ranges


def _model(qm, path: Path) -> Path:
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    y = b.conv("y", "r", 8, 8, gain=3.0)
    b.op("Concat", ["r", y], "cat", axis=1)
    b.conv("out", "cat", 16, 4)
    onnx.save(b.model({"input": [1, 3, 16, 16]}, {"out": [1, 4, 16, 16]}), path)
    return path


@pytest.mark.parametrize("budget", [None, 8 * 256 * 4])   # all tensors in one run; one 8x16x16 tensor per run
def test_minmax_ranges_match_onnxruntime_calibrator(qm, tmp_path, budget):
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        load_tensors_data,
    )

    path = _model(qm, tmp_path / "m.onnx")
    source = open_source("synthetic", "input", (1, 3, 16, 16), 3)
    ours = load_tensors_data(collect_ranges(path, source, CalibrationMethod.MinMax, tmp_path, budget=budget).path)

    class Reader:
        def __init__(self):
            self.items = iter([sample.feeds for sample in source])

        def get_next(self):
            return next(self.items, None)

    calibrator = create_calibrator(path, None, augmented_model_path=str(tmp_path / "aug.onnx"))
    calibrator.collect_data(Reader())
    theirs = calibrator.compute_data()
    assert set(ours.data) == set(theirs.data)
    for name in theirs.data:
        np.testing.assert_allclose(np.ravel(ours[name].range_value), np.ravel(theirs[name].range_value), rtol=1e-6)


@pytest.mark.parametrize("method", ["Entropy", "Percentile"])
def test_histogram_methods_stream_per_run(qm, tmp_path, method):
    from onnxruntime.quantization.calibrate import CalibrationMethod, load_tensors_data

    path = _model(qm, tmp_path / "m.onnx")
    source = open_source("synthetic", "input", (1, 3, 16, 16), 3)
    ranges = load_tensors_data(collect_ranges(path, source, getattr(CalibrationMethod, method), tmp_path,
                                              budget=8 * 256 * 4).path)
    low, high = ranges["cat"].range_value
    assert float(np.ravel(low)[0]) <= 0.0 < float(np.ravel(high)[0])

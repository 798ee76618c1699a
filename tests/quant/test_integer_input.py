"""uint8-input models (normalisation inside the graph) calibrate on raw pixels (breaker6 R4).

Calibration data used to be fed as float32 whatever the input's dtype, even a uint8 .npy file;
onnxruntime refused ("Unexpected input data type") and the error suggested --exclude-nodes or
--per-tensor, neither of which could help.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from segcost.errors import InputError
from segcost.frontends.onnx import load_model
from segcost.pipeline import run_onnxruntime
from segcost.quant.calibration import open_source
from segcost.quant.quantize import QuantizeOptions, in_input_dtype, quantize_graph

SHAPE = [1, 3, 32, 32]


def _uint8_model(qm) -> onnx.ModelProto:
    """image (uint8) → Cast → (x − mean) / std → Conv → Relu → Conv."""
    b = qm.Builder()
    b.const("mean", np.array([123.7, 116.3, 103.5], np.float32).reshape(1, 3, 1, 1))
    b.const("std", np.array([58.4, 57.1, 57.4], np.float32).reshape(1, 3, 1, 1))
    b.nodes.append(helper.make_node("Cast", ["image"], ["pixels"], name="cast", to=TensorProto.FLOAT))
    normalized = b.op("Div", [b.op("Sub", ["pixels", "mean"], "centred"), "std"], "normalized")
    b.conv("out", b.op("Relu", [b.conv("a", normalized, 3, 8, kernel=3)], "a_relu"), 8, 4)
    model = b.model({"image": SHAPE}, {"out": [1, 4, 32, 32]})
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("image", TensorProto.UINT8, SHAPE))
    onnx.checker.check_model(model)
    return model


def _sqnr(want: np.ndarray, got: np.ndarray) -> float:
    want = want.astype(np.float64)
    return float(10 * np.log10(np.sum(want ** 2) / np.sum((want - got) ** 2)))


@pytest.mark.parametrize("calibration", ["synthetic", "uint8.npy", "pixels_as_float.npy"])
def test_a_uint8_input_model_is_calibrated_on_raw_pixels(qm, tmp_path, calibration):
    pixels = np.random.default_rng(0).integers(0, 256, [4, *SHAPE[1:]], endpoint=False)
    np.save(tmp_path / "uint8.npy", pixels.astype(np.uint8))
    np.save(tmp_path / "pixels_as_float.npy", pixels.astype(np.float32))   # whole numbers: fed as they are
    spec = calibration if calibration == "synthetic" else str(tmp_path / calibration)
    result = quantize_graph(load_model(_uint8_model(qm)), QuantizeOptions(calibration=spec, calib_size=4))
    samples = [sample.feeds["image"] for sample in result.source]
    assert all(sample.dtype == np.uint8 for sample in samples)
    if calibration == "synthetic":   # pixels 0..255, not normalized floats cast to uint8 (all 0..2)
        assert max(int(sample.max()) for sample in samples) > 100
    else:
        assert np.array_equal(np.concatenate(samples), pixels)
    feeds = {"image": pixels[:1].astype(np.uint8)}
    assert _sqnr(run_onnxruntime(result.float_model, feeds)[0], run_onnxruntime(result.model, feeds)[0]) > 25


def test_normalized_float_data_for_a_uint8_input_is_refused_with_the_rule(qm, tmp_path):
    np.save(tmp_path / "normalized.npy", np.random.default_rng(0).standard_normal([2, *SHAPE[1:]]).astype(np.float32))
    with pytest.raises(InputError, match=r"input is uint8, so its data must be whole numbers in 0\.\.255"):
        quantize_graph(load_model(_uint8_model(qm)),
                       QuantizeOptions(calibration=str(tmp_path / "normalized.npy"), calib_size=2))


def test_an_image_folder_gives_a_uint8_input_its_pixels(qm, tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.ppm").write_bytes(b"P6\n32 32\n255\n" + image.tobytes())
    source = in_input_dtype(open_source(str(folder), "image", tuple(SHAPE), 1),
                            load_model(_uint8_model(qm)))
    fed = next(iter(source)).feeds["image"]
    assert fed.dtype == np.uint8 and np.array_equal(fed[0], image.transpose(2, 0, 1))


def test_cli_quantizes_a_uint8_input_model(qm, run_cli, tmp_path):
    onnx.save_model(_uint8_model(qm), tmp_path / "m.onnx")
    code, out, err = run_cli("optimize", str(tmp_path / "m.onnx"), "--int8", "--calib-size", "2",
                             "-o", str(tmp_path / "m8.onnx"))
    assert code == 0, err
    assert "uint8 pixels 0..255" in out
    assert onnx.load(tmp_path / "m8.onnx").graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8

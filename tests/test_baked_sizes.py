"""--input-shape away from the export's size on a model with sizes baked into its constants (legacy torch.onnx
exports of smp/torchvision/HF models): the message names the Reshape whose fixed target does not fit and the
shape the model was exported for — not "shape unknown ... e.g. a custom op" (issue 18)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.shapes.fit import reshape_misfit
from tests.conftest import weight


def _model(nodes, initializers, output="y") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "baked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def baked_reshape(target=(1, 4, 1024)) -> onnx.ModelProto:
    """Conv 3->4 at 32x32, Reshape to a constant target (as torch.onnx legacy bakes x.view(1, 4, -1)), MatMul."""
    return _model([helper.make_node("Conv", ["x", "w"], ["c"], name="/enc/Conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Reshape", ["c", "target"], ["r"], name="/head/Reshape"),
                   helper.make_node("MatMul", ["r", "m"], ["y"], name="/head/MatMul")],
                  [numpy_helper.from_array(weight(4, 3, 3, 3), "w"), numpy_helper.from_array(weight(1024, 8), "m"),
                   numpy_helper.from_array(np.array(target, np.int64), "target")])


def baked_resize() -> onnx.ModelProto:
    """A stride-2 branch resized to fixed sizes 32x32 (F.interpolate(size=...) baked), concatenated with a skip."""
    return _model([helper.make_node("Conv", ["x", "w"], ["skip"], name="/enc/skip/Conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Conv", ["x", "w"], ["down"], name="/enc/down/Conv", pads=[1, 1, 1, 1],
                                    strides=[2, 2]),
                   helper.make_node("Resize", ["down", "", "", "sizes"], ["up"], name="/dec/Resize", mode="nearest"),
                   helper.make_node("Concat", ["skip", "up"], ["cat"], name="/dec/Concat", axis=1),
                   helper.make_node("Conv", ["cat", "h"], ["y"], name="/head/Conv")],
                  [numpy_helper.from_array(weight(4, 3, 3, 3), "w"), numpy_helper.from_array(weight(2, 8, 1, 1), "h"),
                   numpy_helper.from_array(np.array([1, 4, 32, 32], np.int64), "sizes")])


@pytest.mark.parametrize("command", ["analyze", "optimize"])
def test_a_fixed_reshape_target_that_does_not_fit_names_the_reshape_and_the_export_shape(run_cli, tmp_path, command):
    path = tmp_path / "baked.onnx"
    onnx.save(baked_reshape(), path)
    extra = ["-o", str(tmp_path / "out.onnx")] if command == "optimize" else []
    code, out, err = run_cli(command, str(path), "--input-shape", "x=1x3x64x64", *extra)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "'/head/Reshape' (Reshape): its fixed target shape [1, 4, 1024] does not fit its input [1, 4, 64, 64]" in err
    assert "16,384 elements in, 4,096 out" in err
    assert "exported for x=1x3x32x32 (given: x=1x3x64x64)" in err
    assert "custom op" not in err and "shape unknown" not in err
    code, _, err = run_cli(command, str(path), "--input-shape", "x=1x3x32x32", *extra)   # the export size works
    assert code == 0, err


def test_a_minus_one_target_that_cannot_divide_says_so(run_cli, tmp_path):
    path = tmp_path / "baked.onnx"
    onnx.save(baked_reshape((1, 1000, -1)), path)
    code, _, err = run_cli("analyze", str(path), "--input-shape", "x=1x3x30x30")
    assert code == 2 and "3,600 elements are not a multiple of the 1,000 the target fixes" in err, err
    assert "exported for x=1x3x32x32" in err


def test_a_reshape_that_never_fits_is_an_error_without_input_shape(run_cli, tmp_path):
    """No --input-shape: the file itself is inconsistent (onnx shape inference would pass [1, 4, 100] on silently)."""
    path = tmp_path / "broken.onnx"
    onnx.save(baked_reshape((1, 4, 100)), path)
    code, _, err = run_cli("analyze", str(path))
    assert code == 2 and "'/head/Reshape'" in err and "give the input shape it was exported for" in err, err


def test_a_baked_resize_size_says_the_export_shape_not_custom_op(run_cli, tmp_path):
    path = tmp_path / "resize.onnx"
    onnx.save(baked_resize(), path)
    code, _, err = run_cli("analyze", str(path), "--input-shape", "x=1x3x64x64")
    assert code == 2 and err.count("\n") == 1, err
    assert "'/head/Conv'" in err and "exported for x=1x3x32x32 (given: x=1x3x64x64)" in err
    assert "stopped at node '/dec/Concat'" in err and "custom op" not in err
    assert "output size of Resize '/dec/Resize' [1, 4, 32, 32] was fixed for that size" in err
    assert run_cli("analyze", str(path))[0] == 0


@pytest.mark.parametrize("data, target, allowzero, fits", [
    ((1, 4, 8, 8), (1, 4, 64), False, True), ((1, 4, 8, 8), (1, -1), False, True),
    ((1, 4, 8, 8), (0, 0, -1), False, True), ((1, 4, 8, 8), (1, 4, 32), False, False),
    ((1, 4, 8, 8), (3, -1), False, False), ((2, 3), (0, 3), True, False), ((0, 3), (0, 3), True, True),
    ((1, 4), (0, 0, 0), False, False), ((1, 4), (-1, -1), False, False), ((1,), (), False, True),
])
def test_reshape_misfit(data, target, allowzero, fits):
    assert (reshape_misfit(data, target, allowzero) == "") is fits


def test_a_classifier_gemm_at_another_size_names_the_export_shape(run_cli, tmp_path):
    """Flatten -> Gemm whose weight was sized at export: inner dims differ, and the message says why."""
    path = tmp_path / "gemm.onnx"
    onnx.save(_model([helper.make_node("Conv", ["x", "w"], ["c"], name="/enc/Conv", pads=[1, 1, 1, 1]),
                      helper.make_node("Flatten", ["c"], ["f"], name="/head/Flatten"),
                      helper.make_node("Gemm", ["f", "g"], ["y"], name="/head/Gemm")],
                     [numpy_helper.from_array(weight(4, 3, 3, 3), "w"),
                      numpy_helper.from_array(weight(4 * 32 * 32, 10), "g")]), path)
    code, _, err = run_cli("analyze", str(path), "--input-shape", "x=1x3x16x16")
    assert code == 2 and "inner dims differ" in err and "exported for x=1x3x32x32 (given: x=1x3x16x16)" in err, err
    assert run_cli("analyze", str(path))[0] == 0


@pytest.mark.parametrize(("shape", "hint"), [("x=2x3x32x32", "re-export with dynamic batch"),
                                             ("x=1x3x64x64", "re-export with dynamic H/W"),
                                             ("x=2x3x64x32", "re-export with dynamic axes 0, 2")])
def test_the_re_export_advice_names_the_axes_that_changed(run_cli, tmp_path, shape, hint):
    """A batch change asks for a dynamic batch, not dynamic H/W (breaker6 R10)."""
    path = tmp_path / "baked.onnx"
    onnx.save(baked_reshape(), path)
    code, _, err = run_cli("analyze", str(path), "--input-shape", shape)
    assert code == 2 and hint in err, err

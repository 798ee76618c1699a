"""`segcost optimize` on inputs with symbolic dims: the message says what works for optimize, a symbolic
batch stays symbolic in the written model when --input-shape fixes H and W (issue 16 item 3, issue 18)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost
from tests.conftest import weight


def _nhw_model(batch="N") -> onnx.ModelProto:
    """Conv 3->4 -> Reshape to (batch, 4, H*W) through Shape/Slice/Concat -> Relu -> Reshape back, input [N,3,H,W].

    The Reshape target is computed from the tensor's own shape: constant folding with a baked batch
    would make it [1, 4, ...] and the model would no longer run at batch 3.
    """
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/stem/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["shape"], name="/flat/Shape"),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"], name="/flat/Slice"),
        helper.make_node("Concat", ["batch", "rest"], ["target"], name="/flat/Concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="/flat/Reshape"),
        helper.make_node("Relu", ["flat"], ["r"], name="/flat/Relu"),
        helper.make_node("Reshape", ["r", "back"], ["y"], name="/head/Reshape"),
    ]
    initializers = [numpy_helper.from_array(weight(4, 3, 3, 3), "w"),
                    numpy_helper.from_array(np.array([0], np.int64), "zero"),
                    numpy_helper.from_array(np.array([1], np.int64), "one"),
                    numpy_helper.from_array(np.array([4, -1], np.int64), "rest"),
                    numpy_helper.from_array(np.array([0, 4, 16, 16], np.int64), "back")]
    graph = helper.make_graph(nodes, "nhw",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 16, 16])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_symbolic_h_w_without_input_shape_says_what_works_for_optimize(run_cli, tmp_path):
    path = tmp_path / "nhw.onnx"
    onnx.save(_nhw_model(), path)
    code, out, err = run_cli("optimize", str(path), "-o", str(tmp_path / "out.onnx"), "--no-check")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("segcost: error: ")
    assert "--symbolic" not in err and "analyze" not in err
    assert "--input-shape x=1x3xHxW" in err and "numbers for H, W" in err
    assert "batch dim 'N' stays symbolic" in err
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("int8", [False, True])
def test_input_shape_fixes_h_w_and_the_batch_stays_symbolic(run_cli, tmp_path, int8):
    path, output = tmp_path / "nhw.onnx", tmp_path / "out.onnx"
    onnx.save(_nhw_model(), path)
    args = ["optimize", str(path), "--input-shape", "x=1x3x16x16", "-o", str(output)]
    code, out, err = run_cli(*args, *(["--int8", "--calib-size", "2"] if int8 else []))
    assert code == 0, err
    written = onnx.load(output)
    dims = written.graph.input[0].type.tensor_type.shape.dim
    assert [dim.dim_param or dim.dim_value for dim in dims] == ["N", 3, 16, 16]
    batch = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    got = ort.InferenceSession(output.as_posix()).run(None, {"x": batch})[0]
    want = ort.InferenceSession(path.as_posix()).run(None, {"x": batch})[0]
    assert got.shape == want.shape == (3, 4, 16, 16)
    if not int8:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert "MACs" in out   # the analysis counted one sample with numbers


def test_api_optimize_keeps_the_symbolic_batch_and_analyze_still_uses_the_given_batch():
    result = segcost.optimize(_nhw_model(), (1, 3, 16, 16), check=False)
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [dim.dim_value for dim in dims[1:]] == [3, 16, 16]
    assert result.before.totals.macs == 16 * 16 * 4 * 3 * 9   # one sample
    analysis = segcost.analyze(_nhw_model(), (2, 3, 16, 16))    # analyze: the batch given is the batch counted
    assert analysis.totals.macs == 2 * 16 * 16 * 4 * 3 * 9


def test_a_static_batch_in_the_file_takes_the_given_batch(run_cli, tmp_path):
    path, output = tmp_path / "static_n.onnx", tmp_path / "out.onnx"
    onnx.save(_nhw_model(batch=2), path)
    code, _, err = run_cli("optimize", str(path), "--input-shape", "x=2x3x16x16", "-o", str(output))
    assert code == 0, err
    dims = onnx.load(output).graph.input[0].type.tensor_type.shape.dim
    assert [dim.dim_param or dim.dim_value for dim in dims] == [2, 3, 16, 16]


@pytest.mark.parametrize("command", ["verify", "cost"])
def test_commands_without_an_input_check_name_the_symbolic_input_not_a_custom_op(run_cli, tmp_path, command):
    """verify and cost reach the cost rules without analyze's input check: an open dim there comes from the
    symbolic input, and the message says so (it used to blame "an op upstream ... e.g. a custom op")."""
    path = tmp_path / "nhw.onnx"
    onnx.save(_nhw_model(), path)
    code, out, err = run_cli(command, str(path))
    assert code == 2 and err.count("\n") == 1, err
    assert "input 'x' has symbolic dimension 'N' at axis 0; pass --input-shape x=1x3x1x1" in err
    assert "custom op" not in err and "static input shapes" not in err
    assert run_cli(command, str(path), "--input-shape", "x=1x3x16x16")[0] == 0


def _rapidocr(name: str):
    package = pytest.importorskip("rapidocr_onnxruntime")
    from pathlib import Path

    path = Path(package.__file__).parent / "models" / name
    if not path.is_file():
        pytest.skip(f"rapidocr-onnxruntime ships no {name}")
    return path


def test_pp_ocr_det_keeps_its_symbolic_batch_and_runs_at_batch_3(run_cli, tmp_path):
    """paddle2onnx's PP-OCRv4 detector (symbolic N, H, W as shipped): --input-shape fixes H and W only."""
    output = tmp_path / "det.onnx"
    code, _, err = run_cli("optimize", str(_rapidocr("ch_PP-OCRv4_det_infer.onnx")), "--input-shape", "x=1x3x64x64",
                           "-o", str(output))
    assert code == 0, err
    dims = onnx.load(output).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [dim.dim_value for dim in dims[1:]] == [3, 64, 64]
    batch = np.random.default_rng(2).standard_normal((3, 3, 64, 64)).astype(np.float32)
    assert ort.InferenceSession(output.as_posix()).run(None, {"x": batch})[0].shape[0] == 3


def test_a_batch_inference_cannot_follow_to_the_outputs_is_set_as_given_and_says_so(run_cli, tmp_path):
    """PP-OCRv4's recognizer: with a symbolic batch onnx leaves its output shape open (a model onnx.checker
    refuses), so the batch is the one given, with a note — the written model is valid and matches the file."""
    output = tmp_path / "rec.onnx"
    code, out, err = run_cli("optimize", str(_rapidocr("ch_PP-OCRv4_rec_infer.onnx")), "--input-shape",
                             "x=1x3x48x160", "-o", str(output))
    assert code == 0, err
    assert "batch dim 'p2o.DynamicDimension.0' could not be kept symbolic" in err and "takes batch 1" in err
    assert "onnxruntime check: max |original - optimized|" in out
    onnx.checker.check_model(onnx.load(output))

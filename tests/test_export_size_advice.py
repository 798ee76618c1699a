"""A shape error after --input-shape moved away from the file's static input shape says the export size and
the given one; it names a size fixed at export only when one is found upstream (breaker11 F2).

Two ways a model refuses another size: a Reshape with a baked batch/H·W and a -1 that takes up the change
and hands a wrong shape to a later Conv or Add (LiteMLA's `[1, -1, 3d, H·W]`), and a network with nothing
baked that just needs H, W at multiples of its stride (a U-Net skip Concat) — where a dynamic re-export
would not help.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import weight


def _model(nodes, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _minus_one_reshape(tail: str) -> onnx.ModelProto:
    """Conv 3->8, Reshape to the baked [1, -1, 8, 8] (batch 1 and 8x8 fixed, the -1 absorbs any change), then a
    1x1 Conv (tail "conv") or ReduceMean over channels added back to the Conv's output (tail "add")."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/enc/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "target"], ["r"], name="/attn/Reshape")]
    inits = [numpy_helper.from_array(weight(8, 3, 3, 3), "w"),
             numpy_helper.from_array(np.array([1, -1, 8, 8], np.int64), "target")]
    if tail == "conv":
        nodes.append(helper.make_node("Conv", ["r", "p"], ["y"], name="/attn/proj/Conv"))
        inits.append(numpy_helper.from_array(weight(4, 8, 1, 1), "p"))
    else:
        nodes += [helper.make_node("ReduceMean", ["r", "axes"], ["m"], name="/attn/ReduceMean", keepdims=1),
                  helper.make_node("Add", ["m", "c"], ["y"], name="/attn/Add")]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    return _model(nodes, inits)


def _error(run_cli, tmp_path, model, shape) -> str:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert run_cli("analyze", str(path))[0] == 0     # the export size works
    code, out, err = run_cli("analyze", str(path), "--input-shape", shape)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("segcost: error: "), err
    return err


@pytest.mark.parametrize(("tail", "shape", "failing", "hint"), [
    ("conv", "x=2x3x8x8", "'/attn/proj/Conv' (Conv): input has 16 channels", "dynamic batch"),
    ("conv", "x=1x3x16x16", "'/attn/proj/Conv' (Conv): input has 32 channels", "dynamic H/W"),
    ("add", "x=1x3x16x16", "'/attn/Add' (Add)", "dynamic H/W"),
])
def test_a_baked_minus_one_reshape_is_named_with_the_export_size(run_cli, tmp_path, tail, shape, failing, hint):
    """The error is where the wrong shape lands (a Conv, an Add); it says the export size and names the Reshape."""
    err = _error(run_cli, tmp_path, _minus_one_reshape(tail), shape)
    assert failing in err
    assert f"the model was exported for x=1x3x8x8 (given: {shape})" in err
    assert "target [1, -1, 8, 8] of Reshape '/attn/Reshape'" in err and f"re-export with {hint}" in err


def _stride_two_unet() -> onnx.ModelProto:
    """x -> MaxPool /2 -> Resize x2 (constant scales: nothing baked) -> Concat with x -> Conv: fits only even H, W."""
    return _model([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="/enc/pool"),
                   helper.make_node("Resize", ["p", "", "scales"], ["u"], mode="nearest", name="/dec/up"),
                   helper.make_node("Concat", ["x", "u"], ["cat"], axis=1, name="/dec/cat"),
                   helper.make_node("Conv", ["cat", "w"], ["y"], name="/head/Conv")],
                  [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                   numpy_helper.from_array(weight(4, 6, 3, 3), "w")])


def test_a_size_the_network_does_not_take_claims_no_baked_size(run_cli, tmp_path):
    """9x9 pools to 4x4 and comes back 8x8: the Concat is named, the export size said, and no baked constant
    claimed nor a dynamic re-export advised (main said 'a size baked into its constants likely does not fit')."""
    err = _error(run_cli, tmp_path, _stride_two_unet(), "x=1x3x9x9")
    assert "stopped at node '/dec/cat' (Concat; inputs x [1, 3, 9, 9], u [1, 3, 8, 8])" in err
    assert "the model was exported for x=1x3x8x8 (given: x=1x3x9x9)" in err
    assert "no size fixed at export (a Reshape target, Resize sizes) was found upstream" in err
    assert "baked into its constants" not in err and "re-export" not in err
    assert run_cli("analyze", str(tmp_path / "m.onnx"), "--input-shape", "x=1x3x10x12")[0] == 0


def test_a_plain_flatten_is_not_blamed_for_a_spatial_change(run_cli, tmp_path):
    """A Reshape [1, -1] (flatten, batch 1) fixes nothing an H, W change touches: a classifier Gemm sized at
    export fails with the export size said, and no Reshape named."""
    model = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="/enc/Conv", pads=[1, 1, 1, 1]),
                    helper.make_node("Reshape", ["c", "flat"], ["f"], name="/head/Reshape"),
                    helper.make_node("Gemm", ["f", "g"], ["y"], name="/head/Gemm")],
                   [numpy_helper.from_array(weight(4, 3, 3, 3), "w"),
                    numpy_helper.from_array(np.array([1, -1], np.int64), "flat"),
                    numpy_helper.from_array(weight(4 * 8 * 8, 10), "g")])
    err = _error(run_cli, tmp_path, model, "x=1x3x16x16")
    assert "inner dims differ" in err and "exported for x=1x3x8x8 (given: x=1x3x16x16)" in err
    assert "'/head/Reshape'" not in err
    err = _error(run_cli, tmp_path, model, "x=2x3x8x8")   # a batch change is what [1, -1] fixes
    assert "target [1, -1] of Reshape '/head/Reshape'" in err and "re-export with dynamic batch" in err

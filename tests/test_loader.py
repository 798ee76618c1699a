"""Bad input never crashes: each case is one line on stderr and exit 2; good input round-trips."""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.errors import InputError
from segcost.frontends.onnx import load, parse_input_shapes
from segcost.samples import deeplabv3lite
from tests.conftest import single_op_model, weight


@pytest.fixture(scope="module")
def sample_model() -> onnx.ModelProto:
    return deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=96)


@pytest.fixture
def sample_path(tmp_path, sample_model):
    path = tmp_path / "sample.onnx"
    onnx.save_model(sample_model, path)
    return path


def assert_one_line_exit_2(run_cli, *args, match: str):
    code, out, err = run_cli("analyze", *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segcost: error:") and "Traceback" not in err
    assert match in lines[0], lines[0]


def test_missing_file(run_cli, tmp_path):
    assert_one_line_exit_2(run_cli, str(tmp_path / "nope.onnx"), match="no such file")


def test_directory(run_cli, tmp_path):
    assert_one_line_exit_2(run_cli, str(tmp_path), match="is a directory")


def test_empty_file(run_cli, tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert_one_line_exit_2(run_cli, str(path), match="empty")


def test_not_onnx(run_cli, tmp_path):
    path = tmp_path / "image.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    assert_one_line_exit_2(run_cli, str(path), match="not a valid ONNX model")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated(run_cli, sample_path, fraction):
    data = sample_path.read_bytes()
    sample_path.write_bytes(data[: int(len(data) * fraction)])
    code, out, err = run_cli("analyze", str(sample_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cycle(run_cli, tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Relu", ["a"], ["y"], name="third")]
    graph = helper.make_graph(nodes, "cyclic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "cycle.onnx"
    onnx.save_model(helper.make_model(graph), path)
    assert_one_line_exit_2(run_cli, str(path), match="cycle")


def test_dangling_tensor(run_cli, tmp_path):
    model = single_op_model("Add", {"x": [1, 4]}, inputs=["x", "ghost"])
    path = tmp_path / "dangling.onnx"
    onnx.save_model(model, path)
    assert_one_line_exit_2(run_cli, str(path), match="'ghost'")


def test_two_producers(run_cli, tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Relu", ["x"], ["y"], name="b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "dup.onnx"
    onnx.save_model(helper.make_model(graph), path)
    assert_one_line_exit_2(run_cli, str(path), match="produced by two nodes")


def _external_model(tmp_path, location: str):
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(8 * 4 * 9 * 4))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = model_dir / "m.onnx"
    onnx.save_model(model, path)
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_escaping_the_model_dir(run_cli, tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    path = _external_model(tmp_path, location)
    code, out, err = run_cli("analyze", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "refused" in err or "escapes" in err


def test_external_data_symlink_escaping(run_cli, tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    path = _external_model(tmp_path, "weights.bin")
    os.symlink(tmp_path / "secret.bin", path.parent / "weights.bin")
    assert_one_line_exit_2(run_cli, str(path), match="escapes")


def test_external_data_region_beyond_file(run_cli, tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(b"\0" * 100)
    assert_one_line_exit_2(run_cli, str(path), match="outside")


def test_external_data_inside_dir_is_read_lazily_and_correctly(tmp_path):
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.onnx.data",
                    size_threshold=0)
    graph = load(path)
    assert graph.initializers["w"]._array is None  # analysis does not read weights
    np.testing.assert_array_equal(graph.initializers["w"].array, weight(8, 4, 3, 3))


def test_input_shape_parsing():
    assert parse_input_shapes(["input=1x3x512x1024"]) == {"input": (1, 3, 512, 1024)}
    assert parse_input_shapes(["1x3x4x4"]) == {"": (1, 3, 4, 4)}
    for bad in ["input=1x3xHx4", "input=0x3", "input="]:
        with pytest.raises(InputError):
            parse_input_shapes([bad])


def test_input_shape_errors(run_cli, sample_path):
    assert_one_line_exit_2(run_cli, str(sample_path), "--input-shape", "nope=1x3x64x96", match="no input 'nope'")
    assert_one_line_exit_2(run_cli, str(sample_path), "--input-shape", "input=1x3x64", match="rank")


def test_input_shape_override_recomputes_everything(sample_path):
    small = load(sample_path)
    big = load(sample_path, {"input": (2, 3, 128, 192)})
    assert big.shape(big.outputs[0]) == (2, 5, 128, 192)
    from segcost.analyzer import analyze
    assert analyze(big).totals.macs == 8 * analyze(small).totals.macs


def test_round_trip_runs_identically(sample_model):
    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model

    graph = load_model(sample_model)
    exported = to_model(graph)
    onnx.checker.check_model(exported)
    assert [n.op_type for n in exported.graph.node] == [n.op_type for n in sample_model.graph.node]
    assert [n.name for n in exported.graph.node] == [n.name for n in sample_model.graph.node]
    for original, copy in zip(sample_model.graph.node, exported.graph.node):
        assert {a.name: helper.get_attribute_value(a) for a in original.attribute} == \
               {a.name: helper.get_attribute_value(a) for a in copy.attribute}
    originals = {t.name: numpy_helper.to_array(t) for t in sample_model.graph.initializer}
    copies = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    assert originals.keys() == copies.keys()
    for name in originals:
        np.testing.assert_array_equal(originals[name], copies[name])
    feed = {"input": np.random.default_rng(1).standard_normal((1, 3, 64, 96)).astype(np.float32)}
    before = ort.InferenceSession(sample_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    after = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_array_equal(before[0], after[0])  # bit-identical: same graph, same kernels


def test_large_inline_weights_are_left_in_the_file_and_read_back_exactly(tmp_path):
    """protoscan skips big raw_data/float_data payloads; lazy reads return the same arrays as onnx.load."""
    weights = {"w": weight(64, 32, 3, 3), "b": weight(64)}
    model = single_op_model("Conv", {"x": [1, 32, 8, 8]}, weights)
    # float_data (packed repeated float) instead of raw_data for the bias, as some exporters write
    bias = model.graph.initializer[1]
    bias.ClearField("raw_data")
    bias.float_data.extend(weights["b"].tolist())
    path = tmp_path / "inline.onnx"
    onnx.save_model(model, path)
    graph = load(path)
    assert graph.initializers["w"].is_lazy  # 73 KB payload: not parsed
    np.testing.assert_array_equal(graph.initializers["w"].array, weights["w"])
    np.testing.assert_array_equal(graph.initializers["b"].array, weights["b"])
    from segcost.ir.onnx_io import to_model
    exported = {t.name: numpy_helper.to_array(t) for t in to_model(graph).graph.initializer}
    np.testing.assert_array_equal(exported["w"], weights["w"])


def test_duplicate_initializer(run_cli, tmp_path):
    model = single_op_model("Add", {"x": [2]}, {"c": np.ones(2, np.float32)}, inputs=["x", "c"])
    model.graph.initializer.append(numpy_helper.from_array(np.ones(2, np.float32), "c"))
    path = tmp_path / "dup_init.onnx"
    onnx.save_model(model, path)
    assert_one_line_exit_2(run_cli, str(path), match="defined twice")


def test_attribute_of_the_wrong_type(run_cli, tmp_path):
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    model.graph.node[0].attribute.append(helper.make_attribute("group", [1, 2]))
    path = tmp_path / "bad_attr.onnx"
    onnx.save_model(model, path)
    assert_one_line_exit_2(run_cli, str(path), match="attribute 'group' is INTS, the op needs INT")


def test_shapes_declared_in_the_file_cover_custom_ops(run_cli, tmp_path):
    """conv → custom-domain op → conv: the second conv's input shape comes from the file's value_info."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Mystery", ["a"], ["m"], name="custom", domain="com.example"),
             helper.make_node("Conv", ["m", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        initializer=[numpy_helper.from_array(weight(4, 4, 3, 3), "w1"),
                     numpy_helper.from_array(weight(2, 4, 1, 1), "w2")],
        value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save_model(model, path)
    code, out, err = run_cli("analyze", str(path), "--format", "json")
    assert code == 0, err
    import json
    result = json.loads(out)
    assert result["totals"]["macs"] == 64 * 4 * 4 * 9 + 64 * 2 * 4
    assert result["unknown_ops"] == {"Mystery": 1}


@pytest.mark.parametrize("dims, dtype, message", [
    ([8, 8, 3, 2], TensorProto.FLOAT, "2304 bytes stored, but dims [8, 8, 3, 2] of type 1 need 1536"),
    ([-8, -8, 3, 3], TensorProto.FLOAT, "has a negative dimension [-8, -8, 3, 3]"),
    ([8, 8, 3, 3], TensorProto.STRING, "2304 bytes stored, but dims [8, 8, 3, 3] of type 8 need 0"),
    # int4: 2 per byte, 2304 elements packed in 1152 bytes
    ([8, 8, 3, 12], TensorProto.INT4, "2304 bytes stored, but dims [8, 8, 3, 12] of type 22 need 1152"),
    ([8, 8, 3, 3], TensorProto.FLOAT, None),
])
@pytest.mark.parametrize("from_file", [True, False])
def test_initializer_bytes_must_fit_its_dims(tmp_path, dims, dtype, message, from_file):
    """A weight's stored bytes (left in the file by protoscan, or inline) are checked against dims × element size."""
    from segcost.errors import GraphError
    from segcost.frontends.onnx import load_model

    model = single_op_model("Conv", {"x": [1, 8, 8, 8]}, {"w": weight(8, 8, 3, 3)})
    model.graph.initializer[0].data_type = dtype
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend(dims)
    path = tmp_path / "model.onnx"
    onnx.save_model(model, path)
    with pytest.raises(GraphError, match=re.escape(message)) if message else contextlib.nullcontext():
        load(path) if from_file else load_model(model)

"""Untrusted models never make segcost read outside the model's folder (issue 14, reads).

Each test builds a small model in a folder of its own and runs segcost from *another*
working directory that holds a file (or symlink) of the name the model asks for: onnx and
onnxruntime would resolve a relative external-data path there.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.errors import InputError
from segcost.frontends.onnx import load
from tests.conftest import single_op_model, weight

SECRET = struct.pack("<qq", 5, 7)      # what the working directory's file holds
BESIDE = struct.pack("<qq", 3, 4)      # what the model's own data file holds


def _external(tensor: TensorProto, location: str, length: int) -> TensorProto:
    tensor.ClearField("raw_data")
    tensor.ClearField("int64_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _shape_constant(name: str = "shape") -> onnx.NodeProto:
    """Constant int64[2] whose value lies in external file data.bin (Expand's target shape)."""
    tensor = _external(numpy_helper.from_array(np.array([1, 1], np.int64), "k"), "data.bin", 16)
    return helper.make_node("Constant", [], [name], value=tensor, name="k")


def _model(nodes, extra_inputs=(), functions=(), opsets=(), initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                           *extra_inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *opsets], functions=list(functions))
    model.ir_version = 8
    return model


def constant_node():
    return _model([_shape_constant(), helper.make_node("Expand", ["x", "shape"], ["y"], name="e")])


def subgraph_constant():
    branch = helper.make_graph([_shape_constant("inner")], "then", [],
                               [helper.make_tensor_value_info("inner", TensorProto.INT64, [2])])
    other = helper.make_graph([helper.make_node("Constant", [], ["other"], name="c2",
                                                value=numpy_helper.from_array(np.array([1, 4], np.int64)))],
                              "else", [], [helper.make_tensor_value_info("other", TensorProto.INT64, [2])])
    return _model([helper.make_node("If", ["cond"], ["shape"], then_branch=branch, else_branch=other, name="if"),
                   helper.make_node("Expand", ["x", "shape"], ["y"], name="e")],
                  extra_inputs=[helper.make_tensor_value_info("cond", TensorProto.BOOL, [])])


def subgraph_initializer():
    init = _external(numpy_helper.from_array(np.array([1, 1], np.int64), "inner"), "data.bin", 16)
    branch = helper.make_graph([helper.make_node("Identity", ["inner"], ["out"], name="id")], "then", [],
                               [helper.make_tensor_value_info("out", TensorProto.INT64, [2])], initializer=[init])
    return _model([helper.make_node("If", ["cond"], ["shape"], then_branch=branch, else_branch=branch, name="if"),
                   helper.make_node("Expand", ["x", "shape"], ["y"], name="e")],
                  extra_inputs=[helper.make_tensor_value_info("cond", TensorProto.BOOL, [])])


def function_constant():
    body = [_shape_constant("s"), helper.make_node("Expand", ["a", "s"], ["b"], name="fe")]
    function = helper.make_function("local", "ExpandByFile", ["a"], ["b"], body,
                                    [helper.make_opsetid("", 17)])
    return _model([helper.make_node("ExpandByFile", ["x"], ["y"], domain="local", name="call")],
                  functions=[function], opsets=[helper.make_opsetid("local", 1)])


def sparse_constant():
    values = _external(numpy_helper.from_array(np.array([1, 1], np.int64), "values"), "data.bin", 16)
    indices = numpy_helper.from_array(np.array([0, 1], np.int64), "indices")
    sparse = helper.make_sparse_tensor(values, indices, [2])
    return _model([helper.make_node("Constant", [], ["shape"], sparse_value=sparse, name="k"),
                   helper.make_node("Expand", ["x", "shape"], ["y"], name="e")])


KINDS = {"Constant value": (constant_node, "node 'k' (Constant) attribute 'value'"),
         "If branch Constant": (subgraph_constant, "attribute 'then_branch': node 'k' (Constant)"),
         "If branch initializer": (subgraph_initializer, "_branch': initializer 'inner'"),
         "function Constant": (function_constant, "function 'ExpandByFile' node 'k' (Constant)"),
         "sparse Constant": (sparse_constant, "attribute 'sparse_value' values")}


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory holding data.bin as a symlink to a file outside every model folder."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.symlink(tmp_path / "outside" / "secret", cwd / "data.bin")
    monkeypatch.chdir(cwd)
    return cwd


def _save(model: onnx.ModelProto, folder) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.mark.parametrize("kind", KINDS)
def test_external_data_missing_beside_the_model_is_refused_not_read_from_cwd(run_cli, tmp_path, elsewhere, kind):
    build, names = KINDS[kind]
    path = _save(build(), tmp_path / "model")
    out = str(tmp_path / "out.onnx")
    code, stdout, stderr = run_cli("optimize", path, "--no-check", "-o", out)
    assert code == 2, stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcost: error:"), stderr
    assert names in lines[0] and "data.bin" in lines[0] and "file not found" in lines[0], lines[0]
    assert not os.path.exists(out)


@pytest.mark.parametrize("kind", KINDS)
def test_external_data_is_read_from_the_model_folder_only(tmp_path, elsewhere, kind):
    """With data.bin beside the model, that file is used — never the working directory's."""
    from segcost.ir.onnx_io import to_model

    build, _ = KINDS[kind]
    folder = tmp_path / "model"
    path = _save(build(), folder)
    (folder / "data.bin").write_bytes(BESIDE)
    exported = to_model(load(path, {"x": (1, 4)})).SerializeToString()
    assert SECRET not in exported
    assert BESIDE in exported                          # inlined from the model's folder
    assert b"data.bin" not in exported                 # no library ever sees the path


def test_analyze_prints_model_folder_data_as_dims_not_cwd_data(run_cli, tmp_path, elsewhere):
    folder = tmp_path / "model"
    path = _save(constant_node(), folder)
    (folder / "data.bin").write_bytes(BESIDE)
    code, stdout, stderr = run_cli("analyze", path, "--format", "json")
    assert code == 0, stderr
    import json

    layers = {layer["name"]: layer for layer in json.loads(stdout)["layers"]}
    assert layers["e"]["output_shape"] == [3, 4]


def test_in_memory_model_with_external_data_is_refused():
    from segcost.errors import InputError
    from segcost.frontends.onnx import load_model

    with pytest.raises(InputError, match="node 'k' .*external data needs the model's file"):
        load_model(constant_node())


def test_external_initializer_read_goes_through_the_checked_descriptor(tmp_path):
    """Swapping the data file for a symlink to an outside file after the check leaks nothing."""
    folder = tmp_path / "model"
    folder.mkdir()
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    onnx.save_model(model, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    graph = load(folder / "m.onnx")                        # checked: w.bin is inside the folder
    assert graph.initializers["w"].is_lazy
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.full(8 * 4 * 9, 99.0, np.float32).tobytes())
    os.symlink(outside, folder / "swap")
    os.replace(folder / "swap", folder / "w.bin")           # the race an attacker would win
    np.testing.assert_array_equal(graph.initializers["w"].array, weight(8, 4, 3, 3))


def test_model_file_replaced_after_parsing_is_not_read_by_name(tmp_path):
    """Large weights left in the model file are read back from the file that was parsed."""
    path = tmp_path / "m.onnx"
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    path.write_bytes(model.SerializeToString())
    graph = load(path)
    assert graph.initializers["w"].is_lazy
    other = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": np.full((8, 4, 3, 3), 99.0, np.float32)})
    (tmp_path / "new").write_bytes(other.SerializeToString())
    os.replace(tmp_path / "new", path)
    np.testing.assert_array_equal(graph.initializers["w"].array, weight(8, 4, 3, 3))


def test_symlink_inside_the_folder_still_works_and_fifo_is_refused(run_cli, tmp_path):
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    _external(model.graph.initializer[0], "link/w.bin", 8 * 4 * 9 * 4)
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    (folder / "weights" / "w.bin").write_bytes(weight(8, 4, 3, 3).tobytes())
    os.symlink("weights", folder / "link")                     # relative link, stays inside
    np.testing.assert_array_equal(load(folder / "m.onnx").initializers["w"].array, weight(8, 4, 3, 3))
    os.unlink(folder / "weights" / "w.bin")
    os.mkfifo(folder / "weights" / "w.bin")                    # opening it must not block
    code, _, stderr = run_cli("analyze", str(folder / "m.onnx"))
    assert code == 2 and "not a regular file" in stderr, stderr


def _initializer_chunk(tensor: TensorProto) -> bytes:
    extra = onnx.ModelProto()
    extra.graph.initializer.append(tensor)
    return extra.SerializeToString()


def test_repeated_graph_field_is_refused(run_cli, tmp_path):
    """protobuf merges a second `graph` field; payloads must not be attached to the wrong tensor."""
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    decoy = numpy_helper.from_array(np.full((8, 4, 3, 3), 99.0, np.float32), "unused")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString() + _initializer_chunk(decoy))
    merged = onnx.load(path)
    assert [init.name for init in merged.graph.initializer] == ["w", "unused"]  # what onnxruntime sees
    code, stdout, stderr = run_cli("optimize", str(path), "--no-check", "-o", str(tmp_path / "o.onnx"))
    assert code == 2, stdout
    assert "graph field occurs more than once" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


def test_model_code_runs_only_with_trust_model_code(run_cli, tmp_path, monkeypatch):
    """module:factory imports user code and .pt2 unpickles: both are refused without the flag."""
    pytest.importorskip("torch")
    marker = tmp_path / "ran"
    (tmp_path / "evil_models.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                             "import torch\n"
                                             "def build():\n    return torch.nn.Conv2d(3, 4, 1)\n")
    (tmp_path / "model.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.chdir(tmp_path)
    for spec in ("evil_models:build", "model.pt2"):
        for command in ("analyze", "optimize", "verify", "cost"):
            code, _, stderr = run_cli(command, spec, "--input-shape", "1x3x8x8")
            assert code == 2 and "--trust-model-code" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not marker.exists()
    spec_path = tmp_path / "sweep.toml"
    spec_path.write_text('measures = ["macs"]\n[axes]\nmodels = [{ model = "evil_models:build" }]\n'
                         'input_sizes = ["8x8"]\n')
    code, _, stderr = run_cli("sweep", str(spec_path), "-o", str(tmp_path / "r.csv"), "-q")
    assert code == 2 and "--trust-model-code" in stderr, stderr
    assert not marker.exists() and not (tmp_path / "r.csv").exists()
    code, _, stderr = run_cli("analyze", "evil_models:build", "--input-shape", "1x3x8x8", "--trust-model-code")
    assert code == 0 and marker.exists(), stderr                 # asked for: it runs


def test_numeric_check_compares_against_the_file_not_segcosts_reading_of_it(tmp_path):
    """A loader that attached wrong bytes to a weight must fail optimize's own numeric check."""
    from segcost.pipeline import NumericsError, optimize_model

    path = tmp_path / "m.onnx"
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    path.write_bytes(model.SerializeToString())
    graph = load(path)
    graph.initializers["w"]._array = np.full((8, 4, 3, 3), 99.0, np.float32)  # as a mis-numbered payload would
    with pytest.raises(NumericsError, match="differs"):
        optimize_model(graph)


def test_symlink_swapped_between_check_and_open_is_not_followed(tmp_path, monkeypatch):
    """The swap happens right after segcost looks at w.bin; the open that follows must not reach outside."""
    from segcost.errors import InputError

    folder = tmp_path / "model"
    folder.mkdir()
    model = single_op_model("Conv", {"x": [1, 4, 8, 8]}, {"w": weight(8, 4, 3, 3)})
    onnx.save_model(model, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.full(8 * 4 * 9, 99.0, np.float32).tobytes())
    os.symlink(outside, folder / "swap")
    swapped = []

    def racing(original):
        def look(path, *args, **kwargs):
            result = original(path, *args, **kwargs)
            if not swapped and str(path).endswith("w.bin"):
                swapped.append(path)
                os.replace(folder / "swap", folder / "w.bin")     # the attacker wins the race here
            return result
        return look

    monkeypatch.setattr(os, "stat", racing(os.stat))
    monkeypatch.setattr(os, "lstat", racing(os.lstat))
    try:
        values = load(folder / "m.onnx").initializers["w"].array
    except InputError as error:
        assert "w.bin" in str(error)                              # refused: fine
    else:
        np.testing.assert_array_equal(values, weight(8, 4, 3, 3))  # or the checked file: fine
    assert swapped


def _weight_model(folder, value: float) -> None:
    """folder/m.onnx: y = x * w, w (4 floats = `value`) in folder/m.data (external)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.data").write_bytes(np.full(4, value, np.float32).tobytes())
    w = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, text in (("location", "m.data"), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, text
    onnx.save_model(_model([helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], initializers=[w]),
                    folder / "m.onnx")


def test_symlinked_model_reads_its_data_beside_the_link_as_onnx_and_onnxruntime_do(tmp_path):
    """A model linked into a deploy folder runs with the deploy folder's m.data in onnxruntime (breaker6 R9):
    segcost reads the same bytes, so what it counts, optimizes and checks is what runs."""
    import onnxruntime as ort

    _weight_model(tmp_path / "real", 1.0)
    _weight_model(tmp_path / "deploy", 7.0)
    (tmp_path / "deploy" / "m.onnx").unlink()
    os.symlink("../real/m.onnx", tmp_path / "deploy" / "m.onnx")
    link = str(tmp_path / "deploy" / "m.onnx")
    runs = ort.InferenceSession(link, providers=["CPUExecutionProvider"]).run(None, {"x": np.ones((1, 4), np.float32)})
    graph = load(link)
    assert graph.initializers["w"].array.tolist() == runs[0].ravel().tolist() == [7.0] * 4
    assert onnx.load(link).graph.initializer[0].raw_data == graph.initializers["w"].array.tobytes()


@pytest.mark.parametrize("offset", ["4_0", " 4", "+4", "\u0664", "\uff14", "4.0", ""])
def test_external_data_offsets_are_ascii_digits_as_onnxruntime_reads_them(tmp_path, offset):
    _weight_model(tmp_path, 2.0)
    model = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    model.graph.initializer[0].external_data[1].value = offset
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"offset: .* is not a whole number written in ASCII digits"):
        load(str(tmp_path / "m.onnx"))

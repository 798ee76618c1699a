"""onnx's value propagation (data_prop) runs only where a shape needs it, and never on a long vector (breaker6 R2)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model, opener
from segcost.shapes.propagation import MAX_PROPAGATED_LENGTH


def _model(nodes, inputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def data_prop_calls(monkeypatch):
    """The data_prop flag of every onnx shape-inference call segcost makes."""
    calls: list[bool] = []
    infer = onnx.shape_inference.infer_shapes

    def recording(model, *args, **kwargs):
        calls.append(bool(kwargs.get("data_prop")))
        return infer(model, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", recording)
    return calls


def _chain(vector_length: int | None = None) -> onnx.ModelProto:
    """y = Reshape(x, Concat(Shape(x)[0:2], [-1])) (a flatten through a shape chain); with `vector_length`,
    plus a rank-1 input v of that length added to itself (its sum is what onnx would hold as dims)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["head"]),
             helper.make_node("Concat", ["head", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "w"], ["y"], name="matmul")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])]
    if vector_length is not None:
        nodes.append(helper.make_node("Add", ["v", "v"], ["v2"], name="vector_add"))
        inputs.append(helper.make_tensor_value_info("v", TensorProto.FLOAT, [vector_length]))
    inits = [numpy_helper.from_array(np.array(value, np.int64), name)
             for name, value in (("zero", [0]), ("two", [2]), ("minus_one", [-1]))]
    inits.append(numpy_helper.from_array(np.ones((48, 3), np.float32), "w"))
    return _model(nodes, inputs, inits)


def test_graph_without_value_inputs_is_inferred_without_propagation(data_prop_calls):
    """R2: y = v + v on a 30M-element vector took 4.3 GB with data_prop (3M here);
    it needs no values at all."""
    model = _model([helper.make_node("Add", ["v", "v"], ["y"], name="add")],
                   [helper.make_tensor_value_info("v", TensorProto.FLOAT, [3_000_000])])
    result = analyze(load_model(model))
    assert data_prop_calls and not any(data_prop_calls)
    assert result.layers[0].output_shape == [3_000_000]


def test_shape_chain_is_propagated_after_a_plain_pass(data_prop_calls):
    result = analyze(load_model(_chain()))
    assert data_prop_calls[:2] == [False, True]
    assert result.totals.macs == 1 * 4 * 48 * 3   # the Reshape's [1, 4, 48] came through the chain


def test_long_vector_turns_propagation_off(data_prop_calls):
    """A rank-1 tensor over the bound: no propagating pass at all; the chain is then resolved by segcost's own
    evaluator (shapes.values), so the count is still exact."""
    result = analyze(load_model(_chain(MAX_PROPAGATED_LENGTH + 1)))
    assert data_prop_calls and not any(data_prop_calls)
    assert result.totals.macs == 1 * 4 * 48 * 3


def test_vector_whose_length_only_values_tell_is_bounded_by_its_producer(data_prop_calls):
    """breaker7 R1a: v = Reshape(x[1, N], Shape(x)[1:2]) has no length without propagation; with it onnx learns
    N and holds v as N dims. Its producer (a Reshape) bounds it by x's N elements: over the bound, no propagation,
    and the chain is still resolved (segcost's evaluator)."""
    n = MAX_PROPAGATED_LENGTH + 1
    inits = [numpy_helper.from_array(np.array([1], np.int64), "st"),
             numpy_helper.from_array(np.array([2], np.int64), "en")]
    model = _model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "st", "en"], ["s1"]),
                    helper.make_node("Reshape", ["x", "s1"], ["v"], name="flatten"),
                    helper.make_node("Add", ["v", "v"], ["y"], name="add")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])], inits)
    result = analyze(load_model(model))
    assert data_prop_calls and not any(data_prop_calls)
    assert [layer.output_shape for layer in result.layers if layer.name == "add"] == [[n]]


def test_many_vectors_are_bounded_together(data_prop_calls, monkeypatch):
    """breaker7 R1b: 600 vectors of exactly the per-tensor bound took 2.8 GB: the bound holds for their sum too."""
    from segcost.shapes import propagation

    monkeypatch.setattr(propagation, "MAX_PROPAGATED_TOTAL", 4000)
    nodes = [helper.make_node("Shape", ["v"], ["sv"])]
    for index in range(5):
        nodes.append(helper.make_node("Add", [f"a{index - 1}" if index else "v"] * 2, [f"a{index}"]))
    nodes.append(helper.make_node("Reshape", ["a4", "sv"], ["y"]))
    analyze(load_model(_model(nodes, [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1000])])))
    assert data_prop_calls and not any(data_prop_calls)   # 6 vectors of 1,000 > 4,000
    data_prop_calls.clear()
    monkeypatch.setattr(propagation, "MAX_PROPAGATED_TOTAL", 10_000)
    analyze(load_model(_model(nodes, [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1000])])))
    assert data_prop_calls[:2] == [False, True]


def test_vector_only_a_constant_of_shape_tells_runs_under_the_address_space_bound(tmp_path):
    """v = ConstantOfShape(Shape(x)[1:2]) on x[1, 10M]: no producer bound (its length is a value), so the
    propagating pass runs under address_space_bound: onnx's bad_alloc falls back to the plain pass. Unbounded,
    onnx took ~1.4 GB here; the child's peak stays near the 512 MiB headroom."""
    import subprocess
    import sys

    n = 10_000_000
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "st", "en"], ["s1"]),
             helper.make_node("ConstantOfShape", ["s1"], ["v"]), helper.make_node("Add", ["v", "v"], ["y"])]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "st"),
             numpy_helper.from_array(np.array([2], np.int64), "en")]
    onnx.save_model(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])], inits),
                    tmp_path / "m.onnx")
    # The peak of the new process image: /proc's VmHWM resets at exec, where a child's ru_maxrss would
    # still count the pytest process it was forked from.
    code = ("import sys\nfrom segcost.cli import main\ntry:\n    main()\nfinally:\n"
            "    print([line for line in open('/proc/self/status') if line.startswith('VmHWM')][0], file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, "analyze", str(tmp_path / "m.onnx"), "--format", "json",
                          "-o", str(tmp_path / "r.json")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    peak_kib = int(run.stderr.split("VmHWM:")[1].split()[0])
    assert peak_kib < 800 * 1024, f"peak {peak_kib // 1024} MiB"


def test_shape_inference_runs_with_glibc_fastbins_off_and_restores_them(monkeypatch):
    """onnx's inference runs inside fastbins_off (mallopt M_MXFAST 0, then glibc's default 128); without
    a mallopt (another libc) it runs as it is, with the same shapes."""
    from segcost.frontends.onnx import load_model
    from segcost.samples.scale import deep
    from segcost.shapes import propagation

    calls = []

    def mallopt(parameter, value):
        calls.append((parameter, value))
        return 1

    monkeypatch.setattr(propagation, "_mallopt", lambda: mallopt)
    with_mallopt = load_model(deep(9)).tensors
    assert calls and calls[::2] == [(1, 0)] * (len(calls) // 2) and calls[1::2] == [(1, 128)] * (len(calls) // 2)
    monkeypatch.setattr(propagation, "_mallopt", lambda: None)
    assert load_model(deep(9)).tensors == with_mallopt


@pytest.mark.parametrize("from_file", [False, True])
def test_reshape_to_a_constant_target_is_inferred_without_propagation(data_prop_calls, tmp_path, from_file):
    """A Reshape target held by a Constant node (the IR reads it as an initializer) or by an initializer needs
    no values, whether the loader's copy of the graph is a message or the file's serialized nodes."""
    nodes = [helper.make_node("Constant", [], ["target"], value=numpy_helper.from_array(np.array([1, -1], np.int64))),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
             helper.make_node("Reshape", ["flat", "back"], ["y"], name="unflatten")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
                   [numpy_helper.from_array(np.array([1, 4, 48], np.int64), "back")])
    if from_file:
        onnx.save(model, tmp_path / "m.onnx")
        graph = opener(tmp_path / "m.onnx")()
    else:
        graph = load_model(model)
    assert data_prop_calls and not any(data_prop_calls)
    assert graph.shape("y") == (1, 4, 48)

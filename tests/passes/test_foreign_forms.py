"""`optimize` on valid model forms other exporters write: the written model must be valid and run the same.

Each case is a form segcost's own tests did not produce (found by running segcost on models
from outside the project): a dim_value -1 batch (paddle2onnx), a graph output that is an
initializer, graph input or Constant, IR-3 models (initializers listed as inputs), and
initializers that are also graph inputs at IR ≥ 4 (torch keep_initializers_as_inputs=True).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.ir.feeds import random_feeds
from segcost.pipeline import optimize_model


def _conv_model(batch, opset: int = 17, ir_version: int = 8, extra_outputs=(), nodes=(), initializer_inputs=False,
                batchnorm=False):
    """x -> Conv(w) [-> BatchNormalization(s, b, m, v)] -> Relu -> y; `initializer_inputs` lists every weight as
    a graph input too (IR 3's rule; torch's keep_initializers_as_inputs=True at IR >= 4)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(np.linspace(-1, 1, 4 * 3 * 9, dtype=np.float32).reshape(4, 3, 3, 3), "w")]
    layers = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    if batchnorm:
        weights += [numpy_helper.from_array(values.astype(np.float32), name) for name, values in (
            ("s", rng.random(4) + 0.5), ("b", rng.standard_normal(4)), ("m", rng.standard_normal(4)),
            ("v", rng.random(4) + 0.5))]
        layers.append(helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"))
    layers.append(helper.make_node("Relu", [layers[-1].output[0]], ["y"], name="relu"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])]
    if initializer_inputs:
        inputs += [helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in weights]
    graph = helper.make_graph(
        [*layers, *nodes], "g", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 16, 16]), *extra_outputs], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def test_random_feeds_treat_a_negative_batch_as_symbolic():
    """paddle2onnx writes a dynamic batch as dim_value -1: it runs at batch 1 (was: numpy's 'negative dimensions')."""
    model = _conv_model(-1)
    graph = load_model(model)
    feeds = random_feeds(model, graph)
    assert feeds["x"].shape == (1, 3, 16, 16)


def test_optimize_float_and_int8_on_a_negative_batch():
    from segcost.quant.quantize import QuantizeOptions

    result = optimize_model(load_model(_conv_model(-1)))
    onnx.checker.check_model(result.model, full_check=True)
    assert result.max_abs_diff is not None
    int8 = optimize_model(load_model(_conv_model(-1)), int8=QuantizeOptions(calibration="synthetic", calib_size=1))
    assert any(node.op_type == "QuantizeLinear" for node in int8.model.graph.node)


def _constant_output():
    value = numpy_helper.from_array(np.arange(4, dtype=np.float32), "k")
    return [helper.make_node("Constant", [], ["k"], value=value, name="const")]


@pytest.mark.parametrize("output, nodes", [
    ("w", ()),                  # an initializer (the weight itself)
    ("x", ()),                  # a graph input, passed through
    ("k", _constant_output()),  # a Constant node's output
], ids=["initializer", "graph-input", "constant"])
def test_a_graph_output_that_is_not_computed_keeps_its_type(output, nodes):
    """Written outputs are typed (was: onnx.checker 'Field type of value_info is required' for an initializer)."""
    declared = {"w": [4, 3, 3, 3], "x": [1, 3, 16, 16], "k": [4]}[output]
    model = _conv_model(1, extra_outputs=[helper.make_tensor_value_info(output, TensorProto.FLOAT, declared)],
                        nodes=nodes)
    onnx.checker.check_model(model, full_check=True)
    result = optimize_model(load_model(model))
    onnx.checker.check_model(result.model, full_check=True)
    written = {value.name: value.type.tensor_type for value in result.model.graph.output}
    assert written[output].elem_type == TensorProto.FLOAT
    assert [dim.dim_value for dim in written[output].shape.dim] == declared


@pytest.mark.parametrize("opset", [7, 9])
def test_an_ir3_model_is_written_valid(opset):
    """IR 3 (every initializer also an input) is written at IR 4 without the initializer inputs, float and int8
    (was: onnx.checker 'w in initializer but not in graph input')."""
    from segcost.quant.quantize import QuantizeOptions

    model = _conv_model(1, opset=opset, ir_version=3, initializer_inputs=True, batchnorm=True)
    onnx.checker.check_model(model, full_check=True)
    result = optimize_model(load_model(model))
    assert result.model.ir_version == 4 and [value.name for value in result.model.graph.input] == ["x"]
    assert {op.version for op in result.model.opset_import if op.domain == ""} == {opset}
    onnx.checker.check_model(result.model, full_check=True)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4   # it runs in onnxruntime, same outputs
    int8 = optimize_model(load_model(model), int8=QuantizeOptions(calibration="synthetic", calib_size=1))
    onnx.checker.check_model(int8.model, full_check=True)   # the quantizer raises the opset to 13 for QDQ


def test_initializers_listed_as_inputs_are_folded_and_the_note_names_them(tmp_path, run_cli):
    """IR >= 4 initializers that are also inputs (torch keep_initializers_as_inputs=True) are folded as constants;
    the written model does not take them and one note line names exactly those (was: silently dropped)."""
    path, output = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(_conv_model(1, initializer_inputs=True, batchnorm=True), path)
    code, out, err = run_cli("optimize", str(path), "-o", str(output))
    assert code == 0
    assert "fused 1 Conv-BatchNormalization" in out
    written = [value.name for value in onnx.load(output).graph.input]
    assert written == ["x"]
    notes = [line for line in err.splitlines() if "overridable defaults" in line]
    assert notes == ["segcost: note: 5 graph input(s) that are also initializers (overridable defaults: w, s, b, m, v) "
                     "were treated as constants, folded where a fusion applies, and are not inputs of the written "
                     "model"]


def test_no_note_for_an_ir3_model_or_plain_initializers(tmp_path, run_cli):
    """IR 3 lists every initializer as an input by rule (onnxruntime treats them as constants): no note."""
    for model in (_conv_model(1, opset=9, ir_version=3, initializer_inputs=True, batchnorm=True),
                  _conv_model(1, batchnorm=True)):
        path = tmp_path / "m.onnx"
        onnx.save(model, path)
        code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
        assert code == 0 and "overridable" not in err

"""The optimize numeric check's tolerance follows the output dtype (breaker 2: float16 Conv-BN refused)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.pipeline import NumericsError, compare_outputs, relative_tolerance


def _conv_bn_stack(dtype: int, layers: int = 6, seed: int = 0) -> onnx.ModelProto:
    """`layers` × (Conv 3x3 → BatchNorm with trained-looking statistics → Relu), then a 1x1 Conv; in `dtype`."""
    rng = np.random.default_rng(seed)
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    inits, nodes, x, channels = [], [], "input", 3

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array).astype(np_dtype), name))
        return name

    for index in range(layers):
        w = const(f"w{index}", rng.standard_normal([16, channels, 3, 3]) / np.sqrt(9 * channels))
        bn = [const(f"bn{index}_{part}", values) for part, values in (
            ("scale", rng.uniform(0.5, 2, 16)), ("bias", rng.uniform(-1, 1, 16)),
            ("mean", rng.uniform(-1, 1, 16)), ("var", rng.uniform(0.5, 2, 16)))]
        nodes += [helper.make_node("Conv", [x, w], [f"c{index}"], name=f"conv{index}", pads=[1] * 4),
                  helper.make_node("BatchNormalization", [f"c{index}", *bn], [f"b{index}"], name=f"bn{index}"),
                  helper.make_node("Relu", [f"b{index}"], [f"r{index}"], name=f"relu{index}")]
        x, channels = f"r{index}", 16
    nodes.append(helper.make_node("Conv", [x, const("head", rng.standard_normal([5, 16, 1, 1]) / 4)], ["out"],
                                  name="head"))
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("input", dtype, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", dtype, [1, 5, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_relative_tolerance_follows_the_dtype():
    assert relative_tolerance(np.dtype(np.float32)) == 1e-5
    assert relative_tolerance(np.dtype(np.float16)) == pytest.approx(16 * 2.0 ** -10)
    assert relative_tolerance(np.dtype(np.float64)) == 1e-5


def test_optimize_accepts_a_float16_conv_bn_model(run_cli, tmp_path):
    onnx.save_model(_conv_bn_stack(TensorProto.FLOAT16), tmp_path / "m.onnx")
    code, out, err = run_cli("optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"))
    assert code == 0, err   # "differs by up to 0.000977 (tolerance 0.000111)" before
    assert "BatchNormalization" not in {node.op_type for node in onnx.load(tmp_path / "o.onnx").graph.node}


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT16, TensorProto.FLOAT])
def test_a_wrong_fold_still_fails_and_names_no_check(dtype):
    original = _conv_bn_stack(dtype)
    broken = onnx.ModelProto()
    broken.CopyFrom(original)
    bias = next(init for init in broken.graph.initializer if init.name == "bn2_bias")
    values = numpy_helper.to_array(bias).copy()
    values[3] += 0.5   # one channel's BN shift wrong: what a bad fold does
    bias.CopyFrom(numpy_helper.from_array(values, "bn2_bias"))
    with pytest.raises(NumericsError, match="--no-check"):
        compare_outputs(original, broken, load_model(original))


@pytest.mark.parametrize("bad", [np.nan, -2.0], ids=["nan-variance", "negative-variance"])
def test_a_fold_that_makes_an_output_non_finite_fails(bad):
    """max|a - b| is NaN when the optimized output holds NaN, and NaN > limit is False: it used to pass."""
    original = _conv_bn_stack(TensorProto.FLOAT)
    broken = onnx.ModelProto()
    broken.CopyFrom(original)
    var = next(init for init in broken.graph.initializer if init.name == "bn2_var")
    values = numpy_helper.to_array(var).copy()
    values[3] = bad   # sqrt(var + eps) is NaN: the outputs turn NaN
    var.CopyFrom(numpy_helper.from_array(values, "bn2_var"))
    with pytest.raises(NumericsError, match="NaN/±Inf in other places"):
        compare_outputs(original, broken, load_model(original))


def test_nan_in_the_same_places_before_and_after_is_not_a_difference():
    original = _conv_bn_stack(TensorProto.FLOAT)
    var = next(init for init in original.graph.initializer if init.name == "bn5_var")
    values = numpy_helper.to_array(var).copy()
    values[0] = np.nan   # the model itself computes NaN in one channel
    var.CopyFrom(numpy_helper.from_array(values, "bn5_var"))
    assert compare_outputs(original, original, load_model(original)) == 0.0

"""--pow2-scales: every scale of the written model is a power of two (breaker6 R3).

onnxruntime gives an int32 bias (scale s_x·s_w) to Conv, Gemm and the normalizations; only
Conv/Gemm biases used to be requantized, so a BatchNormalization that cannot be folded (it
follows a Relu) kept a beta scale of 0.00228 (log2 −8.77).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from segcost.frontends.onnx import load_model
from segcost.passes.qdq import non_pow2_scales
from segcost.pipeline import run_onnxruntime
from segcost.quant.quantize import QuantizeOptions, quantize_graph

SHAPE = [1, 3, 16, 16]


def _scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every Q/DQ scale of the model as written and read back."""
    model = onnx.load_from_string(model.SerializeToString())
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return {node.name: constants[node.input[1]] for node in model.graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear")}


def _norm_model(qm, op_type: str) -> onnx.ModelProto:
    """Conv → Relu → {op_type} (random statistics, not foldable after the Relu) → Conv."""
    b = qm.Builder(seed=2)
    hidden = b.op("Relu", [b.conv("a", "input", 3, 8, kernel=3)], "a_relu")
    rng = np.random.default_rng(5)
    b.const("gamma", rng.uniform(0.5, 2, 8).astype(np.float32))
    b.const("beta", rng.uniform(-1, 1, 8).astype(np.float32))
    if op_type == "BatchNormalization":
        b.const("mean", rng.uniform(0, 1, 8).astype(np.float32))
        b.const("var", rng.uniform(0.5, 2, 8).astype(np.float32))
        b.op(op_type, [hidden, "gamma", "beta", "mean", "var"], "norm")
    else:
        b.op(op_type, [hidden, "gamma", "beta"], "norm")
    b.conv("out", "norm", 8, 4, kernel=3)
    return b.model({"input": SHAPE}, {"out": [1, 4, 16, 16]})


@pytest.mark.parametrize("op_type", ["BatchNormalization", "InstanceNormalization"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_every_scale_of_the_written_model_is_a_power_of_two(qm, tmp_path, op_type, per_channel):
    data = np.random.default_rng(1).random([4, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    options = dict(calibration=str(tmp_path / "calib.npy"), calib_size=4, target="tda4vm", per_channel=per_channel)
    graph = load_model(_norm_model(qm, op_type))
    plain = quantize_graph(graph, QuantizeOptions(**options))
    result = quantize_graph(load_model(_norm_model(qm, op_type)), QuantizeOptions(**options, pow2_scales=True))
    assert op_type in {node.op_type for node in result.model.graph.node}
    assert any(node.op_type == "DequantizeLinear" and node.input[0].startswith("beta")
               for node in result.model.graph.node)   # the quantizer did give the bias an int32 DequantizeLinear
    scales = _scales(result.model)
    odd = {name: float(scale.ravel()[0]) for name, scale in scales.items()
           if not np.all(np.log2(scale.astype(np.float64)) == np.round(np.log2(scale.astype(np.float64))))}
    assert odd == {}
    assert result.problems == [] and non_pow2_scales(result.graph) == []
    feeds = {"input": data[:1]}
    want = run_onnxruntime(plain.float_model, feeds)[0].astype(np.float64)

    def sqnr(model) -> float:
        return float(10 * np.log10(np.sum(want ** 2) / np.sum((want - run_onnxruntime(model, feeds)[0]) ** 2)))

    assert sqnr(result.model) > sqnr(plain.model) - 6   # one bit at most lost to rounding scales up

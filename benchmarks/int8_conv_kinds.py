"""int8/fp32 onnxruntime CPU time per conv kind, beside the int8 speed prediction (segcost.quant.mixed_cost).

For each kind (dense 3×3, pointwise 1×1, depthwise 3×3) a chain of 8 identical Conv+Relu
layers on 1×64×64×80 with random weights, fused and quantized as `optimize --int8` does
(cpu target, 2 synthetic calibration images); prints the predicted (`segcost.quant.speed.predict`)
and measured (`segcost.quant.speed.measure`: 1 thread, median process CPU time of --runs after
3 warm-ups) fp32 and int8 times. Measured here (AMD EPYC, AVX-512 VNNI, onnxruntime 1.32):
int8/fp32 dense 0.29, pointwise 0.37, depthwise 1.61 — int8 depthwise convs are slower than
float ones. The rates the model uses (segcost.quant.cpu_int8.CPU_INT8_RATES) are measured per
layer on real models by benchmarks/int8_layer_rates.py.

    python benchmarks/int8_conv_kinds.py [--runs 15]
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import segcost.frontends.onnx as onnx_frontend
from segcost.pipeline import optimize, static_view
from segcost.quant.quantize import QuantizeOptions, quantize_graph
from segcost.quant.speed import measure, predict

CHANNELS, HEIGHT, WIDTH, LAYERS = 64, 64, 80, 8
KINDS = {"dense": (3, 1, CHANNELS), "pointwise": (1, 1, CHANNELS), "depthwise": (3, CHANNELS, 1)}  # kernel, group, c_in


def chain(kind: str, rng: np.random.Generator) -> onnx.ModelProto:
    """LAYERS Conv+Relu of one kind, CHANNELS in and out, 'same' padding."""
    kernel, group, c_in = KINDS[kind]
    nodes, inits, tensor = [], [], "input"
    for index in range(LAYERS):
        weight = rng.standard_normal((CHANNELS, c_in, kernel, kernel)) / np.sqrt(c_in * kernel * kernel)
        inits += [numpy_helper.from_array(weight.astype(np.float32), f"w{index}"),
                  numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{index}")]
        nodes += [helper.make_node("Conv", [tensor, f"w{index}", f"b{index}"], [f"c{index}"], name=f"c{index}",
                                   group=group, pads=[kernel // 2] * 4),
                  helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"r{index}")]
        tensor = f"r{index}"
    shape = [1, CHANNELS, HEIGHT, WIDTH]
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for kind in KINDS:
        graph = optimize(onnx_frontend.load_model(chain(kind, rng))).graph
        quantized = quantize_graph(graph, QuantizeOptions(calib_size=2))
        report = predict(graph, static_view(graph), static_view(quantized.graph), "cpu")
        feeds = {"input": rng.standard_normal((1, CHANNELS, HEIGHT, WIDTH)).astype(np.float32)}
        measure(report, quantized.float_model, quantized.model, feeds, runs=args.runs)
        print(f"{kind:<10} predicted fp32 {report.predicted_fp32_ms:.2f} ms, int8 {report.predicted_int8_ms:.2f} ms "
              f"(int8/fp32 {report.predicted_ratio:.2f}) | measured fp32 {report.measured_fp32_ms:.2f} ms, int8 "
              f"{report.measured_int8_ms:.2f} ms (int8/fp32 {report.measured_ratio:.2f})")


if __name__ == "__main__":
    main()

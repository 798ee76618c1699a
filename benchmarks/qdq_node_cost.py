"""What a QuantizeLinear + DequantizeLinear pair costs in onnxruntime on this CPU (segcost.quant.mixed_cost).

Two chains of N Abs nodes on one tensor, the second with a QuantizeLinear -> DequantizeLinear
pair (uint8, per-tensor) before each Abs; the difference of their median process CPU times
per run, divided by N, is one pair's cost. Run at three sizes: the fixed per-node cost shows
at the small one, the bandwidth at the large one. 1 intra-op thread, the session options of
every segcost measurement, 3 warm-up runs, median of --runs. Measured here (AMD EPYC, AVX-512,
onnxruntime 1.32): 160 elements 0.4 µs, 20,480 elements 3.3 µs, 327,680 elements 51 µs per pair
(the Abs nodes alone: 0.3, 1.6, 26.5 µs) — no per-layer overhead near the cpu profile's 25 µs.

    python benchmarks/qdq_node_cost.py [--nodes 40] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from segcost.targets.measure import session_options

SHAPES = ([1, 8, 4, 5], [1, 16, 32, 40], [1, 64, 64, 80])


def chain(shape: list[int], nodes: int, qdq: bool) -> onnx.ModelProto:
    """`nodes` Abs in a row, each preceded by QuantizeLinear -> DequantizeLinear when `qdq`."""
    graph_nodes, tensor = [], "x"
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "zero")]
    for index in range(nodes):
        if qdq:
            graph_nodes += [helper.make_node("QuantizeLinear", [tensor, "scale", "zero"], [f"q{index}"]),
                            helper.make_node("DequantizeLinear", [f"q{index}", "scale", "zero"], [f"d{index}"])]
            tensor = f"d{index}"
        graph_nodes.append(helper.make_node("Abs", [tensor], [f"a{index}"]))
        tensor = f"a{index}"
    graph = helper.make_graph(graph_nodes, "qdq_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cpu_ms(model: onnx.ModelProto, feeds: dict[str, np.ndarray], runs: int) -> float:
    session = ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.process_time()
        session.run(None, feeds)
        times.append(1000 * (time.process_time() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    for shape in SHAPES:
        feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        plain = cpu_ms(chain(shape, args.nodes, False), feeds, args.runs)
        with_qdq = cpu_ms(chain(shape, args.nodes, True), feeds, args.runs)
        print(f"{int(np.prod(shape)):>8,} elements: Q+DQ pair {1000 * (with_qdq - plain) / args.nodes:.1f} µs "
              f"(Abs alone {1000 * plain / args.nodes:.1f} µs per node)")


if __name__ == "__main__":
    main()

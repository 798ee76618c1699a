"""An independent MAC count for ONNX-only models: the shapes onnxruntime actually produces.

Every node output of a copy of the model is made a graph output, the copy runs once in
onnxruntime (no graph optimization, so nodes stay as written) on a random input, and MACs are
counted from the runtime arrays' shapes — no onnx shape inference, no segcost code:

* Conv: `out.size · W.shape[1] · prod(W.shape[2:])` (W.shape[1] is Cin/group);
* ConvTranspose: `x.size · W.shape[1] · prod(W.shape[2:])` (W.shape[1] is Cout/group);
* MatMul: `out.size · A.shape[-1]`; Gemm: `out.size · K` with K from A and transA.
"""

from __future__ import annotations

from math import prod

import numpy as np
import onnx


def runtime_macs(model_path: str, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """{op_type: MACs} from one onnxruntime run of `model_path` at `input_shapes` (float32 random inputs)."""
    import onnxruntime

    model = onnx.load(model_path)
    graph = model.graph
    initializers = {init.name: tuple(init.dims) for init in graph.initializer}
    existing = {output.name for output in graph.output}
    for node in graph.node:
        for name in node.output:
            if name and name not in existing:
                graph.output.append(onnx.ValueInfoProto(name=name))
                existing.add(name)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in input_shapes.items()}
    names = [output.name for output in session.get_outputs()]
    shapes = {name: tuple(np.shape(value)) for name, value in zip(names, session.run(names, feeds))}
    shapes.update(initializers)
    shapes.update((name, value.shape) for name, value in feeds.items())
    counts: dict[str, int] = {}
    for node in graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") or op not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        out, a = shapes[node.output[0]], shapes[node.input[0]]
        if op == "Conv":
            w = shapes[node.input[1]]
            macs = prod(out) * w[1] * prod(w[2:])
        elif op == "ConvTranspose":
            w = shapes[node.input[1]]
            macs = prod(a) * w[1] * prod(w[2:])
        elif op == "MatMul":
            macs = prod(out) * a[-1]
        else:
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            macs = prod(out) * (a[0] if trans_a else a[1])
        counts[op] = counts.get(op, 0) + int(macs)
    return counts

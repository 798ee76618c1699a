"""Bound a model's memory before onnxruntime runs it: the one gate in front of every run of a user's model.

onnxruntime allocates what the graph asks for: a 152-byte file that Expands 1x1 to
1x48x4096x4096 takes 3 GiB, and a Loop with a constant trip count of 10^12 never ends. So
before any segcost command runs a model (`optimize`'s numeric check and its int8 calibration,
`profile`, `calibrate`, a sweep's int8 calibration and onnxruntime latency), the graph that
will run must pass `bound_run_memory`:

* every input and node output has a static inferred shape (a data-dependent shape is known
  only when it is too late);
* no tensor is over MAX_RUN_TENSOR_BYTES (1 GiB), and neither is the scratch buffer a kernel
  allocates beyond its outputs (segcost.targets.workspace: a three-operand Einsum's pairwise
  partial result, ConvTranspose's col2im buffer, the im2col of ConvInteger, QLinearConv and a
  Conv between DequantizeLinear nodes, Resize's antialias first pass and cubic cache,
  GridSample's bilinear sampling plan, TopK's per-thread index buffer, NonZero's coordinate
  reserve and Unique's per-element tables), which is in no shape of the graph;
* the peak of live activations over the graph's order (analyzer.memory: a buffer is freed
  after its last use, as onnxruntime's planner does) is at most MAX_RUN_PEAK_BYTES (2 GiB);
* no node has a subgraph (If/Loop/Scan) or calls a model-local function: their inner
  tensors are not inferred, and a Loop's trip count bounds neither memory nor time.

`bounded_session` is the gate and the session in one call; segcost.ir.runtime.open_session is
only called from it and from the functions listed, with the bound that covers each, in
tests/test_runtime_sessions.py (a new caller fails that test until it says how its run is bounded).
"""

from __future__ import annotations

from math import prod

import onnx

from segcost.analyzer.memory import peak_activation_bytes
from segcost.errors import InputError
from segcost.ir import Graph, is_static_shape
from segcost.ir.runtime import open_session
from segcost.targets.workspace import typed_bytes, workspace_bytes

MAX_RUN_TENSOR_BYTES = 1 << 30   # any one tensor a run computes
MAX_RUN_PEAK_BYTES = 2 << 30     # live activations at once, by liveness over the graph's order

__all__ = ["MAX_RUN_PEAK_BYTES", "MAX_RUN_TENSOR_BYTES", "bound_run_memory", "bounded_session"]


def bound_run_memory(graph: Graph, what: str, hint: str = "") -> int:
    """Peak activation bytes of running `graph` in onnxruntime, checked against the bounds (module docstring).

    Call it on the graph that will run, with static shapes, before onnxruntime sees it.
    `what` starts every refusal ("numeric check", "profile"); `hint` ends it ("; use --no-check ...").

    Raises:
        InputError: a subgraph or function call, a tensor without a static shape, a tensor or a
            kernel's scratch buffer over MAX_RUN_TENSOR_BYTES or a liveness peak over
            MAX_RUN_PEAK_BYTES (named in the message).
    """
    functions = {(function.domain, function.name) for function in graph.info.functions}
    constants = set(graph.initializers)
    sizes: dict[str, int] = {}
    order = list(graph.topological_order())
    nodes = [graph.node(key) for key in order]
    for key, node in zip(order, nodes):
        label = f"node {key!r} ({node.op_type})"   # the IR key: the node's name, or one made for an unnamed node
        if (node.domain, node.op_type) in functions or any(
                isinstance(value, onnx.GraphProto) or (isinstance(value, list) and value
                                                       and isinstance(value[0], onnx.GraphProto))
                for value in node.attrs.values()):
            raise InputError(f"{what}: {label} has a subgraph or function body whose memory and run time cannot "
                             f"be bounded before running{hint}")
    for name in [*graph.inputs, *(tensor for node in nodes for tensor in node.outputs)]:
        if not name or name in constants or name in sizes:
            continue
        shape = graph.shape(name)
        if not is_static_shape(shape) or any(dim < 0 for dim in shape):
            inferred = f" (inferred: {list(shape)})" if shape is not None else ""
            raise InputError(f"{what}: tensor {name!r} has no static shape{inferred}, so its memory cannot "
                             f"be bounded before running{hint}")
        size = sizes[name] = typed_bytes(graph, name, prod(shape))
        if size > MAX_RUN_TENSOR_BYTES:
            raise InputError(f"{what}: tensor {name!r} {list(shape)} needs {size:,} bytes, over the "
                             f"{MAX_RUN_TENSOR_BYTES:,}-byte bound per tensor{hint}")
    for key, node in zip(order, nodes):
        scratch = workspace_bytes(graph, node)
        if scratch > MAX_RUN_TENSOR_BYTES:
            raise InputError(f"{what}: node {key!r} ({node.op_type}) makes onnxruntime allocate a {scratch:,}-byte "
                             f"scratch buffer, over the {MAX_RUN_TENSOR_BYTES:,}-byte bound per tensor{hint}")
    peak = peak_activation_bytes(graph, nodes, lambda name: sizes.get(name, 0), constants)
    if peak > MAX_RUN_PEAK_BYTES:
        raise InputError(f"{what}: the graph needs {peak:,} bytes of live activations at its peak, over the "
                         f"{MAX_RUN_PEAK_BYTES:,}-byte bound{hint}")
    return peak


def bounded_session(graph: Graph, model: onnx.ModelProto | bytes, options=None, what: str = "onnxruntime run",
                    hint: str = ""):
    """An onnxruntime CPU session of `model`, the serialized `graph`, after bound_run_memory(graph) passed.

    Raises:
        InputError: from bound_run_memory, before onnxruntime sees the model.
    """
    bound_run_memory(graph, what, hint)
    return open_session(model, options)

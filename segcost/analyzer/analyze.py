"""Walk the IR in topological order, apply the cost rule of each node, sum exactly."""

from __future__ import annotations

from math import prod

from segcost.analyzer.grouping import group_layers
from segcost.analyzer.memory import peak_activation_bytes
from segcost.analyzer.registry import (
    COUNTED, SHAPE_UNKNOWN, UNSUPPORTED, ZERO_BY_CONVENTION, OpCost, OpView, Rule, find_rule,
)
from segcost.analyzer.result import (
    AnalysisResult, Coverage, LayerCost, ModelSummary, TensorSummary, Totals,
)
from segcost.errors import InputError, ShapeError
from segcost.ir import Graph, Shape, dtype_size
from segcost.shapes import symbolic_inputs


def analyze(graph: Graph) -> AnalysisResult:
    """Per-layer and total MACs, flops, params and bytes of `graph` (exact ints)."""
    _require_static_inputs(graph)
    order = graph.topological_order()
    nodes = dict(graph.dag.nodes(data="node"))
    scheduled = [nodes[key] for key in order]
    constants = set(graph.initializers)
    for node in scheduled:
        if node.op_type == "Constant" and not node.domain:
            constants.update(node.outputs)
    # graph.shape() and the tensors' byte sizes as dicts: each is read several times per node
    shapes = _shape_table(graph)
    shape_of = shapes.get
    nbytes = _byte_sizes(graph, shapes).get
    rules: dict[tuple[str, str], Rule | None] = {}
    layers: list[LayerCost] = []
    coverage = Coverage()
    warnings: list[str] = []
    seen_constants: set[str] = set()
    for key, node in zip(order, scheduled):
        inputs, outputs = node.inputs, node.outputs
        view = OpView(key, node, tuple([shape_of(tensor) if tensor else None for tensor in inputs]),
                      tuple([shape_of(tensor) if tensor else None for tensor in outputs]),
                      tuple([tensor in constants for tensor in inputs]))
        rule_key = (node.domain, node.op_type)
        rule = rules[rule_key] if rule_key in rules else rules.setdefault(rule_key, find_rule(*rule_key))
        try:
            cost = rule(view) if rule is not None else _UNSUPPORTED
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError) as error:
            # Rules trust the ONNX spec's attribute types and arities; a file that breaks them
            # is bad input, reported for the node rather than as a crash.
            raise InputError(f"node {key!r} ({node.op_type}): malformed attributes or inputs "
                             f"({type(error).__name__}: {error})") from None
        _record_status(coverage, cost.status, node.op_type, key)
        output_shape = view.output_shape(0)
        if cost.output_shape is not None:
            if output_shape is not None and tuple(cost.output_shape) != tuple(output_shape):
                warnings.append(f"{key}: onnx shape inference gives {list(output_shape)}, the {node.op_type} "
                                f"formula {list(cost.output_shape)}; the formula is used")
            output_shape = cost.output_shape
        params = weight_bytes = activation_bytes = 0
        for tensor in inputs:
            if tensor in constants:
                if tensor not in seen_constants:  # a weight counts once, at its first consumer
                    seen_constants.add(tensor)
                    init = graph.initializers.get(tensor)
                    if init is not None:
                        params += init.size
                        weight_bytes += init.nbytes
                    else:  # a Constant node's output
                        params += _elements(shape_of(tensor))
                        weight_bytes += nbytes(tensor, 0)
            elif tensor:
                activation_bytes += nbytes(tensor, 0)
        for tensor in outputs:
            if tensor:
                activation_bytes += nbytes(tensor, 0)
        layers.append(LayerCost(
            name=key, op_type=node.op_type, domain=node.domain, kind=cost.kind, group=cost.group,
            kernel=list(cost.kernel) if cost.kernel is not None else None,
            stride=list(cost.stride) if cost.stride is not None else None,
            inputs=list(inputs), outputs=list(outputs),
            input_shapes=[list(shape) if shape is not None else None for shape in view.input_shapes],
            output_shape=list(output_shape) if output_shape is not None else None,
            macs=cost.macs, flops=2 * cost.macs + cost.flops,
            bias_flops=cost.flops if cost.macs else 0,
            params=params, weight_bytes=weight_bytes, activation_bytes=activation_bytes, status=cost.status,
        ))
    totals = Totals(
        macs=sum(layer.macs for layer in layers),
        flops=sum(layer.flops for layer in layers),
        params=sum(layer.params for layer in layers),
        weight_bytes=sum(layer.weight_bytes for layer in layers),
        activation_bytes=sum(layer.activation_bytes for layer in layers),
        peak_activation_bytes=peak_activation_bytes(graph, scheduled, lambda tensor: nbytes(tensor, 0), constants),
        nodes=len(layers),
    )
    totals.gmacs = round(totals.macs / 1e9, 4)
    shape_note = graph.info.metadata_props.get("segcost.shape_inference")
    if shape_note:
        warnings.insert(0, f"shape inference ran non-strict ({shape_note})")
    warnings[:0] = [conflict.message() for conflict in graph.info.shape_conflicts]
    return AnalysisResult(
        model=_model_summary(graph), totals=totals, coverage=coverage, layers=layers,
        by_op_type=group_layers(layers, "op_type"), warnings=warnings,
    )


_UNSUPPORTED = OpCost(status=UNSUPPORTED)


def _shape_table(graph: Graph) -> dict[str, Shape]:
    """{tensor: graph.shape(tensor)} for every tensor that has a shape."""
    shapes = {name: init.shape for name, init in graph.initializers.items()}
    shapes.update((name, info.shape) for name, info in graph.tensors.items() if info.shape is not None)
    return shapes


def _byte_sizes(graph: Graph, shapes: dict[str, Shape]) -> dict[str, int]:
    """{tensor: bytes} for every tensor of known shape (elements × the size of graph.dtype)."""
    sizes = {name: init.nbytes for name, init in graph.initializers.items()}  # int dims by construction
    for name, info in graph.tensors.items():
        shape = shapes.get(name)
        if shape is not None and all(isinstance(dim, int) for dim in shape):
            init = graph.initializers.get(name)
            sizes[name] = prod(shape) * dtype_size(info.dtype or (init.dtype if init is not None else 0))
        else:
            sizes.pop(name, None)
    return sizes


def _record_status(coverage: Coverage, status: str, op_type: str, key: str) -> None:
    if status == COUNTED:
        coverage.counted += 1
    elif status == ZERO_BY_CONVENTION:
        coverage.zero_by_convention += 1
    elif status == SHAPE_UNKNOWN:
        coverage.shape_unknown.append(f"{op_type}:{key}")
    else:
        coverage.unsupported.append(f"{op_type}:{key}")
        coverage.unknown_ops[op_type] = coverage.unknown_ops.get(op_type, 0) + 1


def _elements(shape) -> int:
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        return 0
    return prod(shape)


def _require_static_inputs(graph: Graph) -> None:
    symbolic = symbolic_inputs(graph)
    if not symbolic:
        return
    name, axis, symbol = symbolic[0]
    shape = graph.shape(name)
    if shape is None:
        raise ShapeError(f"input {name!r} has no shape in the model; pass --input-shape {name}=1x3xHxW")
    example = "x".join(str(dim) if isinstance(dim, int) and dim > 0 else "1" for dim in shape)
    raise ShapeError(f"input {name!r} has symbolic dimension {symbol!r} at axis {axis}; "
                     f"pass --input-shape {name}={example} (with your sizes), or use `segcost analyze "
                     f"--symbolic` for MACs as a formula of it")


def _dtype_name(dtype: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(dtype).lower()
    except ValueError:
        return f"type{dtype}"


def _model_summary(graph: Graph) -> ModelSummary:
    def summary(name: str) -> TensorSummary:
        shape = graph.shape(name)
        return TensorSummary(name, list(shape) if shape is not None else None, _dtype_name(graph.dtype(name)))

    return ModelSummary(
        path=graph.info.path, opset=graph.info.opset,
        producer=" ".join(filter(None, [graph.info.producer_name, graph.info.producer_version])),
        inputs=[summary(name) for name in graph.inputs], outputs=[summary(name) for name in graph.outputs],
    )


# Op types whose rules can give MACs; everything else is 0 MACs by convention.
MAC_OP_TYPES = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "FusedConv", "Gemm", "MatMul",
                          "MatMulInteger", "QLinearMatMul", "LSTM", "GRU", "RNN"})


def count_macs(graph: Graph) -> int:
    """Total MACs only — what the PassManager records around each pass, without the full report."""
    total = 0
    for key, data in graph.dag.nodes(data=True):
        node = data["node"]
        if node.op_type not in MAC_OP_TYPES:
            continue
        rule = find_rule(node.domain, node.op_type)
        if rule is None:
            continue
        view = OpView(key=key, node=node,
                      input_shapes=tuple(graph.shape(tensor) if tensor else None for tensor in node.inputs),
                      output_shapes=tuple(graph.shape(tensor) if tensor else None for tensor in node.outputs))
        total += rule(view).macs
    return total

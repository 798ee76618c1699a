"""Cleanup passes: no-op removal, dead-node elimination, constant folding.

Exporters leave Identity/Dropout nodes and — with constant folding off, as needed to keep
BatchNorm for fusion — whole Shape → Gather → Concat → Unsqueeze chains that compute
sizes known at export time. These passes remove them so fusion sees Conv → BN directly
and the cost report lists real layers only.
"""

from __future__ import annotations

import logging

import numpy as np

from segcost.ir import Graph, Initializer
from segcost.passes._infra import PassBase, PassResult
from segcost.passes.fold_size import (
    ELEMENT_BYTES_BOUND,
    MAX_FOLD_GROWTH_BYTES,
    MAX_FOLDED_BYTES,
    MAX_FOLDED_BYTES_PER_PASS,
    fold_growth,
    result_bytes_at_least,
    result_elements,
)
from segcost.shapes import infer_shapes
from segcost.shapes.evaluate import shape_op_value
from segcost.shapes.values import NotExact, compute_values

logger = logging.getLogger(__name__)

__all__ = ["EliminateDeadNodesPass", "EliminateNoOpsPass", "FoldConstantsPass"]

NO_OP_TYPES = ("Identity", "Dropout")
GROWING_NOTE = "not folded (grows the model)"

# Ops folded when every input is constant. Kept to shape/index arithmetic and type changes:
# folding a Conv on constants would be correct but would hide the layer from the report.
# Identity is not evaluated: folding Identity(W) would copy a shared weight into a second
# initializer. An Identity of a constant is bypassed instead (its consumers read W itself).
FOLDABLE_OPS = frozenset({
    "Shape", "Size", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Reshape", "Mul", "Add", "Sub",
    "Div", "Floor", "Ceil", "Sqrt", "Equal", "Where", "Expand", "ConstantOfShape", "Range", "Transpose",
    "Identity", "Constant", "Neg", "Abs", "Max", "Min", "ReduceProd", "Greater", "Less", "Not", "Tile",
    "Flatten", "Split",
})


class EliminateNoOpsPass(PassBase):
    """Remove Identity and inference-mode Dropout nodes, rewiring their consumers.

    Cases:
      1. output not a graph output: consumers read the input instead.
      2. output is a graph output and the input comes from a node used only here: that node
         is renamed to produce the graph output.
      3. otherwise (e.g. graph input → graph output) the node stays: a name must survive.
    """

    name = "eliminate-no-ops"

    def call(self, graph: Graph) -> PassResult:
        removed = []
        for key in graph.topological_order():
            node = graph.node(key)
            if node.op_type not in NO_OP_TYPES or node.domain:
                continue
            if node.op_type == "Dropout" and (len([t for t in node.outputs if t]) > 1 or _dropout_active(graph, node)):
                continue
            source, output = node.inputs[0], node.outputs[0]
            if output not in graph.outputs:
                graph.remove_node(key)
                graph.replace_uses(output, source)
            else:
                producer = graph.producer(source)
                if (producer is None or source in graph.outputs
                        or graph.consumers(source) != [key]):
                    continue
                graph.remove_node(key)
                graph.rename_output(producer, source, output)
            removed.append(key)
        if removed:
            logger.info("removed %d no-op nodes", len(removed))
        return PassResult(graph, bool(removed), [f"removed {len(removed)} Identity/Dropout nodes"] if removed else [])


def _dropout_active(graph: Graph, node) -> bool:
    # Dropout with training_mode=True (input 2) is not a no-op.
    if len(node.inputs) < 3 or not node.inputs[2]:
        return False
    init = graph.initializers.get(node.inputs[2])
    return init is None or bool(np.asarray(init.array).item())


class EliminateDeadNodesPass(PassBase):
    """Remove nodes none of whose outputs reach a graph output, and unused initializers."""

    name = "eliminate-dead-nodes"

    def call(self, graph: Graph) -> PassResult:
        live = set(graph.outputs)
        dead = []
        for key in reversed(graph.topological_order()):
            node = graph.node(key)
            if any(tensor in live for tensor in node.outputs):
                live.update(tensor for tensor in node.all_inputs if tensor)  # subgraph reads included
            else:
                dead.append(key)
        for key in dead:
            graph.remove_node(key)
        unused = [name for name in graph.initializers if name not in live]
        for name in unused:
            del graph.initializers[name]
        notes = []
        if dead:
            notes.append(f"removed {len(dead)} dead nodes")
        if unused:
            notes.append(f"removed {len(unused)} unused initializers")
        return PassResult(graph, bool(dead or unused), notes)


class FoldConstantsPass(PassBase):
    """Replace shape/index computations whose inputs are all known by initializers.

    Cases:
      1. Shape (and Size) of a tensor with a static shape → its dims.
      2. Identity of an initializer → its consumers read the initializer (never a copy).
      3. A foldable op (FOLDABLE_OPS) whose inputs are all initializers → evaluated by the
         loader's shape-chain evaluator (shapes.values: numpy, bit-identical to onnxruntime for
         what it takes), else by onnx.reference, the ONNX reference implementation, rather than
         re-implementing more ops. One evaluator for the loader, analyze's trip counts and here.
    The size of each result is computed from its inputs *before* evaluating
    (passes.fold_size): a result over MAX_FOLDED_BYTES, or past MAX_FOLDED_BYTES_PER_PASS
    for the run, stays a node, with a note naming it and the size. So does a fold that would
    grow the model: a result larger than the constant inputs it replaces (those no other node
    reads) by more than `max_growth` bytes (passes.fold_size.fold_growth; default
    MAX_FOLD_GROWTH_BYTES). `max_growth=None` folds whatever the growth, within the bounds
    above: for a graph that is costed and never written (pipeline.target_pipeline), since the
    runtime folds constant subgraphs itself at session start.
    """

    name = "fold-constants"

    def __init__(self, infer: bool = True, max_growth: int | None = MAX_FOLD_GROWTH_BYTES):
        self.infer = infer  # re-run shape inference after folding (off when the caller does it)
        self.max_growth = max_growth

    def call(self, graph: Graph) -> PassResult:
        folded: list[str] = []
        refused: list[str] = []
        budget = MAX_FOLDED_BYTES_PER_PASS
        for key in graph.topological_order():
            node = graph.node(key)
            if node.domain or node.op_type not in FOLDABLE_OPS:
                continue
            if any(output in graph.outputs for output in node.outputs):
                continue  # a graph output must stay a computed tensor
            if node.op_type == "Identity" and node.inputs and node.inputs[0] in graph.initializers:
                graph.remove_node(key)
                graph.replace_uses(node.outputs[0], node.inputs[0])   # an alias, not a copy
                folded.append(key)
                continue
            values = self._evaluate(graph, node, key, budget, refused)
            if values is None or self._grows(graph, node, key, sum(np.asarray(value).nbytes for value in values
                                                                   if value is not None), refused):
                continue
            graph.remove_node(key)
            for output, value in zip(node.outputs, values):
                if output:
                    array = np.asarray(value)
                    budget -= array.nbytes
                    graph.initializers[output] = Initializer.from_array(output, array)
                    graph.tensors.pop(output, None)
            folded.append(key)
        if folded and self.infer:
            infer_shapes(graph)  # sizes that came from the folded chains are now constants
        notes = [f"folded {len(folded)} constant nodes"] if folded else []
        growing = sum(note.startswith(GROWING_NOTE) for note in refused)
        if growing:
            notes.append(f"kept {growing} constant nodes: folding each would grow the model by over "
                         f"{self.max_growth:,} bytes")
        return PassResult(graph, bool(folded), notes + refused)

    def _grows(self, graph: Graph, node, key: str, result: int, refused: list[str], at_least: bool = False) -> bool:
        """True (and a note) when a `result`-byte result (a lower bound with `at_least`) would grow the model by
        over `max_growth` bytes (fold_size.fold_growth); always False without a `max_growth`."""
        if self.max_growth is None:
            return False
        replaced = sum(graph.initializers[tensor].nbytes for tensor in dict.fromkeys(node.inputs)
                       if tensor in graph.initializers and tensor not in graph.outputs
                       and graph.consumers(tensor) == [key])
        growth = fold_growth(result, replaced, self.max_growth)
        if growth is None:
            return False
        bound = "at least " if at_least else ""
        refused.append(f"{GROWING_NOTE} {key} ({node.op_type}): its result of {bound}{result:,} bytes would grow the "
                       f"model by {bound}{growth:,} bytes over the {replaced:,} bytes of constants it replaces "
                       f"(allowance {self.max_growth:,})")
        logger.info("%s", refused[-1])
        return True

    def _evaluate(self, graph: Graph, node, key: str, budget: int,
                  refused: list[str]) -> list[np.ndarray | None] | None:
        if node.op_type in ("Shape", "Size"):
            value = shape_op_value(node.op_type, graph.shape(node.inputs[0]),
                                   node.attrs.get("start", 0), node.attrs.get("end"))
            return None if value is None else [value]
        if not all(tensor in graph.initializers for tensor in node.inputs if tensor):
            return None
        # An input over the bound is not even read (external data may be gigabytes); every
        # foldable op's result but Gather's is at least as large as its largest input.
        elements = max((graph.initializers[tensor].size for tensor in node.inputs if tensor), default=0)
        if elements * ELEMENT_BYTES_BOUND <= MAX_FOLDED_BYTES:
            arrays = [graph.initializers[tensor].array if tensor else None for tensor in node.inputs]
            predicted = result_elements(node.op_type, arrays, node.attrs)
            if predicted is None:
                return None
            elements = predicted
        nbytes = elements * ELEMENT_BYTES_BOUND
        if nbytes > min(MAX_FOLDED_BYTES, budget):
            limit = "the per-tensor bound" if nbytes > MAX_FOLDED_BYTES else "what is left of the per-pass bound"
            refused.append(f"not folded {key} ({node.op_type}): up to {elements:,} elements "
                           f"({_mib(nbytes)} MiB) exceeds {limit} ({_mib(min(MAX_FOLDED_BYTES, budget))} MiB)")
            logger.info("%s", refused[-1])
            return None
        if self._grows(graph, node, key, result_bytes_at_least(node.op_type, elements), refused, at_least=True):
            return None   # before allocating the result
        if node.op_type == "Constant":
            try:
                return [_densify(node.attrs["sparse_value"])]
            except (ValueError, IndexError, TypeError) as error:   # malformed indices: left to the runtime
                logger.debug("not folding %s: %s", key, error)
                return None
        feeds = {tensor: graph.initializers[tensor].array for tensor in node.inputs if tensor}
        return _evaluate_node(node, feeds, graph.info.opset)


def _densify(sparse) -> np.ndarray:
    """A SparseTensorProto as a dense array (onnx.reference cannot run a sparse Constant).

    Indices are [NNZ] positions in the flattened tensor or [NNZ, rank] coordinates (ONNX
    SparseTensorProto); the size was bounded before this is called.
    """
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values).reshape(-1)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    shape = tuple(int(dim) for dim in sparse.dims)
    dense = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=values.dtype)
    flat = indices.reshape(-1) if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), shape)
    dense[flat] = values
    return dense.reshape(shape)


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):,.1f}"


def _evaluate_node(node, feeds: dict[str, np.ndarray], opset: int) -> list[np.ndarray | None] | None:
    """`node`'s outputs (None for an omitted one) from its input values, or None when neither evaluator can.

    shapes.values first (numpy, exact as onnxruntime); onnx.reference for the ops it refuses.
    """
    from onnx import helper

    proto = helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name or None)
    for attr_name, value in node.attrs.items():
        proto.attribute.append(helper.make_attribute(attr_name, value, attr_type=node.attr_types.get(attr_name)))
    outputs = [name for name in node.outputs if name]
    try:
        values = compute_values(outputs, dict.fromkeys(outputs, proto), dict(feeds), opset or 17)
        return [values[name] if name else None for name in node.outputs]
    except NotExact:
        pass
    # deferred: onnx.reference takes a while to import and only an op numpy does not take needs it
    from onnx.reference import ReferenceEvaluator

    # Wrapped in a model of the graph's own opset: ops changed signature across opsets
    # (Unsqueeze/Squeeze/Slice moved attributes to inputs).
    model = helper.make_model(
        helper.make_graph([proto], "fold",
                          [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype),
                                                         None) for name, value in feeds.items()],
                          [helper.make_empty_tensor_value_info(name) for name in outputs]),
        opset_imports=[helper.make_opsetid("", opset or 17)])
    try:
        results = iter(ReferenceEvaluator(model).run(None, feeds))
        return [next(results) if name else None for name in node.outputs]
    except Exception as error:  # noqa: BLE001 - an op the reference cannot run is simply not folded
        logger.debug("not folding %s: %s", node.name, error)
        return None

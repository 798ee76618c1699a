"""Evaluate the run-time shape computations that `onnx.shape_inference` leaves symbolic.

Legacy torch exports (HF DPT, MaskFormer/Swin) and paddle2onnx models compute Reshape
targets, Pad amounts, Range bounds and Expand shapes from `Shape` of intermediate tensors:
Shape → Gather/Slice → Cast → Div → Concat → Reshape. onnx's data propagation covers a few
of those ops, so a chain with a Cast or a Div stays open and every layer after it has no
shape. With static graph inputs those values are constants; this module computes them
(shapes.values in numpy, onnxruntime for what numpy would not reproduce) and feeds them
back to onnx shape inference, round by round (each round opens the next `Shape` whose
input is now known).

Why not a library end to end (measured on the corpus, tests/corpus): onnxruntime's
`SymbolicShapeInference` needs sympy (not a segcost dependency) and stops with "Incomplete
symbolic shape inference" on DPT, MaskFormer and PP-OCR cls; onnxscript's optimizer is not a
core dependency and leaves 268 MaskFormer tensors open; onnxruntime's basic-level graph
optimization folds the chains but renames or fuses the folded tensors (common-subexpression
elimination, Reshape fusion), so their values cannot be mapped back. What is left here is
the part no library exposes: choosing which tensors are constant given static shapes
(`Shape`/`Size` of a static tensor, then anything computed only from constants). Values
are onnxruntime's (computed in numpy where that is bit-identical) and shapes are onnx's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from math import prod
from typing import TypeGuard, cast

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.ir import Shape, is_static_shape
from segcost.ir.onnx_io import shape_of
from segcost.ir.runtime import open_session, session_options
from segcost.shapes.open_part import Row, open_part, read_rows
from segcost.shapes.values import NotExact, compute_values

# A tensor is evaluated only if it, and every tensor its computation reads, has at most this
# many elements: shape arithmetic is a handful of integers, masks of a window attention a few
# thousand; weights and activations are never computed here.
MAX_ELEMENTS = 1 << 16
MAX_ROUNDS = 256
INT64_MAX = int(np.iinfo(np.int64).max)
# Ops whose value is not a function of their inputs, or that carry subgraphs.
_NOT_EVALUABLE = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                            "Multinomial", "Bernoulli", "If", "Loop", "Scan", "SequenceMap"})

Infer = Callable[[onnx.ModelProto], onnx.ModelProto]
Rewrite = Callable[[onnx.ModelProto, dict[str, np.ndarray]], bool]


def static_shapes(inferred: onnx.ModelProto, decoded: dict[bytes, Shape | None] | None = None,
                  types: dict[str, onnx.ValueInfoProto] | None = None) -> dict[str, Shape | None]:
    """{tensor: shape} from an inferred model's inputs, value_info, outputs and initializers.

    `decoded` caches {serialized TypeProto: shape} across calls: a graph has few distinct
    types, and decoding one field by field costs microseconds (as in ir.read_value_infos).
    `types`, when given, receives {tensor: its ValueInfoProto}.
    """
    shapes: dict[str, Shape | None] = {}
    graph = inferred.graph
    decoded = {} if decoded is None else decoded
    for value in (*graph.input, *graph.value_info, *graph.output):
        type_proto = value.type
        serialized = type_proto.SerializeToString()
        if serialized not in decoded:
            decoded[serialized] = shape_of(type_proto)[1]
        shapes[value.name] = decoded[serialized]
        if types is not None:
            types[value.name] = value
    for init in graph.initializer:
        shapes[init.name] = tuple(int(dim) for dim in init.dims)
    return shapes


def _is_static(shape: Shape | None) -> TypeGuard[tuple[int, ...]]:
    """ir.is_static_shape, and no negative dim (a file may declare dim_value -1)."""
    return _static(shape)


@lru_cache(maxsize=1 << 12)
def _static(shape: Shape | None) -> bool:
    """_is_static, cached: a graph's tensors share a few distinct shapes and every chain round
    checks each of them again (MaskFormer: 16k checks of a few hundred shapes)."""
    return is_static_shape(shape) and all(dim >= 0 for dim in cast(tuple, shape))


def shape_op_value(op_type: str, dims: Shape | None, start: int = 0, end: int | None = None) -> np.ndarray | None:
    """The value of ONNX `Shape` or `Size` applied to a tensor of shape `dims`, or None if it has none.

    Shape: the int64 vector `dims[start:end]` (opset 15's optional `start`/`end`: negative
    counts from the back, out-of-range clamps — Python slice semantics, as the ONNX spec
    defines them). Size: the int64 scalar prod(dims), computed exactly. None when `dims` is not
    static (unknown rank, a symbolic or negative dim) or the value does not fit int64. The one
    implementation for shape resolution (here) and constant folding (passes.cleanup).
    """
    if not _is_static(dims):
        return None
    values = [prod(dims)] if op_type == "Size" else list(dims[start:end])
    if any(value > INT64_MAX for value in values):
        return None   # np.int64 arithmetic would wrap around silently
    return np.array(values[0] if op_type == "Size" else values, dtype=np.int64)


class _Rounds:
    """What the chain rounds keep between rounds.

    The shell's node list is edited once, at the end (`materialize`): in between, rows keep
    their positions and evaluated producers are only marked gone (deleting protobuf nodes one
    by one and renumbering every row each round cost MaskFormer 6 ms). The nodes with an open
    output only ever get fewer, so each round looks at those of the previous one.
    """

    def __init__(self, shell: onnx.ModelProto, inferred: onnx.ModelProto):
        self.shell = shell
        self.decoded: dict[bytes, Shape | None] = {}
        self.types: dict[str, onnx.ValueInfoProto] = {}
        self.shapes = static_shapes(inferred, self.decoded, self.types)
        self.inline = {init.name: init for init in shell.graph.initializer}
        self.injected: list[onnx.TensorProto] = []
        self.known: dict[str, np.ndarray] = {}   # values computed so far (a value never changes)
        self.constant: set[str] = set()   # tensors found computable (they stay so: shapes only close)
        self._read_rows()

    def _read_rows(self) -> None:
        self.rows = read_rows(self.shell)
        self.gone: set[int] = set()
        self.producer = {name: row for row in self.rows for name in row.outputs if name}
        consumed = {name for row in self.rows for name in row.inputs if name}
        self.consumed = consumed
        # a consumed tensor nothing produces keeps its shape (graph inputs, initializers)
        self.open_source = any(name not in self.producer and not _is_static(self.shapes.get(name))
                               for name in consumed)
        self.open_rows = self.rows
        self.update_open()

    def reread(self) -> None:
        """Read the rows again after the shell's node list was edited from outside (no edit pending)."""
        self._read_rows()

    def update_open(self) -> None:
        shapes = self.shapes
        self.open_rows = [row for row in self.open_rows if row.position not in self.gone
                          and not all(_is_static(shapes.get(name)) for name in row.outputs if name)]

    def open_consumed(self) -> bool:
        """True when some node reads a tensor whose shape is not fully known."""
        shapes, consumed = self.shapes, self.consumed
        return self.open_source or any(name in consumed and not _is_static(shapes.get(name))
                                       for row in self.open_rows for name in row.outputs if name)

    def inject(self, values: dict[str, np.ndarray]) -> None:
        """Evaluated tensors become initializers; their producers are marked gone."""
        for name, value in values.items():
            array = np.asarray(value)
            init = numpy_helper.from_array(array, name)
            self.inline[name] = init
            self.injected.append(init)
            self.shapes[name] = tuple(int(dim) for dim in init.dims)
            self.known[name] = array
            row = self.producer.get(name)
            if row is not None:
                self.gone.add(row.position)
                for output in row.outputs:
                    self.producer.pop(output, None)
        self.update_open()

    def materialize(self, last: bool = False) -> None:
        """Apply the pending edits to the shell (producers deleted, initializers added);
        `last`: no round follows, the rows are not read again."""
        if not self.gone and not self.injected:
            return
        nodes = self.shell.graph.node
        for index in sorted(self.gone, reverse=True):
            del nodes[index]
        self.shell.graph.initializer.extend(self.injected)
        self.injected = []
        if not last:
            self._read_rows()

    def infer_part(self, infer: Infer, max_nodes: int) -> onnx.ModelProto | None:
        """The inferred open part of the shell (None when it has to be the whole model)."""
        part = open_part(self.shell, self.rows, self.open_rows, self.producer, self.types, self.inline,
                         partial(_vector, self.shapes), max_nodes)
        if part is None:
            return None
        inferred = infer(part)
        self.shapes.update(static_shapes(inferred, self.decoded, self.types))
        self.update_open()
        return inferred

    def infer_whole(self, infer: Infer) -> onnx.ModelProto:
        self.materialize()
        inferred = infer(self.shell)
        self.shapes = static_shapes(inferred, self.decoded, self.types)
        self.update_open()
        return inferred


@dataclass
class Resolved:
    """The outcome of resolve_value_chains.

    Attributes:
        inferred: the last whole-model inference result.
        parts: inferred open parts since then (shapes.open_part), in order: each one's
            value_info updates `inferred`'s (a tensor's type in the latest part wins).
        injected: the tensors evaluated since `inferred`, now initializers of the shell, in order.
    """

    inferred: onnx.ModelProto
    parts: list[onnx.ModelProto] = field(default_factory=list)
    injected: list[onnx.TensorProto] = field(default_factory=list)


def resolve_value_chains(shell: onnx.ModelProto, infer: Infer, inferred: onnx.ModelProto,
                         parts: bool = False, strict: Callable[[], bool] = lambda: False,
                         rewrite: Rewrite | None = None) -> Resolved:
    """Evaluate shape-computing tensors in `shell` (modified in place) until inference closes.

    `infer` runs onnx shape inference on a model; `inferred` is its result for `shell`.
    Every graph input of `shell` must be static. A value that cannot be computed ends the
    rounds; what stays open is reported by the caller. With `parts`, each round re-infers
    only the open part of the model (shapes.open_part) while it has fewer than 4/5 of the
    nodes — the caller guarantees that onnx infers those nodes as in the whole model (no
    subgraphs, no contrib twins) — and the parts are returned for the caller to overlay,
    unless a run was not `strict()` (then the whole model is inferred once more, so that
    its non-strict note is that of the whole model).
    `rewrite(shell, values)`, when given, sees every value computed so far after each round and
    may replace nodes of `shell` (an If whose condition is now known, shapes.branches): when it
    returns True the whole model is inferred again.
    """
    rounds = _Rounds(shell, inferred)
    done: list[onnx.ModelProto] = []   # parts inferred since `inferred`
    injected: list[onnx.TensorProto] = []
    all_strict = strict()
    for _ in range(MAX_ROUNDS):
        if not rounds.open_consumed():
            break
        values = _evaluate_round(rounds)
        if not values:
            break
        rounds.inject(values)
        injected.extend(rounds.injected[-len(values):])
        if rewrite is not None:
            rounds.materialize()   # the shell's node list as the rows say, before `rewrite` edits it
            if rewrite(shell, rounds.known):
                rounds.reread()
                inferred, done, injected = rounds.infer_whole(infer), [], []
                all_strict = strict()
                continue
        part = rounds.infer_part(infer, (len(rounds.rows) - len(rounds.gone)) * 4 // 5) if parts else None
        if part is not None:
            done.append(part)
            all_strict = all_strict and strict()
        else:
            inferred, done, injected = rounds.infer_whole(infer), [], []
            all_strict = strict()
    rounds.materialize(last=True)
    if done and not all_strict:
        return Resolved(infer(shell))
    return Resolved(inferred, done, injected)


def _vector(shapes: dict[str, Shape | None], name: str) -> bool:
    """True for a static scalar or vector of at most MAX_ELEMENTS elements: onnx's data
    propagation carries values through int64 tensors of rank 0 or 1 only."""
    shape = shapes.get(name)
    return _is_static(shape) and len(shape) <= 1 and prod(shape) <= MAX_ELEMENTS


def _small(shapes: dict[str, Shape | None], name: str) -> bool:
    """True for a tensor with a static shape of at most MAX_ELEMENTS elements."""
    shape = shapes.get(name)
    return _is_static(shape) and prod(shape) <= MAX_ELEMENTS


def _evaluate_round(rounds: _Rounds) -> dict[str, np.ndarray]:
    """Values of the constant tensors read by nodes with an open output (empty when none)."""
    shell, producer, inline, shapes = rounds.shell, rounds.producer, rounds.inline, rounds.shapes
    small_memo: dict[str, bool] = {}

    def small(name: str) -> bool:
        known = small_memo.get(name)
        if known is None:
            known = small_memo[name] = _small(shapes, name)
        return known

    memo: dict[str, bool] = dict.fromkeys(rounds.constant, True)

    expanded: set[str] = set()   # tensors whose producer passed the checks; their inputs are on the stack

    def constant(name: str) -> bool:
        """True when `name` is computable from constants and static shapes (iterative DFS)."""
        stack = [name]
        while stack:
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            node = producer.get(top)
            if node is not None and top in expanded:   # second visit: every input is decided
                memo[top] = all(memo[tensor] for tensor in node.inputs if tensor)
                stack.pop()
                continue
            if top in inline or node is None:
                memo[top] = top in inline and small(top)
            elif node.op_type in ("Shape", "Size") and not node.domain:
                memo[top] = _shape_value(shell.graph.node[node.position], shapes) is not None
            elif (node.domain not in ("", "ai.onnx") or node.op_type in _NOT_EVALUABLE
                    or not all(small(output) for output in node.outputs if output)):
                memo[top] = False
            else:
                expanded.add(top)
                stack.extend(tensor for tensor in node.inputs if tensor and tensor not in memo)
                continue
            stack.pop()
        return memo[name]

    targets: set[str] = set()
    for row in rounds.open_rows:
        for tensor in row.inputs:
            if tensor and tensor not in inline and tensor in producer and (
                    memo[tensor] if tensor in memo else constant(tensor)):
                targets.update(output for output in producer[tensor].outputs if output)
    rounds.constant.update(name for name, computable in memo.items() if computable)
    if not targets:
        return {}
    return _run(shell, targets, producer, shapes, rounds.inline, rounds.known)


def _run(shell: onnx.ModelProto, targets: set[str], producer: dict[str, Row], shapes: dict,
         initializers: dict[str, onnx.TensorProto], known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compute `targets` from the nodes that produce them: in numpy (shapes.values) where it gives
    onnxruntime's values exactly, else with onnxruntime.

    `known` holds the values computed in earlier rounds (it receives this round's).
    """
    stack, inputs = list(targets), set()
    needed: set[int] = set()
    while stack:
        name = stack.pop()
        row = producer.get(name)
        if name in known or row is None:
            if name:
                inputs.add(name)
            continue
        if row.position in needed:
            continue
        needed.add(row.position)
        if row.op_type in ("Shape", "Size") and not row.domain:
            continue  # replaced by its value below
        stack.extend(row.inputs)
    nodes = [shell.graph.node[index] for index in sorted(needed)]
    for node in nodes:
        if node.op_type in ("Shape", "Size") and not node.domain:
            known[node.output[0]] = cast(np.ndarray, _shape_value(node, shapes))   # checked by constant()
    for name in inputs:
        if name not in known and name in initializers:
            known[name] = numpy_helper.to_array(initializers[name])
    try:
        return compute_values(sorted(targets), {output: node for node in nodes for output in node.output if output},
                              known, _default_opset(shell))
    except NotExact:
        return _run_onnxruntime(shell, targets, nodes, known, inputs)


def _default_opset(shell: onnx.ModelProto) -> int:
    return next((opset.version for opset in shell.opset_import if opset.domain in ("", "ai.onnx")), 1)


def _run_onnxruntime(shell: onnx.ModelProto, targets: set[str], nodes: list[onnx.NodeProto],
                     known: dict[str, np.ndarray], inputs: set[str]) -> dict[str, np.ndarray]:
    """Compute `targets` with onnxruntime from `nodes`, the `inputs` they read given as
    initializers (their `known` values) and Shape/Size nodes replaced by their values."""
    import onnxruntime

    nodes = [helper.make_node("Constant", [], [node.output[0]],
                              value=numpy_helper.from_array(known[node.output[0]], node.output[0]))
             if node.op_type in ("Shape", "Size") and not node.domain else node for node in nodes]
    initializers = [numpy_helper.from_array(known[name], name) for name in sorted(inputs) if name in known]
    outputs = [helper.make_empty_tensor_value_info(name) for name in sorted(targets)]
    model = helper.make_model(helper.make_graph(nodes, "shape_values", [], outputs, initializers),
                              opset_imports=shell.opset_import, ir_version=max(shell.ir_version, 4))
    options = session_options(graph_optimization_level=onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
                              intra_op_num_threads=1, inter_op_num_threads=1)
    try:
        session = open_session(model, options)
        results = session.run(sorted(targets), {})
    except Exception:  # noqa: BLE001 - onnxruntime raises its own types; the tensors just stay open
        return {}
    return dict(zip(sorted(targets), results))


def _shape_value(node: onnx.NodeProto, shapes: dict[str, Shape | None]) -> np.ndarray | None:
    """shape_op_value of a Shape or Size NodeProto."""
    attrs = {attribute.name: attribute.i for attribute in node.attribute}
    return shape_op_value(node.op_type, shapes.get(node.input[0]), attrs.get("start", 0), attrs.get("end"))

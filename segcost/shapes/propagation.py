"""When onnx shape inference propagates values (`data_prop`), and the bound on what that costs.

onnx's data propagation lets shape inference compute the values of small integer tensors —
Shape → Gather → Concat → Reshape chains — so that an op whose output shape depends on an
input's *values* (Reshape's target, Resize's sizes, Expand, Slice, ...) gets a shape. It
holds every rank-1 tensor that reaches an op with a propagator (Add, Mul, Concat, Gather,
Slice, Cast, ...) as a list of dims, about 140 bytes per element: a 60-byte model declaring
a 30-million-element vector input made onnx allocate 4.3 GB (breaker6 R2), before segcost
could bound anything.

So propagation runs only where it can matter, and only after a pass without it shows that
no rank-1 tensor is longer than MAX_PROPAGATED_LENGTH (a shape vector has a handful of
elements):

* `needs_values`: some node reads a value input (VALUE_INPUTS) that no initializer or
  Constant holds. If none does, propagation adds nothing and one pass without it is the
  result (every Conv/Relu/Add graph, the 100k-node chain).
* `long_vector`: in a pass without propagation, a rank-1 tensor over the bound — its static
  length, or when only values would tell, a bound from its producer (SIZE_BOUNDED_OPS), none
  for an op that can make any length — or all of them together over MAX_PROPAGATED_TOTAL.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from itertools import chain
from math import prod
from operator import attrgetter

import onnx

from segcost.ir import Graph
from segcost.ir.onnx_io import nodes_with_subgraphs

__all__ = ["MAX_PROPAGATED_LENGTH", "MAX_PROPAGATED_TOTAL", "MAX_PROPAGATION_BYTES", "SIZE_BOUNDED_OPS",
           "VALUE_INPUTS", "address_space_bound", "fastbins_off", "long_vector", "needs_values"]

MAX_PROPAGATED_LENGTH = 1 << 16   # elements of a rank-1 tensor onnx may hold as dims (~9 MB)
MAX_PROPAGATED_TOTAL = 1 << 20    # ... of all of them together (~150 MB)

# Standard ops whose output has at most as many elements as all their inputs together (a rank-1
# output of an elementwise op has rank <= 1 inputs, so broadcasting cannot outgrow them either).
SIZE_BOUNDED_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "GatherElements", "GatherND", "Identity",
    "Cast", "CastLike", "Concat", "Split", "Transpose", "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Neg", "Abs",
    "Floor", "Ceil", "Round", "Sqrt", "Reciprocal", "Relu", "Sign", "Min", "Max", "Sum", "Mean", "Equal", "Less",
    "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "Clip", "Exp", "Log",
    "Sigmoid", "Tanh", "Softmax", "ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceMean", "ArgMax",
    "ArgMin", "Shape", "Size", "TopK", "MatMul", "NonZero", "Compress", "Unique", "IsNaN", "IsInf", "Trilu",
    "ScatterElements", "ScatterND", "CumSum",
})

# Standard ops whose output shape onnx's inference takes from an input's values: op type → those inputs
# (ONNX operator specs, current opsets; Squeeze/Unsqueeze/Reduce* axes became inputs at opsets 13/18).
VALUE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Resize": (1, 2, 3), "Upsample": (1,),
    "ConstantOfShape": (0,), "Range": (0, 1, 2), "Pad": (1, 2, 3), "TopK": (1,), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), "OneHot": (1,), "CenterCropPad": (1, 2), "Col2Im": (1, 2),
    "MaxUnpool": (2,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,),
    "ReduceSumSquare": (1,), "DFT": (1, 2), "STFT": (1, 2, 3), "Compress": (1,), "NonZero": (0,),
    "Unique": (0,), "NonMaxSuppression": (2,), "Shape": (), "Size": (),
}
_GRAPH_KINDS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_OP_TYPE = attrgetter("op_type")


MAX_PROPAGATION_BYTES = 512 << 20   # address space the propagating pass may add (RLIMIT_AS headroom)

# glibc's mallopt parameter M_MXFAST (malloc.h) and its default, 64 * sizeof(size_t) / 4 bytes (malloc.c)
_M_MXFAST, _DEFAULT_MXFAST = 1, 128


@contextmanager
def fastbins_off() -> Iterator[None]:
    """glibc's fastbins off while the block runs (one onnx shape inference); elsewhere the block runs as it is.

    onnx's C++ inference parses the model into ~1M small heap blocks and frees them when it returns;
    glibc parks such frees in fastbins and merges them again at each later large request
    (malloc_consolidate, unlink_chunk: a third of the inference's CPU on a 100k-node chain). With
    fastbins off (mallopt M_MXFAST 0) they are merged as they are freed: 0.54-0.58 -> 0.46-0.47 s
    there, the same results. Restored to glibc's default after (also when a glibc.malloc.mxfast
    tunable had set another value).
    """
    mallopt = _mallopt()
    if mallopt is None or not mallopt(_M_MXFAST, 0):
        yield
        return
    try:
        yield
    finally:
        mallopt(_M_MXFAST, _DEFAULT_MXFAST)


@cache
def _mallopt():
    """glibc's mallopt, or None (another libc, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # deferred: only an inference on Linux needs it (as frontends.onnx's malloc_trim)

    return getattr(ctypes.CDLL(None), "mallopt", None)


@contextmanager
def address_space_bound(headroom: int = MAX_PROPAGATION_BYTES) -> Iterator[None]:
    """Cap this process's address space at its current size + `headroom` bytes while the block runs.

    The backstop for what long_vector cannot bound before the pass: onnx's C++ then fails an
    allocation past the cap with std::bad_alloc, which its bindings raise as MemoryError, and the
    caller keeps the pass without propagation. Linux only (RLIMIT_AS, /proc/self/statm); elsewhere,
    or when the current limit is already lower, the block runs as it is. The limit is restored after.
    """
    try:
        import resource  # not on Windows

        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        yield
        return
    limit = used + headroom
    if (soft != resource.RLIM_INFINITY and soft <= limit) or (hard != resource.RLIM_INFINITY and hard < limit):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def needs_values(graph: Graph, model: onnx.ModelProto | bytes, copy_of_graph: bool = False,
                 subgraphs: bool | None = None) -> bool:
    """Whether a node of `model` (a shape-inference copy of `graph`, a part of it, or a copy with
    com.microsoft twins; a message or its serialization) has a shape onnx can only get by
    propagating values: a VALUE_INPUTS input that no initializer or Constant holds, or a Shape/Size
    node (its values feed such inputs); a subgraph counts as needing them. `copy_of_graph`: `model`
    has exactly `graph`'s nodes (its lifted Constants as initializers), so the IR's tables answer
    without a look at any NodeProto (100k of them in a large model) or a parse of serialized ones.
    `subgraphs`: whether nodes_with_subgraphs(graph) finds any, when the caller knows (found here when not given).
    """
    if copy_of_graph:   # the IR's own tables answer: no NodeProto looked at, no serialized model parsed
        if nodes_with_subgraphs(graph) if subgraphs is None else subgraphs:
            return True
        nodes = graph.nodes.values()
        if VALUE_INPUTS.keys().isdisjoint(map(_OP_TYPE, nodes)):
            return False   # C-speed looks at the IR: 100k nodes in a few ms (and no set of 33k weights' names)
        constants = set(graph.initializers)   # a weight declared as a typed input: no one's values to propagate
        constants.update(output for node in nodes if node.op_type == "Constant" and not node.domain
                         for output in node.outputs)
        return any(_reads_values(node.op_type, node.domain, node.inputs, constants) for node in nodes)
    constants = set(graph.initializers)
    onnx_graph = (onnx.ModelProto.FromString(model) if isinstance(model, bytes) else model).graph
    constants.update(init.name for init in onnx_graph.initializer)
    constants.update(output for node in onnx_graph.node if node.op_type == "Constant" and not node.domain
                     for output in node.output)
    return any(any(attribute.type in _GRAPH_KINDS for attribute in node.attribute)
               or _reads_values(node.op_type, node.domain, node.input, constants) for node in onnx_graph.node)


def _reads_values(op_type: str, domain: str, inputs, constants: set[str]) -> bool:
    """A standard op reading a VALUE_INPUTS input that is not in `constants` (Shape/Size: always)."""
    indices = VALUE_INPUTS.get(op_type) if domain in ("", "ai.onnx") else None
    if indices is None:
        return False
    return not indices or any(index < len(inputs) and inputs[index] and inputs[index] not in constants
                              for index in indices)


def long_vector(inferred: onnx.ModelProto) -> tuple[str, int] | None:
    """(name, length bound) of a rank-1 tensor that propagating values over `inferred` (a pass without it)
    would make onnx hold past the bounds, else None.

    A rank-1 tensor's length is its static dim, or — when only the values would tell (a Reshape
    to a computed target) — at most the elements of its producer's inputs for an op whose output
    cannot outgrow them (SIZE_BOUNDED_OPS). Each must stay within MAX_PROPAGATED_LENGTH and all
    of them within MAX_PROPAGATED_TOTAL. A length only the values of a ConstantOfShape, Range,
    Expand, Tile or custom op would tell has no bound here (legitimate models compute small
    ones: Swin's window masks): the propagating pass then runs under address_space_bound.
    """
    graph = inferred.graph
    elements: dict[str, int | None] = {}   # every typed tensor: its element count, None when not static
    candidates: set[str] = set()           # tensors that may be rank 1 of unknown length (or of unknown rank)
    total = 0
    for info in chain(graph.input, graph.value_info, graph.output):
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            elements[info.name] = None
            candidates.add(info.name)
            continue
        dims = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
                for dim in tensor_type.shape.dim]
        elements[info.name] = None if None in dims else prod(dims)   # type: ignore[arg-type]
        if len(dims) == 1 and dims[0] is None:
            candidates.add(info.name)
        elif len(dims) == 1 and info.name not in candidates:
            length = int(dims[0])   # type: ignore[arg-type]
            total += length
            if length > MAX_PROPAGATED_LENGTH:
                return info.name, length
    elements.update((init.name, prod(init.dims)) for init in graph.initializer)
    for node in graph.node:   # topological: a bound found here is there for the nodes after
        for output in node.output:
            if not output or (output in elements and output not in candidates):
                continue   # a static size, or a known rank of 2 or more (never propagated as values)
            bounded = node.op_type in SIZE_BOUNDED_OPS and node.domain in ("", "ai.onnx")
            sizes = [elements.get(name) for name in node.input if name]
            if not bounded or None in sizes:
                elements[output] = None   # no bound from here: address_space_bound is the backstop
                continue
            bound = sum(sizes)   # type: ignore[arg-type]
            if bound > MAX_PROPAGATED_LENGTH:
                return output, bound
            elements[output] = bound
            total += bound
    if total > MAX_PROPAGATED_TOTAL:
        return "all rank-1 tensors", total
    return None

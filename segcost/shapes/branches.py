"""If nodes whose condition is known at the given input shapes: shapes follow the branch taken.

onnx shape inference types an If's outputs by merging its two branches: when they give
different shapes (a ×2 upsample against a pass-through, say) every differing dim becomes
a fresh symbol and every layer downstream is left without a shape — even when the
condition is a constant, or computed from static shapes (`Shape(x)[2] > 48`), so that which
branch runs is fixed by the input size (onnxruntime runs just that one). Here such an If is
replaced, in the weightless inference copy only, by its taken branch: the branch's nodes
with its own names prefixed (so no name clashes with the outer graph) and an Identity per
output onto the If's output names. The IR keeps the If;
`graph.nodes[key].meta["branch_taken"]` names the branch (control-flow costing counts it) and
`meta["subgraph_tensors"]` holds the branch's inferred shapes under its own names.

An If of an inlined branch is a top-level node of the copy: it is decided the same way (a
constant condition at once, a computed one after the copy is inferred again), up to
MAX_BRANCH_DEPTH levels; its branch is recorded in its top-level If's
`meta["nested_branches_taken"]`. Only If nodes of the standard domain are replaced; a branch
with sparse initializers is left alone. An unknown condition leaves the If as onnx infers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache

import numpy as np
import onnx
from onnx import numpy_helper

from segcost.errors import ShapeError
from segcost.ir import Graph, Node, Shape, TensorInfo
from segcost.ir.onnx_io import shape_of
from segcost.ir.subgraphs import attribute_graphs
from segcost.shapes.evaluate import shape_op_value, static_shapes
from segcost.shapes.inline import inlined_branch
from segcost.shapes.values import NotExact, compute_values

BRANCH_TAKEN = "branch_taken"
NESTED_TAKEN = "nested_branches_taken"   # on a top-level If: {a nested If's first output: its branch taken}
_NAMES = "branch_names"   # on a top-level If: {name in the inference copy: name in its branch}, all levels
_OPEN = "nested_ifs"   # on a top-level If: {first output in the copy: (condition in the copy, depth)}, not decided
_PREFIX = "segcost.branch/"   # an inlined branch's names: _PREFIX + a tag of its If + "/" + the branch's own name
# Levels of Ifs nested in taken branches that are decided (each level's computed conditions cost one more
# inference of the whole copy); deeper is an error.
MAX_BRANCH_DEPTH = 16


def condition_value(value: np.ndarray | None) -> bool | None:
    """The truth value of an If condition (a one-element bool/number tensor), or None when it has none."""
    if value is None or np.asarray(value).size != 1:
        return None
    return bool(np.asarray(value).reshape(-1)[0])


def open_ifs(graph: Graph) -> dict[str, str]:
    """{If: its condition tensor} for the standard If nodes without a decided branch: the graph's top-level
    ones (by key) and those of the branches taken, top-level in the inference copy (by their first output
    there)."""
    return {tag: condition for tag, (condition, _, _) in _open(graph).items()}


def _open(graph: Graph) -> dict[str, tuple[str, str, int]]:
    """{If: (condition, key of its top-level If, depth)} for open_ifs."""
    found = {}
    for key, node in graph.nodes.items():
        if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
            continue
        if BRANCH_TAKEN not in node.meta:
            if node.inputs and node.inputs[0]:
                found[key] = (node.inputs[0], key, 0)
        elif _OPEN in node.meta:
            found.update((tag, (condition, key, depth)) for tag, (condition, depth) in node.meta[_OPEN].items())
    return found


# Tensors walked back from an If condition to find what it is computed from, and the elements of a constant
# read on the way (a condition is a comparison of a few shape dims; anything larger is run-time data).
_CONDITION_CONE_NODES = 256
_CONDITION_CONSTANT_ELEMENTS = 1 << 16


def computed_conditions(graph: Graph, shell: onnx.ModelProto, inferred: onnx.ModelProto) -> dict[str, np.ndarray]:
    """{condition tensor: value} for the open If conditions that constants and the static shapes of
    `inferred` decide (`Greater(Shape(x)[2], 48)`), computed by shapes.values (numpy, exactly as
    onnxruntime); a condition that needs run-time data, or more than _CONDITION_CONE_NODES nodes, is
    left out. Computed up front, since an If whose branches agree in shape (or that feeds only graph
    outputs) leaves no shape open for the value-chain rounds to decide it by."""
    wanted = [name for name in open_ifs(graph).values() if name not in graph.initializers]
    if not wanted:
        return {}
    producer = {output: node for node in shell.graph.node for output in node.output if output}
    shapes = cache(lambda: static_shapes(inferred))   # read once, when a cone first reaches a Shape/Size
    # constants of inlined branches (not the graph's): read when a cone reaches one
    inlined = cache(lambda: {init.name: init for init in shell.graph.initializer if init.name.startswith(_PREFIX)})
    known: dict[str, np.ndarray] = {}   # values met in the cones, shared by the conditions
    found = {}
    for condition in dict.fromkeys(wanted):
        if not _cone_closes(condition, graph, producer, shapes, known, inlined):
            continue
        try:
            value = compute_values([condition], producer, known, graph.info.opset)[condition]
        except (NotExact, ValueError, TypeError, IndexError):
            continue
        if condition_value(value) is not None:
            found[condition] = value
    return found


def _cone_closes(condition: str, graph: Graph, producer: Mapping[str, onnx.NodeProto],
                 shapes: Callable[[], Mapping[str, Shape | None]], known: dict[str, np.ndarray],
                 inlined: Callable[[], Mapping[str, onnx.TensorProto]]) -> bool:
    """Whether `condition` is computed from small constants and Shape/Size of static shapes alone, within
    _CONDITION_CONE_NODES tensors; the values met on the way are added to `known`. `inlined()`: the
    constants of inlined branches in the inference copy."""
    cone: set[str] = set()
    stack = [condition]
    while stack:
        if len(cone) > _CONDITION_CONE_NODES:
            return False
        name = stack.pop()
        if not name or name in cone or name in known:
            continue
        cone.add(name)
        init = graph.initializers.get(name)
        if init is not None:
            if init.size > _CONDITION_CONSTANT_ELEMENTS:
                return False
            known[name] = init.array
            continue
        constant = inlined().get(name) if name.startswith(_PREFIX) else None
        if constant is not None:
            if (np.prod(tuple(constant.dims), dtype=np.int64) > _CONDITION_CONSTANT_ELEMENTS
                    or constant.data_location == constant.EXTERNAL):
                return False
            known[name] = numpy_helper.to_array(constant)
            continue
        node = producer.get(name)
        if node is None:
            return False   # a graph input: run-time data
        if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx"):
            attrs = {attribute.name: attribute.i for attribute in node.attribute}
            value = shape_op_value(node.op_type, shapes().get(node.input[0]), attrs.get("start", 0), attrs.get("end"))
            if value is None:
                return False
            known[name] = value
            continue
        stack.extend(node.input)
    return True


def take_branches(graph: Graph, shell: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> list[str]:
    """Replace, in `shell`, each open If (open_ifs) whose condition has a value in `values` by its taken branch;
    the Ifs of an inlined branch whose condition is then a constant (`values`, the branch's or the graph's
    one-element initializers) are replaced in turn, the others become open Ifs of their own.

    Sets `meta["branch_taken"]` ("then_branch" or "else_branch") on the IR node of a top-level If, and
    records a nested If's branch in its top-level If's `meta["nested_branches_taken"]` (under the nested
    If's first output, the name its branch gives it), which control-flow costing reads. Returns the keys
    of the top-level If nodes whose branches changed (empty: `shell` is unchanged).

    Raises:
        ShapeError: an If to be replaced is nested more than MAX_BRANCH_DEPTH levels deep.
    """
    pending = _open(graph)
    wanted = {tag: taken for tag, (name, _, _) in pending.items()
              if name in values and (taken := condition_value(values[name])) is not None}
    if not wanted:
        return []
    protos = shell.graph.node
    position = {_first(proto.output): index for index, proto in enumerate(protos) if proto.op_type == "If"}
    inliner = _Inliner(graph, shell, values)
    branches: dict[int, list[onnx.NodeProto]] = {}   # {index in the shell: the nodes replacing its If}
    owners: list[str] = []
    for tag, taken in wanted.items():
        _, key, depth = pending[tag]
        outputs = graph.node(key).outputs
        index = position.get(_first(outputs) if depth == 0 else tag)
        if index is None or (depth == 0 and list(protos[index].output) != outputs):
            continue
        nodes = inliner.take(key, protos[index], taken, depth)
        if nodes is None:
            continue
        branches[index] = nodes
        owners.append(key)
    if branches:   # the node list rebuilt once, each replaced If's branch in its place
        nodes = [new for index, proto in enumerate(protos) for new in branches.get(index, (proto,))]
        del shell.graph.node[:]
        shell.graph.node.extend(nodes)
    return list(dict.fromkeys(owners))


class _Inliner:
    """Replaces If protos of `shell` by their taken branches, for take_branches."""

    def __init__(self, graph: Graph, shell: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> None:
        self.graph, self.shell, self.values = graph, shell, values
        self.constants: dict[str, np.ndarray] = {}   # one-element constants of the branches inlined so far

    def take(self, key: str, proto: onnx.NodeProto, taken: bool, depth: int) -> list[onnx.NodeProto] | None:
        """The nodes replacing If `proto` (top-level If `key` at depth 0, or an If its branches nest `depth`
        levels deep) when its condition is `taken`; None when its branch cannot be inlined (left as it is)."""
        attribute = "then_branch" if taken else "else_branch"
        branch = next((item.g for item in proto.attribute if item.name == attribute and item.type == item.GRAPH),
                      None)
        outputs = list(proto.output)
        if branch is None or branch.sparse_initializer or len(branch.output) != len(outputs):
            return None
        owner = self.graph.node(key)
        names = owner.meta.setdefault(_NAMES, {})
        tag = _first(outputs)
        if depth > MAX_BRANCH_DEPTH:
            raise ShapeError(f"the If computing {names.get(tag, tag)!r} is nested more than {MAX_BRANCH_DEPTH} "
                             f"levels deep in branches of If {key!r} taken at these input shapes "
                             f"(segcost decides up to {MAX_BRANCH_DEPTH}); export the model with its branches decided")
        # top-level and nested prefixes: the key's or first output's length, then ':' or '>', so that no prefix
        # begins another one and no two inlined branches give the same name
        prefix = f"{_PREFIX}{len(tag)}>{tag}/" if depth else f"{_PREFIX}{len(key)}:{key}/"
        nodes, renamed, constants = inlined_branch(branch, prefix, outputs, self.shell)
        for old, new in renamed.items():   # every inlined name to its name in its own branch
            names[new] = names.get(old, old)
        self.constants.update(constants)
        if depth:
            owner.meta.get(_OPEN, {}).pop(tag, None)
            owner.meta.setdefault(NESTED_TAKEN, {})[names.get(tag, tag)] = attribute
        else:
            owner.meta[BRANCH_TAKEN] = attribute
        result = []
        for node in nodes:   # the branch's own Ifs: top-level nodes of the copy now
            if _is_if(node):
                value = self._constant(node.input[0])
                inner = None if value is None else self.take(key, node, value, depth + 1)
                if inner is not None:
                    result.extend(inner)
                    continue
                if _first(node.output):   # (an If without outputs computes nothing)
                    owner.meta.setdefault(_OPEN, {})[_first(node.output)] = (node.input[0], depth + 1)
            result.append(node)
        return result

    def _constant(self, name: str) -> bool | None:
        """The truth of condition `name` when a constant gives it (values, inlined or graph initializers)."""
        if name in self.values:
            return condition_value(self.values[name])
        if name in self.constants:
            return condition_value(self.constants[name])
        init = self.graph.initializers.get(name)
        return condition_value(init.array) if init is not None and init.size == 1 else None


def _first(names) -> str:
    return next((name for name in names if name), "")


def _is_if(proto: onnx.NodeProto) -> bool:
    return proto.op_type == "If" and proto.domain in ("", "ai.onnx") and bool(proto.input) and bool(proto.input[0])


def decide_branches(graph: Graph, shell: onnx.ModelProto, inferred: onnx.ModelProto,
                    reinfer: Callable[[], onnx.ModelProto]) -> tuple[onnx.ModelProto, list[str]]:
    """Take the branches of the open Ifs whose conditions the static shapes of `inferred` compute
    (computed_conditions), re-infer `shell` (`reinfer()`: the inferred model, its shapes taken into `graph`),
    and again while a round decides an If: an If nested in a branch just taken, or one whose condition reads
    a shape that branch fixed, is decided in the next round. Returns (the last inferred model, the keys of
    the top-level Ifs whose branches changed).

    Raises:
        ShapeError: Ifs are still decided after MAX_BRANCH_DEPTH + 1 rounds; or from take_branches.
    """
    keys: list[str] = []
    for _ in range(MAX_BRANCH_DEPTH + 1):   # a round per level, the top-level Ifs' first
        computed = computed_conditions(graph, shell, inferred)
        taken = take_branches(graph, shell, computed) if computed else []
        if not taken:
            return inferred, keys
        keys += taken
        inferred = reinfer()
        if not open_ifs(graph):
            return inferred, keys
    if computed_conditions(graph, shell, inferred):
        raise ShapeError(f"If conditions known at these input shapes depend on the branches of other Ifs more than "
                         f"{MAX_BRANCH_DEPTH} rounds deep (segcost decides up to {MAX_BRANCH_DEPTH}); export the "
                         "model with its branches decided")
    return inferred, keys


def forget_branches(node: Node) -> None:
    """Drop what take_branches recorded on If `node` (the input shapes may have changed)."""
    for name in (BRANCH_TAKEN, NESTED_TAKEN, _NAMES, _OPEN):
        node.meta.pop(name, None)


def undecided_nested(node: Node) -> list[tuple[str, str]]:
    """(first output, condition) of the Ifs nested in the branch taken of top-level If `node` that are left
    open (their condition is not known at these input shapes), named as their branches name them."""
    names = node.meta.get(_NAMES, {})
    return [(names.get(tag, tag), names.get(condition, condition))
            for tag, (condition, _) in node.meta.get(_OPEN, {}).items()]


def read_nested_shapes(graph: Graph, inferred: onnx.ModelProto, ifs: list[Node]) -> None:
    """Add to graph.tensors the shapes onnx inferred inside the Ifs left open in taken branches (`ifs`: the
    graph's nodes with subgraphs): top-level Ifs of the inference copy but not IR nodes, read_subgraph_infos
    does not see them; collect_branch_shapes hands them to their top-level If under their own names."""
    tags = {tag for node in ifs if node.op_type == "If" for tag in node.meta.get(_OPEN, ())}
    if not tags:
        return
    for proto in inferred.graph.node:
        if proto.op_type == "If" and _first(proto.output) in tags:
            for nested in attribute_graphs(proto):
                _read_infos(nested, graph.tensors)


def _read_infos(graph_proto: onnx.GraphProto, tensors: dict[str, TensorInfo]) -> None:
    for value in (*graph_proto.input, *graph_proto.value_info, *graph_proto.output):
        dtype, shape = shape_of(value.type)
        if shape is not None or value.name not in tensors:
            tensors[value.name] = TensorInfo(value.name, dtype, shape)
    for proto in graph_proto.node:
        for nested in attribute_graphs(proto):
            _read_infos(nested, tensors)


def collect_branch_shapes(graph: Graph, keys: list[str]) -> None:
    """Move the inlined branches' tensors out of graph.tensors into their If node's meta["subgraph_tensors"]
    (under the branches' own names, as read_subgraph_infos keeps them; those of nested Ifs decided with it too).
    The tensors are those take_branches renamed for this If, looked up by name (a prefix would also match the
    tensors of an If whose key begins with this one's)."""
    for key in dict.fromkeys(keys):
        node = graph.node(key)
        found: dict[str, TensorInfo] = {}
        for name, own in node.meta.get(_NAMES, {}).items():
            info = graph.tensors.pop(name, None)
            if info is not None:
                found[own] = TensorInfo(own, info.dtype, info.shape)
        for source, target in zip(node.attrs[node.meta[BRANCH_TAKEN]].output, node.outputs):   # named after the If's
            if target and source.name not in found and (given := graph.tensors.get(target)) is not None:
                found[source.name] = TensorInfo(source.name, given.dtype, given.shape)
        node.meta["subgraph_tensors"] = found

"""MACs inside If, Loop and Scan: each subgraph is analyzed like a graph, then combined.

- **If**: both branches are analyzed and listed; the layer counts the branch with more MACs
  (the worst case, which a budget must hold — which branch runs is data) and, when the
  branches differ, a warning says the count is an upper bound. When the condition is known at
  the given input shapes (a constant, or computed from static shapes; shapes.branches sets
  ``meta["branch_taken"]``, and ``meta["nested_branches_taken"]`` for the Ifs nested in the
  branch taken), only the taken branch is analyzed and counted. An If in a subgraph whose
  condition is a constant, or an outer tensor computed from constants and static shapes (a
  Loop-invariant `Shape(x)[2] > 48`), is decided the same way — in a Loop body, for every trip.
- **Loop** whose trip count M is a constant, or computed from constants and static shapes
  (`Shape(x)[2]`; evaluated as `segcost cost` folds it): M × body. If the loop's condition is computed,
  M is an upper bound and a warning says so — also when the body computes the next
  condition. ONNX exporters write M = INT64_MAX for a `while` loop: M ≥ 2**31 with a
  condition that can stop the loop is no trip count; with one that cannot, M is the count.
  A constant false initial condition runs no trip.
- **Scan** (opset ≥ 9): the scan inputs' sequence length (along `scan_input_axes`, default
  0) × body.
- A Loop body that does not declare its carried shapes gets its first trip's shapes (the
  initial values'); if a carried tensor's shape changes from trip to trip and the trip count
  is known, each trip is inferred with the shapes the previous one produced and analyzed
  (MACs summed; up to MAX_UNROLLED_TRIPS trips and MAX_UNROLLED_NODES body nodes in all).
  Past those bounds, or when a trip's shapes are not static, the layer counts the first trip
  and is flagged like an unknown trip count.
- Otherwise the trip count is unknown: the layer's status is ``unbounded``; the totals count
  one trip (the body's MACs once) and the result and every report flag it; ``--strict``
  refuses it.
Params and weight bytes are the subgraphs' own constants, counted once whatever the trip count.
The layer's flops by --count category (`flops_by_category`, analyzer.conventions) are its
subgraphs', combined as its MACs are: the counted branch's, trips × the body's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from segcost.analyzer.result import ControlFlowCost, SubgraphCost
from segcost.analyzer.trips import computed_value, constant_int, has_computed_condition, loop_trips, scan_trips
from segcost.errors import ShapeError
from segcost.ir import Graph, Initializer, Node, Shape, TensorInfo, is_static_shape
from segcost.ir.onnx_io import subgraph_ir
from segcost.ir.subgraphs import attribute_graphs, outer_scope_reads, subgraph_attributes
from segcost.shapes import infer_shapes
from segcost.shapes.branches import BRANCH_TAKEN, NESTED_TAKEN, condition_value

__all__ = ["CONTROL_FLOW_OPS", "UNBOUNDED", "control_flow_cost"]

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
INT64, BOOL = 7, 9         # onnx.TensorProto element types of a Loop body's first two inputs
UNBOUNDED = "unbounded"

# (sub-IR, subgraph tensor table, outer constants) -> (macs, flops, params, weight bytes, nodes, unsupported,
# warnings, flops by --count category); params and weight bytes leave out the outer constants (the enclosing
# graph counts them at this node).
BodyAnalyzer = Callable[[Graph, dict, set[str]],
                        tuple[int, int, int, int, int, list[str], list[str], dict[str, int]]]


def control_flow_cost(graph: Graph, key: str, node: Node, analyze_body: BodyAnalyzer, inherited: dict,
                      warnings: list[str]) -> ControlFlowCost:
    """Analyze every subgraph of `node` and combine them as the module docstring says.

    `inherited` is the subgraph tensor table of an enclosing control-flow node (nested
    subgraphs have no table of their own). Raises what the body analysis raises.
    """
    tensors = node.meta.get("subgraph_tensors") or inherited
    subgraphs = []
    varying = False
    taken = node.meta.get(BRANCH_TAKEN) if node.op_type == "If" else None
    for attribute, index, graph_proto in subgraph_attributes(node.attrs, node.attr_types):
        if taken is not None and attribute != taken:
            continue   # the branch that does not run at these input shapes
        body, outer_constants = _subgraph(graph, graph_proto, tensors, node.meta.get(NESTED_TAKEN))
        name = attribute if index < 0 else f"{attribute}[{index}]"
        if node.op_type == "Loop" and (not _seed_loop_body(body, graph, node) or _iteration_shaped(body)):
            trips = loop_trips(graph, node)
            unrolled = None if trips is None else _unrolled(graph, key, node, graph_proto, tensors, name, trips,
                                                           analyze_body, warnings)
            if unrolled is not None:
                return unrolled
            varying = True
        try:
            macs, flops, params, weight_bytes, nodes, unsupported, notes, parts = analyze_body(body, tensors,
                                                                                               outer_constants)
        except ShapeError as error:
            raise ShapeError(f"{key} ({node.op_type}) {name}: {error}") from None
        subgraphs.append(SubgraphCost(name, macs, flops, params, nodes, unsupported, weight_bytes, parts))
        warnings.extend(f"{key} {name}: {note}" for note in notes)
    if node.op_type == "If":
        chosen = max(subgraphs, key=lambda sub: (sub.macs, sub.flops), default=None)
        macs, flops = (chosen.macs, chosen.flops) if chosen else (0, 0)
        if not taken and chosen and any(sub.macs != chosen.macs for sub in subgraphs):
            warnings.append(f"{key} (If): its condition is not known from the input shapes; MACs count the larger "
                            f"branch ({chosen.name}, {chosen.macs:,} MACs) — an upper bound")
        basis = (f"taken branch ({taken}: condition known at these input shapes)" if taken else
                 f"larger branch ({chosen.name})" if chosen else "no branches")
        return ControlFlowCost(key, node.op_type, subgraphs, None, macs, flops, basis, False,
                               sum(sub.params for sub in subgraphs), sum(sub.weight_bytes for sub in subgraphs),
                               dict(chosen.flops_by_category) if chosen else {})
    per_trip_macs = sum(sub.macs for sub in subgraphs)
    per_trip_flops = sum(sub.flops for sub in subgraphs)
    per_trip_parts = _summed([sub.flops_by_category for sub in subgraphs])
    trips = loop_trips(graph, node) if node.op_type == "Loop" else scan_trips(graph, node)
    params = sum(sub.params for sub in subgraphs)
    weight_bytes = sum(sub.weight_bytes for sub in subgraphs)
    if varying:
        warnings.append(f"{key} (Loop): a loop-carried tensor changes shape from trip to trip; MACs count the "
                        f"first trip ({per_trip_macs:,} MACs) — the total is not an upper bound")
        return ControlFlowCost(key, node.op_type, subgraphs, trips, per_trip_macs, per_trip_flops,
                               "one trip (shapes vary per trip)", True, params, weight_bytes, per_trip_parts)
    if trips is None:
        cap = constant_int(graph, node.inputs[0]) if node.op_type == "Loop" and node.inputs else None
        why = ("no static trip count" if cap is None else
               f"a while loop (M = {cap:,} is an exporter's placeholder and the condition is computed)")
        warnings.append(f"{key} ({node.op_type}): {why}; MACs count one trip "
                        f"({per_trip_macs:,} MACs per trip) — the total is not an upper bound")
        return ControlFlowCost(key, node.op_type, subgraphs, None, per_trip_macs, per_trip_flops,
                               "one trip (unbounded)", True, params, weight_bytes, per_trip_parts)
    if node.op_type == "Loop" and has_computed_condition(graph, node):
        warnings.append(f"{key} (Loop): its condition is computed; {trips} trips × body is an upper bound")
    return ControlFlowCost(key, node.op_type, subgraphs, trips, trips * per_trip_macs, trips * per_trip_flops,
                           "trips × body", False, params, weight_bytes,
                           {name: trips * value for name, value in per_trip_parts.items()})


def _summed(parts: list[dict[str, int]]) -> dict[str, int]:
    """The sum of (category → flops) dicts, key by key, in the order the keys first appear."""
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return total


def _subgraph(graph: Graph, graph_proto, tensors: dict, decided: dict[str, str] | None = None
              ) -> tuple[Graph, set[str]]:
    """An If branch or Loop/Scan body as an IR, with the outer constants and shapes it reads; and those constants.

    An If condition it reads (at any depth) from the enclosing graph that is computed there from constants and
    static shapes (`Shape(x)[2] > 48`) is one of those constants: loop-invariant, it decides the If once for
    every trip. The body's Ifs get their branch taken: from `decided` ({first output: branch}, the branches
    shapes.branches took for Ifs nested in a taken branch, handed down to deeper levels) or from a one-element
    constant condition.
    """
    body = subgraph_ir(graph_proto, graph, tensors)
    outer_constants = set()
    conditions = _if_conditions(graph_proto)
    for outer in outer_scope_reads(graph_proto):   # shapes and constness come from the enclosing graph
        if outer in graph.initializers:
            body.initializers.setdefault(outer, graph.initializers[outer])
            outer_constants.add(outer)
            continue
        value = computed_value(graph, outer) if outer in conditions and graph.producer(outer) is not None else None
        if value is not None and value.size == 1:
            body.initializers[outer] = Initializer.from_array(outer, value)
            outer_constants.add(outer)
        elif graph.shape(outer) is not None:
            body.tensors.setdefault(outer, TensorInfo(outer, graph.dtype(outer), graph.shape(outer)))
    for node in body.nodes.values():
        if node.op_type == "If" and node.domain in ("", "ai.onnx") and BRANCH_TAKEN not in node.meta:
            first = next((name for name in node.outputs if name), "")
            constant = body.initializers.get(node.inputs[0]) if node.inputs and node.inputs[0] else None
            if decided and first in decided:
                node.meta[BRANCH_TAKEN] = decided[first]
            elif constant is not None and constant.size == 1:
                node.meta[BRANCH_TAKEN] = "then_branch" if condition_value(constant.array) else "else_branch"
        if decided and node.op_type in CONTROL_FLOW_OPS:
            node.meta.setdefault(NESTED_TAKEN, decided)
    return body, outer_constants


def _if_conditions(graph_proto) -> set[str]:
    """The conditions of the If nodes in `graph_proto` and the graphs nested in it."""
    found = set()
    for proto in graph_proto.node:
        if proto.op_type == "If" and proto.input:
            found.add(proto.input[0])
        for nested in attribute_graphs(proto):
            found |= _if_conditions(nested)
    return found


def _seed_loop_body(body: Graph, graph: Graph, node: Node) -> bool:
    """Give a Loop body the shapes of its first trip; False when a carried shape changes per trip.

    onnx shape inference does not pass the initial values' shapes into a Loop body (a
    carried tensor may change shape from trip to trip), so a body that does not declare
    them has none. Here the body is inferred again with the initial values' types
    (iteration number int64 and condition bool scalars); if every carried output then has
    its input's shape, each trip costs the same.
    """
    carried_outer, carried_inner = node.inputs[2:], body.inputs[2:]
    if all(is_static_shape(body.shape(name)) for name in carried_inner) and all(
            is_static_shape(body.shape(name)) for name in body.outputs[1:1 + len(carried_inner)]) and not any(
            node.op_type == "If" and BRANCH_TAKEN not in node.meta for node in body.nodes.values()):
        return _same_shapes(body, carried_inner)   # (an open If is inferred: the shapes may decide its condition)
    seeds = {inner: (graph.dtype(outer), graph.shape(outer)) for outer, inner in zip(carried_outer, carried_inner)
             if outer and is_static_shape(graph.shape(outer)) and not is_static_shape(body.shape(inner))}
    if not _infer_body(body, seeds):
        return True   # left as it was; a MAC-bearing op without a shape is reported by its rule
    return _same_shapes(body, carried_inner)


def _infer_body(body: Graph, seeds: dict[str, tuple[int, Shape | None]],
                constants: frozenset[str] | set[str] = frozenset()) -> bool:
    """Infer a Loop body's shapes with `seeds` ({carried input: (dtype, shape)}); False on a ShapeError.

    The iteration number and condition are int64 and bool scalars; `constants` are body inputs
    given a value as an initializer for this inference (the iteration number of an unrolled
    trip); outer-scope reads with a shape become inputs of the copy that is inferred.
    """
    seeds = ({body.inputs[0]: (INT64, ()), body.inputs[1]: (BOOL, ())} if len(body.inputs) >= 2 else {}) | seeds
    for name, (dtype, shape) in seeds.items():
        if name in constants:
            continue
        if shape == () or not is_static_shape(body.shape(name)) or body.shape(name) != shape:
            body.tensors[name] = TensorInfo(name, dtype or body.dtype(name), shape)
    interface = list(body.inputs)
    body.inputs = [name for name in interface if name not in constants]
    body.inputs += [name for name in dict.fromkeys(tensor for node in body.nodes.values() for tensor in node.all_inputs)
                    if name and name not in body.initializers and body.producer(name) is None
                    and name not in interface and body.shape(name) is not None]   # outer reads, for the copy
    try:
        infer_shapes(body)
    except ShapeError:
        return False
    finally:
        body.inputs = interface
    return True


MAX_UNROLLED_TRIPS = 64          # a Loop whose carried shapes change is analyzed trip by trip up to this many trips
MAX_UNROLLED_NODES = 20_000      # ... and up to this many body nodes over all its trips (work bounded before spent)


def _unrolled(graph: Graph, key: str, node: Node, graph_proto, tensors: dict, name: str, trips: int,
              analyze_body: BodyAnalyzer, warnings: list[str]) -> ControlFlowCost | None:
    """A Loop whose carried shapes change per trip, analyzed trip by trip: exact MACs, or None.

    Trip t's body is inferred with the carried shapes trip t−1 produced (trip 0: the initial
    values'), then analyzed; MACs and FLOPs add up, params and weight bytes count once. None
    (the caller flags the loop) when a trip's carried shapes are not static, the body holds
    control flow of its own, or trips × body nodes exceeds MAX_UNROLLED_TRIPS / MAX_UNROLLED_NODES.
    With a computed condition the loop may stop early: the sum over all M trips is then an upper bound.
    """
    carried_outer = node.inputs[2:]
    body_nodes = len(graph_proto.node)
    if (trips > MAX_UNROLLED_TRIPS or trips * body_nodes > MAX_UNROLLED_NODES
            or any(proto.op_type in CONTROL_FLOW_OPS and not proto.domain for proto in graph_proto.node)):
        return None
    current = [(graph.dtype(outer), graph.shape(outer)) if outer else (0, None) for outer in carried_outer]
    macs = flops = params = weight_bytes = nodes = 0
    unsupported: list[str] = []
    notes: list[str] = []
    trip_parts: list[dict[str, int]] = []
    for trip in range(trips):
        if not all(is_static_shape(shape) for _, shape in current):
            return None
        body, outer_constants = _subgraph(graph, graph_proto, tensors)
        for proto in graph_proto.node:   # shapes inferred for the first trip do not hold for this one
            for output in proto.output:
                body.tensors.pop(output, None)
        carried_inner = body.inputs[2:]
        iteration = body.inputs[0] if body.inputs else ""
        if iteration:   # this trip's iteration number: shapes may depend on it (a Slice to i + 1)
            body.initializers[iteration] = Initializer.from_array(iteration, np.array(trip, np.int64))
            outer_constants.add(iteration)   # a loop counter, not a parameter
        if not _infer_body(body, {inner: seed for inner, seed in zip(carried_inner, current)}, constants={iteration}):
            return None
        try:
            trip_macs, trip_flops, trip_params, trip_bytes, nodes, unsupported, notes, parts = analyze_body(
                body, tensors, outer_constants)
        except ShapeError as error:
            raise ShapeError(f"{key} (Loop) {name}, trip {trip}: {error}") from None
        macs, flops = macs + trip_macs, flops + trip_flops
        trip_parts.append(parts)
        if trip == 0:
            params, weight_bytes = trip_params, trip_bytes
        outputs = body.outputs[1:1 + len(carried_inner)]
        current = [(body.dtype(output) or dtype, body.shape(output)) for output, (dtype, _) in zip(outputs, current)]
    warnings.extend(f"{key} {name}: {note}" for note in notes)
    if has_computed_condition(graph, node):
        warnings.append(f"{key} (Loop): its condition is computed; the sum over {trips} trips is an upper bound")
    parts = _summed(trip_parts)
    return ControlFlowCost(key, "Loop", [SubgraphCost(name, macs, flops, params, nodes, unsupported, weight_bytes,
                                                      parts)],
                           trips, macs, flops, "the sum over its trips (shapes change per trip)", False,
                           params, weight_bytes, dict(parts))


def _iteration_shaped(body: Graph) -> bool:
    """Whether a Loop body reads its iteration number and has tensors without a static shape: shapes that may
    follow the iteration number (rows [0, i + 1)), which only a trip-by-trip analysis can give."""
    iteration = body.inputs[0] if body.inputs else ""
    if not iteration or not any(iteration in node.inputs for node in body.nodes.values()):
        return False
    return any(not is_static_shape(body.shape(tensor)) for node in body.nodes.values() for tensor in node.outputs
               if tensor)


def _same_shapes(body: Graph, carried_inner: list[str]) -> bool:
    outputs = body.outputs[1:1 + len(carried_inner)]
    return all(body.shape(inner) == body.shape(output) or not is_static_shape(body.shape(output))
               for inner, output in zip(carried_inner, outputs))

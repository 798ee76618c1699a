"""The segcost IR: a networkx.DiGraph of operator nodes plus tensor tables.

Nodes of the DiGraph are keyed by a unique string (the ONNX node name when it is unique,
else a generated one); the data of each node is a `Node` under the key ``"node"``. An
edge u → v means v consumes at least one tensor that u produces; the tensor names are on
the edge under ``"tensors"``. Tensor metadata, constant tensors (initializers) and the
graph's inputs/outputs live in plain dicts/lists beside the DiGraph, so analysis and
passes read shapes without touching protobufs.

The DiGraph (`Graph.dag`) is built on first use from the node and producer/consumer tables,
which every mutation keeps current. Reading a model and counting its cost (`segcost
analyze`) walks the tables only: importing networkx and filling a DiGraph cost more than
the whole analysis of a small model (60 ms of 250 ms CPU), and 1 s at 100k nodes.
Passes that need graph algorithms (ancestors, a topological sort of a rewritten graph) ask
for `dag` and from then on it is kept in step with every mutation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from segcost.ir.subgraphs import rename_implicit_input

if TYPE_CHECKING:
    import networkx as nx

# A dimension is an int (known), a str (symbolic, e.g. "batch") or None (unknown).
Dim = int | str | None
Shape = tuple[Dim, ...]


def is_static_shape(shape: Shape | None) -> TypeGuard[tuple[int, ...]]:
    """True when the rank is known and every dim is an int (narrows Shape to tuple[int, ...] for mypy)."""
    # map over int.__instancecheck__ is isinstance(dim, int) without a generator frame per
    # call: 2.5x faster, and this runs several times per node of the analysis.
    return shape is not None and all(map(_is_int, shape))


_is_int = int.__instancecheck__


@dataclass(slots=True)  # slots: one per tensor, 100k+ of them in a large graph
class TensorInfo:
    """Static type of a tensor: ONNX element type and shape (None when the rank is unknown)."""

    name: str
    dtype: int = 0
    shape: Shape | None = None

    @property
    def is_static(self) -> bool:
        return is_static_shape(self.shape)


@dataclass(slots=True)
class Node:
    """One operator. `attrs` holds decoded values; `attr_types` keeps the ONNX types for export."""

    name: str
    op_type: str
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    attr_types: dict[str, int] = field(default_factory=dict)
    doc_string: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # The ONNX node's metadata_props (key → value), written back unchanged: exporters' provenance such as
    # torch dynamo's module path ("pkg.torch.onnx.name_scopes", read by analyzer.grouping).
    metadata_props: dict[str, str] = field(default_factory=dict)
    # Outer-scope tensors its subgraphs (If/Loop/Scan) read by name: edges like `inputs`,
    # never exported as inputs (see segcost.ir.subgraphs).
    implicit_inputs: list[str] = field(default_factory=list)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def all_inputs(self) -> list[str]:
        """Explicit inputs, then the tensors subgraphs read from outside (what liveness and edges need)."""
        return [*self.inputs, *self.implicit_inputs] if self.implicit_inputs else self.inputs


class Initializer:
    """A constant tensor whose data is read only when asked for.

    Analysis needs shapes, not data, so loading a 130 MB model must not convert every
    weight to numpy. The source is either the original TensorProto (inline data), an
    external-data file region (validated by the loader), or an array set by a pass.
    """

    __slots__ = ("name", "dtype", "shape", "_proto", "_array", "_external")

    def __init__(self, name: str, dtype: int, shape: tuple[int, ...], proto: Any = None,
                 array: np.ndarray | None = None, external: tuple[Any, int, int] | None = None):
        self.name = name
        self.dtype = dtype
        self.shape = tuple(map(int, shape))
        self._proto = proto
        self._array = array
        self._external = external  # (ir.datafile.HeldFile, offset, length), checked by the loader

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> Initializer:
        from onnx import helper

        return cls(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape, array=array)

    @property
    def is_lazy(self) -> bool:
        """True when the data lies in a file region (external data or a skipped payload)."""
        return self._external is not None and self._array is None

    @property
    def size(self) -> int:
        """Number of elements (exact int)."""
        return prod(self.shape)  # math.prod: exact int, and 10x cheaper than np.prod on a tuple

    @property
    def nbytes(self) -> int:
        """Bytes of its data as ONNX stores it (sub-byte types packed: tensor_nbytes)."""
        return tensor_nbytes(self.dtype, self.size)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self._load()
        return self._array

    def _load(self) -> np.ndarray:
        from onnx import TensorProto, helper, numpy_helper

        if self._external is not None:
            source, offset, length = self._external
            if _DTYPE_BITS.get(self.dtype, 0) % 8:   # packed sub-byte elements: onnx unpacks them
                return numpy_helper.to_array(TensorProto(name=self.name, data_type=self.dtype, dims=self.shape,
                                                         raw_data=source.read(offset, self.nbytes)))
            np_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(self.dtype)).newbyteorder("<")
            count = length // np_dtype.itemsize
            # Only the region is read, through the descriptor the loader checked (ir.datafile).
            return source.read_array(np_dtype, count, offset).reshape(self.shape)
        return numpy_helper.to_array(self._proto)

    def to_proto(self) -> Any:
        """TensorProto with inline data; the original proto is reused when it holds the data itself.

        Reading `.array` does not count as a change: an initializer is rebuilt only when it
        came from a file region or was created from an array (``from_array``).
        """
        from onnx import numpy_helper

        if self._proto is not None and self._external is None:
            if self._proto.name == self.name:
                return self._proto
            proto = type(self._proto)()  # a lifted Constant's value: the attribute tensor has no name
            proto.CopyFrom(self._proto)
            proto.name = self.name
            return proto
        array = self.array
        # np.ascontiguousarray would turn a 0-d scale into shape (1,): keep the rank.
        return numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(), self.name)

    def __repr__(self) -> str:
        return f"Initializer({self.name!r}, dtype={self.dtype}, shape={self.shape})"


def dtype_bits(dtype: int) -> int:
    """Bits per element of an ONNX element type (TensorProto.DataType): 4 for int4/uint4/float4e2m1, 2 for
    int2/uint2, 6 for float6; 0 for STRING and unknown types.

    Source: onnx/onnx.proto3 DataType comments (sub-byte types are packed, "2 per byte" / "4 per byte",
    low bits first) and onnx.helper.make_tensor's raw-data sizes; tests/test_dtype_bits.py checks this
    table against onnx's own packing for every type onnx knows. Written out instead of importing onnx
    so that the IR stays importable without touching onnx's C extension.
    """
    return _DTYPE_BITS.get(dtype, 0)


def tensor_nbytes(dtype: int, elements: int) -> int:
    """Bytes `elements` elements of ONNX type `dtype` occupy, packed as ONNX stores them: ceil(elements·bits/8)
    (exact int; 0 for STRING and unknown types). The one rule for payload checks, weight, activation and
    memory byte counts."""
    return (elements * _DTYPE_BITS.get(dtype, 0) + 7) // 8


# ONNX TensorProto.DataType → bits per element.
_DTYPE_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 8: 0, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2,
    27: 6, 28: 6,
}


@dataclass
class ModelInfo:
    """Model-level fields carried through the IR untouched so export reproduces them."""

    ir_version: int = 8
    opset_imports: dict[str, int] = field(default_factory=lambda: {"": 17})
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    graph_name: str = "graph"
    graph_doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)
    functions: list[Any] = field(default_factory=list)  # FunctionProtos, passed through
    path: str | None = None
    resources: list[Any] = field(default_factory=list)  # e.g. a temp dir the weights are read from
    lifted_constants: list[str] = field(default_factory=list)  # Constant nodes read as initializers
    shape_conflicts: list[Any] = field(default_factory=list)  # segcost.shapes.ShapeConflict: declared ≠ computed
    exported_input_shapes: dict[str, Any] = field(default_factory=dict)  # file's input shapes --input-shape replaced
    initializer_inputs: list[str] = field(default_factory=list)  # initializers the file also lists as inputs
    inlined_function_calls: int = 0   # calls of model-local functions the loader replaced by their bodies
    # initializers whose integer type is the storage of a float weight (segcost.quant.footprint's int8 view):
    # params whatever their type (analyzer.weights.is_weight judges the others)
    stored_weights: frozenset[str] = frozenset()

    @property
    def opset(self) -> int:
        return self.opset_imports.get("", self.opset_imports.get("ai.onnx", 0))


class Graph:
    """The IR. The node table (`nodes`, `dag`) is the single source of truth for nodes and their order."""

    def __init__(self, info: ModelInfo | None = None):
        self._nodes: dict[str, Node] = {}
        self._dag: nx.DiGraph | None = None   # built on first use of `dag`, then kept in step
        self.info = info or ModelInfo()
        self.tensors: dict[str, TensorInfo] = {}
        self.initializers: dict[str, Initializer] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._producer: dict[str, str] = {}
        # {tensor: keys of the nodes reading it}: built from the nodes on first use (reading a
        # model and costing it never asks), then kept in step with every mutation like the rest
        self._consumer_table: dict[str, set[str]] | None = None
        self._next_order = 0
        self._topological: list[str] | None = None   # topological_order() until the next mutation
        self._topological_is_file_order = False        # ... and whether it is the nodes' own order

    @property
    def dag(self) -> nx.DiGraph:
        """The networkx.DiGraph of the nodes (data ``node``) and their edges (data ``tensors``).

        Built from the node and producer tables when first asked for (see the module docstring);
        networkx is imported here, so commands that never need it never load it.
        """
        if self._dag is None:
            import networkx as nx  # deferred for start-up time only (no import cycle): ~60 ms CPU

            dag: nx.DiGraph = nx.DiGraph()
            dag.add_nodes_from((key, {"node": node}) for key, node in self._nodes.items())
            dag.add_edges_from((producer, consumer, {"tensors": tensors})
                               for (producer, consumer), tensors in self._edge_tensors().items())
            self._dag = dag
        return self._dag

    @property
    def _consumers(self) -> dict[str, set[str]]:
        table = self._consumer_table
        if table is None:
            table = self._consumer_table = {}
            for key, node in self._nodes.items():
                for tensor in node.all_inputs:
                    if tensor:   # an omitted optional input reads nothing
                        users = table.get(tensor)
                        if users is None:
                            table[tensor] = {key}
                        else:
                            users.add(key)
        return table

    @property
    def nodes(self) -> dict[str, Node]:
        """{key: Node} in insertion order (file order for a loaded model); read-only for callers."""
        return self._nodes

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every (producer key, consumer key) pair once, from the tables (no DiGraph needed)."""
        return iter(self._edge_tensors())

    def _edge_tensors(self) -> dict[tuple[str, str], set[str]]:
        """{(producer, consumer): tensors} in node order, from the producer table and the nodes' inputs."""
        producer_of = self._producer.get
        edges: dict[tuple[str, str], set[str]] = {}
        for key, node in self._nodes.items():
            for tensor in node.all_inputs:
                producer = producer_of(tensor) if tensor else None
                if producer is not None:
                    tensors = edges.get((producer, key))
                    if tensors is None:
                        edges[producer, key] = {tensor}
                    else:
                        tensors.add(tensor)
        return edges

    # -- nodes ---------------------------------------------------------------------------
    def add_node(self, node: Node, key: str | None = None) -> str:
        """Insert a node and wire edges to the producers of its inputs and the consumers of its outputs.

        Order does not matter: a consumer may be added before its producer (files that are
        not topologically sorted, or passes replacing a node).
        """
        from segcost.errors import GraphError

        key = key or self._unique_key(node.name or node.op_type)
        self._topological = None
        if key in self._nodes:
            raise GraphError(f"duplicate node key {key!r}")
        produced: set[str] = set()
        for tensor in node.outputs:
            other = (key if tensor in produced else self._producer.get(tensor)) if tensor else None
            if other is not None:
                raise GraphError(f"tensor {tensor!r} is produced by two nodes: {other!r} and {key!r}")
            produced.add(tensor)
        node.meta.setdefault("order", self._next_order)
        self._next_order = max(self._next_order, node.meta["order"]) + 1
        self._nodes[key] = node
        if self._dag is not None:
            self._dag.add_node(key, node=node)
        for tensor in node.outputs:
            if not tensor:
                continue
            self._producer[tensor] = key
            for consumer in self._consumers.get(tensor, ()):
                self._add_edge(key, consumer, tensor)
        for tensor in node.all_inputs:
            if not tensor:
                continue  # an omitted optional input
            self._consumers.setdefault(tensor, set()).add(key)
            producer = self._producer.get(tensor)
            if producer is not None:
                self._add_edge(producer, key, tensor)
        return key

    def add_nodes(self, keyed_nodes: Iterable[tuple[str, Node]]) -> None:
        """Insert many (key, node) pairs with the checks and wiring of add_node, all or none.

        The tables are filled in bulk (comprehensions and dict updates: a model's 100k nodes
        are inserted this way); a DiGraph already built gets its nodes and edges in bulk
        (networkx's add_nodes_from/add_edges_from).
        """
        keyed_nodes = list(keyed_nodes)
        self._topological = None
        existing = self._nodes
        added = dict(keyed_nodes)
        produced = [(tensor, key) for key, node in keyed_nodes for tensor in node.outputs if tensor]
        new_producers = dict(produced)
        if (len(added) != len(keyed_nodes) or not added.keys().isdisjoint(existing)
                or len(new_producers) != len(produced) or not new_producers.keys().isdisjoint(self._producer)):
            self._refuse_duplicates(keyed_nodes)
        dag = self._dag
        edges: dict[tuple[str, str], set[str]] | None = {} if dag is not None else None
        if edges is not None:
            for tensor, key in new_producers.items():  # consumers already in the graph
                for consumer in self._consumers.get(tensor, ()):
                    edges.setdefault((key, consumer), set()).add(tensor)
        self._producer.update(new_producers)
        # each node's "order" (kept, or the next free number) and the next free number after them,
        # as add_node sets them one at a time: next = max(next, order) + 1 per node
        next_order = self._next_order
        for _, node in keyed_nodes:
            next_order = max(next_order, node.meta.setdefault("order", next_order)) + 1
        self._next_order = next_order
        existing.update(added)
        consumers = self._consumer_table
        if consumers is None and edges is None:
            return   # the consumer table is built from the nodes when first asked for
        producer_of = self._producer.get
        for key, node in keyed_nodes:
            for tensor in node.all_inputs:
                if not tensor:
                    continue  # an omitted optional input
                if consumers is not None:
                    users = consumers.get(tensor)
                    if users is None:
                        consumers[tensor] = {key}
                    else:
                        users.add(key)
                if edges is not None:
                    producer = producer_of(tensor)
                    if producer is not None:
                        edges.setdefault((producer, key), set()).add(tensor)
        if dag is not None and edges is not None:
            dag.add_nodes_from((key, {"node": node}) for key, node in keyed_nodes)
            dag.add_edges_from((producer, consumer, {"tensors": tensors})
                               for (producer, consumer), tensors in edges.items())

    def add_read_nodes(self, nodes: dict[str, Node], producers: dict[str, str]) -> None:
        """Fill a graph without nodes with a model's nodes as a reader found them, as add_nodes would.

        The reader (segcost.ir.onnx_io) has what add_nodes derives and checks already: unique
        keys, `producers` ({tensor: node key}, no tensor produced twice), and each node's
        meta["order"] set, increasing in `nodes`' order. Taking its tables saves re-walking
        100k nodes. A graph that has nodes gets them through add_nodes.
        """
        if self._nodes or self._producer or self._dag is not None or self._consumer_table is not None:
            self.add_nodes(nodes.items())
            return
        self._topological = None
        self._nodes = nodes
        self._producer = producers
        if nodes:
            self._next_order = max(self._next_order, next(reversed(nodes.values())).meta["order"] + 1)

    def _refuse_duplicates(self, keyed_nodes: list[tuple[str, Node]]) -> None:
        """Raise GraphError for the first key taken twice or tensor produced twice, in node order."""
        from segcost.errors import GraphError

        keys: set[str] = set()
        new_producers: dict[str, str] = {}
        for key, node in keyed_nodes:
            if key in keys or key in self._nodes:
                raise GraphError(f"duplicate node key {key!r}")
            keys.add(key)
            for tensor in node.outputs:
                if not tensor:
                    continue
                other = new_producers.get(tensor) or self._producer.get(tensor)
                if other is not None:
                    raise GraphError(f"tensor {tensor!r} is produced by two nodes: {other!r} and {key!r}")
                new_producers[tensor] = key

    def remove_node(self, key: str) -> None:
        node = self.node(key)
        self._topological = None
        for tensor in node.outputs:
            if self._producer.get(tensor) == key:
                del self._producer[tensor]
        for tensor in node.all_inputs:
            users = self._consumers.get(tensor)
            if users is not None:
                users.discard(key)
                if not users:
                    del self._consumers[tensor]
        del self._nodes[key]
        if self._dag is not None:
            self._dag.remove_node(key)

    def replace_input(self, key: str, old: str, new: str) -> None:
        """Make node `key` read `new` wherever it read `old`, keeping edges in sync.

        A subgraph reading `old` from the outer scope is rewritten too (on a copy of its
        GraphProto), so an If/Loop/Scan keeps reading the tensor it read before.
        """
        node = self.node(key)
        self._topological = None
        node.inputs = [new if tensor == old else tensor for tensor in node.inputs]
        if old in node.implicit_inputs:
            rename_implicit_input(node, old, new)
        self._consumers.get(old, set()).discard(key)
        if old in self._consumers and not self._consumers[old]:
            del self._consumers[old]
        old_producer = self._producer.get(old)
        dag = self._dag
        if dag is not None and old_producer is not None and dag.has_edge(old_producer, key):
            tensors = dag.edges[old_producer, key]["tensors"]
            tensors.discard(old)
            if not tensors:
                dag.remove_edge(old_producer, key)
        self._consumers.setdefault(new, set()).add(key)
        new_producer = self._producer.get(new)
        if new_producer is not None:
            self._add_edge(new_producer, key, new)

    def append_input(self, key: str, tensor: str) -> None:
        """Add `tensor` as the next input of node `key` (e.g. a bias a fusion created)."""
        self._topological = None
        self.node(key).inputs.append(tensor)
        self._consumers.setdefault(tensor, set()).add(key)
        producer = self._producer.get(tensor)
        if producer is not None:
            self._add_edge(producer, key, tensor)

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer (and graph output slot) of tensor `old` read `new` instead."""
        for consumer in self.consumers(old):
            self.replace_input(consumer, old, new)
        self.outputs = [new if tensor == old else tensor for tensor in self.outputs]

    def rename_output(self, key: str, old: str, new: str) -> None:
        """Let node `key` produce tensor `new` where it produced `old` (consumers of `old` are left alone)."""
        node = self.node(key)
        self._topological = None
        node.outputs = [new if tensor == old else tensor for tensor in node.outputs]
        if self._producer.get(old) == key:
            del self._producer[old]
        dag = self._dag
        if dag is not None:
            for consumer in list(dag.successors(key)):
                tensors = dag.edges[key, consumer]["tensors"]
                tensors.discard(old)
                if not tensors:
                    dag.remove_edge(key, consumer)
        self._producer[new] = key
        for consumer in self._consumers.get(new, ()):
            self._add_edge(key, consumer, new)
        if old in self.tensors and new not in self.tensors:
            self.tensors[new] = TensorInfo(new, self.tensors[old].dtype, self.tensors[old].shape)

    def node(self, key: str) -> Node:
        return self._nodes[key]

    def producer(self, tensor: str) -> str | None:
        return self._producer.get(tensor)

    def produced(self) -> Mapping[str, str]:
        """{tensor: key of the node producing it}, read-only (the table itself: no copy at 100k nodes)."""
        return MappingProxyType(self._producer)

    def consumers(self, tensor: str) -> list[str]:
        return sorted(self._consumers.get(tensor, ()))

    def topological_order(self) -> list[str]:
        """Node keys in a topological order that keeps the original file order where it can.

        Raises networkx.NetworkXUnfeasible on a cycle (the loader turns that into a GraphError).
        The order is kept until the graph is next changed through its methods (the loader's
        check and the analysis both ask for it).
        """
        if self._topological is not None:
            return list(self._topological)
        order = {key: node.meta.get("order", 0) for key, node in self._nodes.items()}
        if self.in_file_order(order):
            return self.keep_file_order(order)
        import networkx as nx  # deferred: only a graph stored out of order needs networkx's sort

        self._topological = list(nx.lexicographical_topological_sort(self.dag, key=order.__getitem__))
        self._topological_is_file_order = False
        return list(self._topological)

    def in_file_order(self, order: dict[str, int] | None = None) -> bool:
        """True when every producer's `order` is below its consumers' (then that order is topological).

        Files are nearly always written in topological order: checking that is O(inputs) on
        the tables, while networkx's heap-based sort costs a second at 100k nodes. Without
        `order` (the nodes' own), a True answer also keeps that order for topological_order().
        """
        own = order is None
        if order is None:
            if self._topological is not None and self._topological_is_file_order:
                return True
            order = {key: node.meta.get("order", 0) for key, node in self._nodes.items()}
        producer_of = self._producer.get
        for key, node in self._nodes.items():
            rank = order[key]
            for tensor in node.all_inputs:
                producer = producer_of(tensor) if tensor else None
                if producer is not None and order[producer] >= rank:
                    return False
        if own:
            self.keep_file_order(order)
        return True

    def keep_file_order(self, order: dict[str, int] | None) -> list[str]:
        """Record that `order` ({key: the nodes' own "order"}) was checked topological (by verify_graph).

        None: the nodes' insertion order is their "order" (a graph add_read_nodes filled) and
        was checked. Returns a copy of the node keys sorted by it.
        """
        keys = list(self._nodes) if order is None else sorted(order, key=order.__getitem__)
        self._topological, self._topological_is_file_order = keys, True
        return list(keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.topological_order())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def is_constant(self, tensor: str) -> bool:
        """True for an initializer — which includes every Constant node's value: the ONNX reader
        lifts them (segcost.ir.onnx_io), so no pass or rule needs a second lookup."""
        return tensor in self.initializers

    def shape(self, tensor: str) -> Shape | None:
        info = self.tensors.get(tensor)
        if info is not None and info.shape is not None:
            return info.shape
        init = self.initializers.get(tensor)
        return init.shape if init is not None else None

    def dtype(self, tensor: str) -> int:
        info = self.tensors.get(tensor)
        if info is not None and info.dtype:
            return info.dtype
        init = self.initializers.get(tensor)
        return init.dtype if init is not None else 0

    # -- internals -----------------------------------------------------------------------
    def _unique_key(self, base: str) -> str:
        if base not in self._nodes:
            return base
        suffix = 1
        while f"{base}__{suffix}" in self._nodes:
            suffix += 1
        return f"{base}__{suffix}"

    def _add_edge(self, producer: str, consumer: str, tensor: str) -> None:
        """Record an edge in a built DiGraph (without one, edges follow from the tables)."""
        dag = self._dag
        if dag is None:
            return
        if dag.has_edge(producer, consumer):
            dag.edges[producer, consumer]["tensors"].add(tensor)
        else:
            dag.add_edge(producer, consumer, tensors={tensor})

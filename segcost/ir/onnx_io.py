"""ONNX ModelProto ⇄ IR.

`from_model` builds the IR from an already validated ModelProto (the frontend loader does
the file handling and safety checks); `to_model` writes it back. The round trip keeps node
names, attributes (with their ONNX types), node metadata_props, initializers, inputs/outputs,
value infos, opset imports, metadata and local functions, so the exported model runs identically.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from itertools import compress
from math import prod
from operator import attrgetter, itemgetter, methodcaller
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from segcost.errors import GraphError
from segcost.ir.datafile import HeldFile
from segcost.ir.graph import Graph, Initializer, ModelInfo, Node, Shape, TensorInfo, dtype_bits, tensor_nbytes
from segcost.ir.subgraphs import GRAPH_ATTRIBUTE, GRAPHS_ATTRIBUTE, implicit_inputs
from segcost.ir.verify import verify_graph

# (file, offset, length): a HeldFile opened once by the loader (frontends.confine), or a path
ExternalResolver = Callable[[onnx.TensorProto], tuple[HeldFile | Path, int, int]]

# Node metadata that survives a round trip through a file, stored as "segcost:key=value"
# lines in the node's doc_string (standard ONNX, ignored by runtimes), so that e.g. a fused
# activation stays marked when an optimized model is read again.
PERSISTED_META = ("fused_activation", "fused_into", "created_by")
_META_PREFIX = "segcost:"


def _split_doc(doc_string: str) -> tuple[str, dict[str, str]]:
    lines, meta = [], {}
    for line in doc_string.splitlines():
        key, sep, value = line[len(_META_PREFIX):].partition("=")
        if line.startswith(_META_PREFIX) and sep and key in PERSISTED_META:
            meta[key] = value
        else:
            lines.append(line)
    return "\n".join(lines), meta


def _join_doc(doc_string: str, meta: dict) -> str:
    lines = [doc_string] if doc_string else []
    lines += [f"{_META_PREFIX}{key}={meta[key]}" for key in PERSISTED_META if key in meta]
    return "\n".join(lines)


def shape_of(type_proto: onnx.TypeProto, zero_is_unknown: bool = False) -> tuple[int, Shape | None]:
    """(elem_type, shape) of a tensor TypeProto; dims are int, symbol str, or None (unnamed).

    A negative dim_value is no size: exporters write -1 for a dynamic dim (paddle2onnx's
    batch), and it reads as an unnamed dim. With `zero_is_unknown` (a graph input's
    declaration, where some exporters write 0 for "dynamic"), so does 0; elsewhere 0 is an
    empty tensor's real size.
    """
    if not type_proto.HasField("tensor_type"):
        return 0, None
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return tensor_type.elem_type, None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            value = int(dim.dim_value)
            dims.append(value if value > 0 or (value == 0 and not zero_is_unknown) else None)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tensor_type.elem_type, tuple(dims)


# A node's fields as read from protobuf: name, op_type, domain, doc_string, inputs, outputs, its
# AttributeProtos and its metadata_props (StringStringEntryProtos). Strings a file holds as
# invalid UTF-8 come back from protobuf as bytes.
NodeRow = tuple[Any, Any, Any, Any, list[Any], list[Any], Any, Any]


def node_rows(onnx_graph: onnx.GraphProto, metadata: bool = True) -> list[NodeRow]:
    """Every node's fields, each read from protobuf once (see NodeRow).

    Every read of a upb message field builds a Python object; at 100k nodes reading them
    costs a tenth of a second, so the loader's checks and the IR build share one reading.
    `metadata`=False: the caller knows that no node has metadata_props (see
    NODE_METADATA_KEY); they are not read (10 ms at 100k nodes) and stand as ().
    """
    # A slice of a repeated field is a new list, built faster than list() of it. An empty
    # attribute (or metadata) list is kept as (): a held container keeps its node's message
    # wrapper alive (at 100k nodes, 37 MB more while the rows live).
    return [(node.name, node.op_type, node.domain, node.doc_string, node.input[:], node.output[:],
             attributes if (attributes := node.attribute) else (),
             props if metadata and (props := node.metadata_props) else ()) for node in onnx_graph.node]


# The key byte of NodeProto.metadata_props (field 9, length-delimited: 9 << 3 | 2) in the protobuf encoding: a
# node's serialized fields without this byte anywhere (in names, values or lengths either) have no metadata_props.
NODE_METADATA_KEY = bytes([onnx.NodeProto.DESCRIPTOR.fields_by_name["metadata_props"].number << 3 | 2])


def read_value_infos(graph: Graph, value_infos, skip: Container[str] = (), inputs: bool = False) -> None:
    """Record every tensor type in `value_infos` (but those named in `skip`) into graph.tensors.

    `value_infos`: a repeated ValueInfoProto field or a list (it is read twice). Later entries
    refine earlier ones. `inputs`: these are graph inputs (a declared 0 is no
    size there, see shape_of).
    """
    # Decoding a TypeProto field by field costs microseconds in Python, and a large graph has
    # few distinct types over many tensors: each distinct serialized type is decoded once
    # (equal bytes parse to equal messages, so the cache is exact). Names and types are read
    # with map/attrgetter, at C speed (100k value infos after shape inference).
    names = list(map(_NAME, value_infos))
    if skip:
        kept = [index for index, name in enumerate(names) if name not in skip]
        if len(kept) < len(names):
            value_infos = [value_infos[index] for index in kept]
            names = [names[index] for index in kept]
    serialized = list(map(_SERIALIZE, map(_TYPE, value_infos)))
    decoded = {key: shape_of(onnx.TypeProto.FromString(key), inputs) for key in set(serialized)}
    tensors = graph.tensors
    if tensors.keys().isdisjoint(names):   # nothing to refine, unless a name comes twice
        types = list(map(decoded.__getitem__, serialized))
        before = len(tensors)
        tensors.update(zip(names, map(TensorInfo, names, map(_FIRST, types), map(_SECOND, types))))
        if len(tensors) - before == len(names):
            return
        for name in names:   # a name came twice (seen from the count: no set of 100k names built to tell)
            tensors.pop(name, None)   # none was there before: the entries are added again below, refined
    for name, key in zip(names, serialized):
        dtype, shape = decoded[key]
        known = tensors.get(name)
        if known is not None:
            shape = known.shape if shape is None else shape
            dtype = dtype or known.dtype
        tensors[name] = TensorInfo(name, dtype, shape)


_NAME, _TYPE, _SERIALIZE = attrgetter("name"), attrgetter("type"), methodcaller("SerializeToString")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def from_model(model: onnx.ModelProto, resolve_external: ExternalResolver | None = None,
               payload_regions: dict[int, tuple[Path, int, int]] | None = None,
               rows: list[NodeRow] | None = None, verify: bool = False) -> Graph:
    """Build the IR. Initializer data stays in its TensorProto or file until needed.

    `payload_regions` maps an initializer's index to where its data lies in a file when the
    loader left it out of the parsed message (see frontends.protoscan). `rows` are the main
    graph's node_rows, when the loader has read them already (for its checks). `verify`: run
    ir.verify_graph on the result, with what the build's walk over the nodes found.

    Raises:
        GraphError: an initializer defined twice or whose bytes do not fit its dims, a tensor
            produced twice, a Constant's output that is an initializer too; with `verify`, what
            verify_graph raises.
    """
    payload_regions = payload_regions or {}
    onnx_graph = model.graph
    info = ModelInfo(
        ir_version=model.ir_version,
        opset_imports={opset.domain: opset.version for opset in model.opset_import},
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
        graph_name=onnx_graph.name or "graph",
        graph_doc_string=onnx_graph.doc_string,
        metadata_props={prop.key: prop.value for prop in model.metadata_props},
        functions=list(model.functions),
    )
    graph = Graph(info)
    reads: list[tuple[str, str]] | None = [] if verify else None
    _read_graph(graph, onnx_graph, resolve_external, payload_regions, rows, reads)
    # graph.inputs holds real inputs only; the initializers also listed as inputs (overridable defaults at
    # IR >= 4) are remembered so that a command writing the model can say they are no longer inputs
    info.initializer_inputs = [value.name for value in onnx_graph.input if value.name in graph.initializers]
    if reads is not None:
        verify_graph(graph, reads)
    return graph


def _read_graph(graph: Graph, onnx_graph: onnx.GraphProto, resolve_external: ExternalResolver | None,
                payload_regions: dict[int, tuple[Path, int, int]], rows: list[NodeRow] | None = None,
                reads: list[tuple[str, str]] | None = None) -> None:
    """Fill an empty IR from a GraphProto: initializers (and lifted Constants), interface, value infos, nodes.

    `rows`: node_rows(onnx_graph), when the caller has read them already. `reads`: a list to
    which the (node key, tensor) reads of tensors no earlier node produces are appended, in
    node order (for verify_graph).
    """
    initializers = graph.initializers
    region_of = payload_regions.get
    external_location = onnx.TensorProto.EXTERNAL
    for index, tensor in enumerate(onnx_graph.initializer):
        external: tuple[HeldFile | Path, int, int] | None = region_of(index)
        if resolve_external is not None and tensor.data_location == external_location:
            external = resolve_external(tensor)
        name = tensor.name
        if name in initializers:
            raise GraphError(f"initializer {name!r} is defined twice")
        init = Initializer(name, tensor.data_type, tensor.dims, proto=tensor, external=external)
        shape, dtype = init.shape, init.dtype
        # _check_payload's test for the common case (a payload region of a plain array), inline: 33k weights
        # (init.nbytes's own chain of calls left out: a tenth of the loop)
        if (external is None or external[2] != tensor_nbytes(dtype, prod(shape)) or not dtype_bits(dtype)
                or (shape and min(shape) < 0)):
            _check_payload(init, tensor, external)
        initializers[name] = init
    initializer_names = graph.initializers.keys()
    graph.inputs = [value.name for value in onnx_graph.input if value.name not in initializer_names]
    graph.outputs = [value.name for value in onnx_graph.output]
    read_value_infos(graph, onnx_graph.input, inputs=True)
    read_value_infos(graph, onnx_graph.value_info)
    read_value_infos(graph, onnx_graph.output)
    nodes: dict[str, Node] = {}
    producers: dict[str, str] = {}
    twice = False   # a tensor produced twice: add_nodes then raises the first one's GraphError
    decode = helper.get_attribute_value
    outputs = set(graph.outputs)
    subgraph_types = (GRAPH_ATTRIBUTE, GRAPHS_ATTRIBUTE)
    INT, INTS = onnx.AttributeProto.INT, onnx.AttributeProto.INTS  # noqa: N806 - the enum's names
    for index, (name, op_type, domain, doc_string, node_inputs, node_outputs, attributes, metadata) in enumerate(
            node_rows(onnx_graph) if rows is None else rows):
        if (op_type == "Constant" and not domain and len(node_outputs) == 1
                and node_outputs[0] and node_outputs[0] not in outputs):
            value = constant_value(onnx_graph.node[index])
            if value is not None:
                _lift_constant(graph, node_outputs[0], value, resolve_external)
                graph.info.lifted_constants.append(node_outputs[0])
                continue
        attrs: dict[str, Any] = {}
        attr_types: dict[str, int] = {}
        subgraphs = False
        for attribute in attributes:
            attribute_name, attribute_type = attribute.name, attribute.type
            # INTS and INT (kernel sizes, pads, strides, group) decoded here as get_attribute_value
            # does, without its chain of reads of `type`; it raises for a reference attribute
            if attribute_type == INTS and not attribute.ref_attr_name:
                attrs[attribute_name] = attribute.ints[:]
            elif attribute_type == INT and not attribute.ref_attr_name:
                attrs[attribute_name] = attribute.i
            else:
                attrs[attribute_name] = decode(attribute)
            attr_types[attribute_name] = attribute_type
            subgraphs = subgraphs or attribute_type in subgraph_types
        meta: dict[str, Any] = {"order": index}
        if doc_string:
            doc_string, persisted = _split_doc(doc_string)
            meta.update(persisted)
        node = Node(name, op_type, domain, node_inputs, node_outputs, attrs, attr_types, doc_string, meta)
        if metadata:   # exporters' provenance, e.g. torch dynamo's module path (pkg.torch.onnx.name_scopes)
            node.metadata_props = {key: value for entry in metadata
                                   if isinstance(key := entry.key, str) and isinstance(value := entry.value, str)}
        if subgraphs:
            node.implicit_inputs = implicit_inputs(attrs, attr_types)
        key = name if name and name not in nodes else _fallback_key(nodes, name or op_type, index)
        nodes[key] = node
        # Graph.add_nodes' tables and checks, and what verify_graph needs, in this one walk
        if reads is not None:
            for tensor in node.all_inputs if subgraphs else node_inputs:
                if tensor and tensor not in producers:
                    reads.append((key, tensor))
        for tensor in node_outputs:
            if tensor:
                if tensor not in producers:
                    producers[tensor] = key
                else:
                    twice = True
    if twice:
        graph.add_nodes(nodes.items())   # Graph's own check names the tensor and both nodes
    graph.add_read_nodes(nodes, producers)


def subgraph_ir(graph_proto: onnx.GraphProto, parent: Graph, tensors: dict[str, TensorInfo] | None = None) -> Graph:
    """An If branch or Loop/Scan body as an IR of its own, for analysis (never exported).

    Its constants are lifted like the main graph's; `tensors` (inferred shapes, see
    read_subgraph_infos) refine what the GraphProto declares. Tensors read from the outer
    scope have no producer here: callers look their shapes up in `parent`.
    """
    graph = Graph(ModelInfo(ir_version=parent.info.ir_version, opset_imports=dict(parent.info.opset_imports),
                            graph_name=graph_proto.name or "subgraph", path=parent.info.path))
    _read_graph(graph, graph_proto, None, {})
    for name, info in (tensors or {}).items():
        if name not in graph.initializers and info.shape is not None:
            graph.tensors[name] = info
    return graph


def nodes_with_subgraphs(graph: Graph) -> list[Node]:
    """The nodes with a GRAPH or GRAPHS attribute (If, Loop, Scan, ...), in node order."""
    nodes = graph.nodes.values()
    # compress/attrgetter pick the nodes with attributes at C speed (100k nodes, most without)
    return [node for node in compress(nodes, map(_ATTR_TYPES, nodes))
            if GRAPH_ATTRIBUTE in (types := node.attr_types.values()) or GRAPHS_ATTRIBUTE in types]


_ATTR_TYPES = attrgetter("attr_types")


def read_subgraph_infos(graph: Graph, inferred: onnx.GraphProto, targets: list[Node] | None = None) -> None:
    """Keep the shapes onnx shape inference found inside subgraphs, per control-flow node.

    onnx.shape_inference writes them into the inferred model's subgraph value_info (it
    infers branches and bodies with the outer scope's types). They are stored flat — all
    nesting levels together — in ``node.meta["subgraph_tensors"]``, relying on tensor names
    being unique across scopes (the ONNX IR spec's SSA rule, which exporters follow); a
    nested control-flow node uses its enclosing node's table. `targets`: nodes_with_subgraphs(graph),
    when the caller has found them (found here when not given).
    """
    if targets is None:
        targets = nodes_with_subgraphs(graph)
    if not targets:
        return
    protos = inferred.node
    by_output: dict[str, onnx.NodeProto] | None = None
    for node in targets:
        first = next((tensor for tensor in node.outputs if tensor), "")
        index = node.meta.get("order", -1)
        proto = protos[index] if 0 <= index < len(protos) and first in protos[index].output else None
        if proto is None:   # an inference copy written in another order (to_model sorts topologically)
            if by_output is None:
                by_output = {output: candidate for candidate in protos if candidate.attribute
                             for output in candidate.output if output}
            proto = by_output.get(first)
        if proto is None:
            continue
        found: dict[str, TensorInfo] = {}
        for attribute in proto.attribute:
            for graph_proto in ([attribute.g] if attribute.type == GRAPH_ATTRIBUTE else
                                attribute.graphs if attribute.type == GRAPHS_ATTRIBUTE else []):
                _collect_infos(graph_proto, found)
        node.meta["subgraph_tensors"] = found


def _collect_infos(graph_proto: onnx.GraphProto, found: dict[str, TensorInfo]) -> None:
    for value in (*graph_proto.input, *graph_proto.value_info, *graph_proto.output):
        dtype, shape = shape_of(value.type)
        known = found.get(value.name)
        if known is None or (shape is not None and known.shape is None):
            found[value.name] = TensorInfo(value.name, dtype, shape)
    for node_proto in graph_proto.node:
        for attribute in node_proto.attribute:
            for nested in ([attribute.g] if attribute.type == GRAPH_ATTRIBUTE else
                           attribute.graphs if attribute.type == GRAPHS_ATTRIBUTE else []):
                _collect_infos(nested, found)


def constant_value(node_proto: onnx.NodeProto) -> onnx.TensorProto | None:
    """The dense value of a Constant node as a TensorProto, or None (sparse_value, or malformed).

    value keeps its TensorProto (no copy: the data is read lazily like any initializer's);
    value_float(s)/value_int(s)/value_string(s) become scalar / 1-D tensors as the ONNX spec
    defines them (float32, int64, string). sparse_value stays a node: densifying it could
    need far more memory than the file holds.
    """
    if len(node_proto.attribute) != 1:
        return None
    attribute = node_proto.attribute[0]
    name, kind = attribute.name, attribute.type
    if name == "value" and kind == onnx.AttributeProto.TENSOR:
        return attribute.t
    scalar_types = {("value_float", onnx.AttributeProto.FLOAT): (onnx.TensorProto.FLOAT, attribute.f),
                    ("value_int", onnx.AttributeProto.INT): (onnx.TensorProto.INT64, attribute.i),
                    ("value_string", onnx.AttributeProto.STRING): (onnx.TensorProto.STRING, attribute.s)}
    if (name, kind) in scalar_types:
        dtype, value = scalar_types[name, kind]
        return helper.make_tensor("", dtype, [], [value])
    list_types = {("value_floats", onnx.AttributeProto.FLOATS): (onnx.TensorProto.FLOAT, attribute.floats),
                  ("value_ints", onnx.AttributeProto.INTS): (onnx.TensorProto.INT64, attribute.ints),
                  ("value_strings", onnx.AttributeProto.STRINGS): (onnx.TensorProto.STRING, attribute.strings)}
    if (name, kind) in list_types:
        dtype, values = list_types[name, kind]
        return helper.make_tensor("", dtype, [len(values)], list(values))
    return None


def _lift_constant(graph: Graph, name: str, tensor: onnx.TensorProto, resolve_external) -> None:
    """Make a Constant node's value the initializer `name` (one mechanism for every constant).

    onnx-ir's LiftConstantsToInitializersPass does the same on its own IR; here it happens
    once while reading, so every pass and cost rule — fusion, folding, the verifier, the cost
    model, params — sees a Constant's value exactly as it sees an initializer's.
    """
    if name in graph.initializers:
        raise GraphError(f"tensor {name!r} is both an initializer and a Constant node's output")
    external = None
    if tensor.data_location == onnx.TensorProto.EXTERNAL and resolve_external is not None:
        external = resolve_external(tensor)
    init = Initializer(name, tensor.data_type, tensor.dims, proto=tensor, external=external)
    _check_payload(init, tensor, external)
    graph.initializers[name] = init


def _check_payload(init: Initializer, tensor: onnx.TensorProto, external) -> None:
    """Stored bytes must match dims × element size, so that a lazy read can never fail later."""
    if min(init.shape, default=0) < 0:
        raise GraphError(f"initializer {init.name!r} has a negative dimension {list(init.shape)}")
    if external is not None:
        stored = external[2]
    elif tensor.HasField("raw_data"):
        stored = len(tensor.raw_data)
    else:
        return  # typed fields (float_data, ...) are checked by onnx's own conversion
    if not dtype_bits(init.dtype) or stored != init.nbytes:   # sub-byte types packed: ir.graph.tensor_nbytes
        raise GraphError(f"initializer {init.name!r}: {stored} bytes stored, but dims {list(init.shape)} of type "
                         f"{init.dtype} need {init.nbytes}")


def _fallback_key(taken: Container[str], base: str, index: int) -> str:
    """`base_index`, made unique as Graph does, for a node without a name or with a taken one."""
    key = base = f"{base}_{index}"
    suffix = 0
    while key in taken:
        suffix += 1
        key = f"{base}__{suffix}"
    return key


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    """The ValueInfoProto of `name`: its recorded type, or for an initializer without one (a graph output that
    is a weight: the passes track types of computed tensors) the initializer's own; untyped only when unknown."""
    info = graph.tensors.get(name)
    if (info is None or not info.dtype) and name in graph.initializers:
        init = graph.initializers[name]
        return helper.make_tensor_value_info(name, init.dtype, list(init.shape))
    if info is None:
        return helper.make_empty_tensor_value_info(name)
    return helper.make_tensor_value_info(name, info.dtype, list(info.shape) if info.shape is not None else None)


# What a weightless export keeps inline: the constants shape inference reads — integer
# shape/index data (Reshape targets, Slice bounds) and tiny float vectors (Resize scales).
# Weights, even of small layers, become typed inputs.
SMALL_CONSTANT_ELEMENTS = 4096
TINY_CONSTANT_ELEMENTS = 64
_INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # uint8/int8/uint16/int16/int32/int64/uint32/uint64


def keep_inline_for_inference(init) -> bool:
    if init.is_lazy:
        return False
    return (init.size <= TINY_CONSTANT_ELEMENTS
            or (init.dtype in _INTEGER_TYPES and init.size <= SMALL_CONSTANT_ELEMENTS))


def _weightless_inputs(graph: Graph) -> tuple[list, list]:
    """(inline small initializers, typed graph inputs standing in for the large ones)."""
    inline, declared = [], []
    for init in graph.initializers.values():
        if keep_inline_for_inference(init):
            inline.append(init.to_proto())
        else:
            declared.append(helper.make_tensor_value_info(init.name, init.dtype, list(init.shape)))
    return inline, declared


# The IR version from which an initializer need not be a graph input (onnx IR.md, "Graphs"); every
# written model is at least this version. The IR keeps initializers apart from the interface
# (graph.inputs holds real inputs only) and writes them as initializers alone, which IR 3 forbids
# ("W in initializer but not in graph input"). Raised, not re-listed as inputs, because: IR 4 came
# with opset 9 (onnx.helper.VERSION_TABLE: ('1.4.1', 4, 9, 1)) and an IR version admits every older
# opset, so an opset-7/9 model stays valid; onnxruntime treats IR-3 initializers as constants and
# IR-4 inputs as overridable (Graph::CanOverrideInitializer), so listing them would make folded
# weights — no longer the user's tensors — overridable; and one written form serves every version.
IR_INITIALIZERS_NOT_INPUTS = 4


def to_model(graph: Graph, keep_value_info: bool = True, weightless: bool = False,
             keep_output_shapes: bool = True) -> onnx.ModelProto:
    """Export the IR as a ModelProto (nodes in topological order, inline initializer data).

    weightless=True declares large initializers as typed graph inputs instead of copying
    their data — what shape inference needs, at a fraction of the cost and under protobuf's
    2 GB limit whatever the model's size. The model's ir_version is at least
    IR_INITIALIZERS_NOT_INPUTS (4): initializers are never listed as inputs.
    """
    nodes = []
    for key in graph.topological_order():
        node = graph.node(key)
        node_proto = helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name or key,
                                      domain=node.domain or None,
                                      doc_string=_join_doc(node.doc_string, node.meta) or None)
        for attr_name, value in node.attrs.items():
            node_proto.attribute.append(
                helper.make_attribute(attr_name, value, attr_type=node.attr_types.get(attr_name)))
        if node.metadata_props:
            helper.set_metadata_props(node_proto, node.metadata_props)
        nodes.append(node_proto)
    produced = {tensor for node in graph.nodes.values() for tensor in node.outputs}
    interface = set(graph.inputs) | set(graph.outputs)
    value_infos = []
    if keep_value_info:
        value_infos = [_value_info(graph, name) for name in sorted(graph.tensors)
                       if name in produced and name not in interface and graph.tensors[name].dtype]
    if weightless:
        initializers, declared = _weightless_inputs(graph)
    else:
        initializers, declared = [init.to_proto() for init in graph.initializers.values()], []
    outputs = [_value_info(graph, name) if keep_output_shapes else
               helper.make_tensor_value_info(name, graph.dtype(name), None) for name in graph.outputs]
    onnx_graph = helper.make_graph(
        nodes,
        graph.info.graph_name,
        inputs=[_value_info(graph, name) for name in graph.inputs] + declared,
        outputs=outputs,
        initializer=initializers,
        doc_string=graph.info.graph_doc_string or None,
        value_info=value_infos,
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in graph.info.opset_imports.items()],
        producer_name=graph.info.producer_name,
        producer_version=graph.info.producer_version,
        domain=graph.info.domain,
        model_version=graph.info.model_version,
        doc_string=graph.info.doc_string,
        functions=graph.info.functions,
    )
    model.ir_version = max(graph.info.ir_version, IR_INITIALIZERS_NOT_INPUTS)
    if graph.info.metadata_props:
        helper.set_model_props(model, graph.info.metadata_props)
    return model

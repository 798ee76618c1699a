"""Load an ONNX file safely into the IR, with static shapes resolved.

Steps, each turning any failure into one InputError line:
1. read and parse the protobuf (missing, empty, truncated or non-ONNX files fail here);
2. check external-data references of every tensor: relative, inside the model's directory
   (frontends.confine: walked and opened once, read through that descriptor), and within
   the data file's size — initializer data is read only when needed;
3. build the IR and verify it (dangling tensors, duplicate producers, cycles);
4. apply ``--input-shape`` overrides and compute every shape (`segcost.shapes`): onnx shape
   inference on a *weightless copy* of the model (it needs initializer shapes, not their
   bytes, which keeps a 130 MB model's inference in milliseconds and avoids the 2 GB protobuf
   limit), run-time shape chains evaluated by onnxruntime, declared shapes only where nothing
   can be computed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from itertools import chain, compress
from operator import attrgetter
from pathlib import Path
from typing import cast

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import helper

from segcost.errors import GraphError, InputError
from segcost.fileio.numbers import parse_input_shapes  # re-exported: one parser of --input-shape text
from segcost.fileio.paths import check_path_text
from segcost.frontends.confine import (
    TENSOR_ATTRIBUTES,
    ExternalData,
    ModelSource,
    confine_external_tensors,
    open_regular,
)
from segcost.frontends.expansion import check_function_expansion
from segcost.frontends.protoscan import scan
from segcost.ir import Graph
from segcost.ir.datafile import HeldFile
from segcost.ir.onnx_io import NODE_METADATA_KEY, NodeRow, from_model, node_rows
from segcost.shapes import InputShapes, infer_shapes, symbolic_inputs


def load(path: str | os.PathLike, input_shapes: InputShapes | None = None, keep_symbolic_batch: bool = False) -> Graph:
    """Read `path` into a verified IR with inferred shapes; weights are read only when needed.

    `keep_symbolic_batch`: see load_model.
    """
    return opener(path)(input_shapes, keep_symbolic_batch)


def opener(path: str | os.PathLike):
    """Read `path` once; the returned function builds its IR for given input shapes (e.g. many probe sizes).

    The model file and its external-data files are opened once each and read only through
    those descriptors afterwards (frontends.confine); nothing outside the model's folder is
    read, and no library ever sees an external-data path.
    """
    model_path = Path(check_path_text(path, "model"))   # '' is refused, not Path('') = the working folder
    model, regions, held, node_fields = _read_model(model_path)
    payload_regions = {index: (held, offset, length) for index, (offset, length) in regions.items()}
    resolver = ExternalData(model_path, held)

    def build(input_shapes: InputShapes | None = None, keep_symbolic_batch: bool = False) -> Graph:
        graph = load_model(model, input_shapes, label=str(model_path), resolve_external=resolver,
                           payload_regions=payload_regions, keep_symbolic_batch=keep_symbolic_batch,
                           node_fields=node_fields)
        graph.info.resources.append(ModelSource(held, resolver))
        return graph

    return build


def load_model(model: onnx.ModelProto, input_shapes: InputShapes | None = None, label: str | None = None,
               resolve_external: ExternalData | None = None, payload_regions=None,
               keep_symbolic_batch: bool = False, node_fields: bytes | None = None) -> Graph:
    """Build a verified IR with inferred shapes from an in-memory ModelProto.

    With `keep_symbolic_batch`, an input whose batch dim (axis 0) the file declares symbolic
    keeps that symbol when `input_shapes` gives it a number: the other dims are set, and a
    graph rewritten from this IR still runs at any batch (what `segcost optimize` writes).
    Where shape inference cannot follow the symbolic batch to the graph outputs, the batch
    is set as given instead; callers compare the input's batch with
    `graph.info.exported_input_shapes` to tell.

    External data is resolved through `resolve_external` (the model file's folder); without
    it, a tensor with external data is refused (InputError naming it), since onnx would
    resolve it against the working directory. Other tensors' external data is put inline
    before any library sees the model.

    `node_fields`: `model.graph`'s node fields as serialized in the file (protoscan.scan), from
    which shape inference's copy of the model is assembled; not used once the model's nodes
    differ from them (model-local functions inlined, external data of a tensor put inline).
    """
    # each node's fields read once, for the checks and the IR build; metadata_props only if a node can have them
    rows = node_rows(model.graph, metadata=node_fields is None or NODE_METADATA_KEY in node_fields)
    _refuse_nchwc(model, rows, label)
    tensor_attributes = _check_attributes(model, rows)
    check_function_expansion(model, label)   # bounds what inlining adds (MAX_EXPANDED_NODES)
    confine_external_tensors(model, tensor_attributes, resolve_external)   # function bodies included
    calls = 0
    if model.functions or (resolve_external is not None and resolve_external.inlined_tensors):
        node_fields = None   # the nodes are no longer the file's: bodies inlined, or (this or an earlier build)
        # a tensor's external data put inline
    if model.functions:
        model, calls = _inline_functions(model, rows, label)
        rows = node_rows(model.graph)
        _check_attributes(model, rows)   # the inlined bodies' attributes, now the main graph's
    if resolve_external is None:
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise InputError(f"initializer {tensor.name!r}: external data needs the model's file "
                                 "(loaded from memory, refused)")
    graph = from_model(model, resolve_external=resolve_external, payload_regions=payload_regions, rows=rows,
                       verify=True)   # verify_graph, with what the build's walk found
    # The rows' tuples and attribute lists (18 MB at 100k nodes) are freed before shape inference: the
    # tensor tables it fills then reuse their memory instead of new pages (4k fewer page faults).
    del rows, tensor_attributes
    graph.info.path = label
    graph.info.inlined_function_calls = calls
    shapes = dict(input_shapes or {})
    kept = _with_declared_batch(graph, shapes) if keep_symbolic_batch else shapes
    infer_shapes(graph, kept, model=model, verified=True, model_nodes=node_fields)
    if kept != shapes and any(graph.shape(name) is None for name in graph.outputs):
        # Some exports (paddle2onnx's Reshape chains) cannot be followed to their outputs with a
        # symbolic batch, and a model whose outputs have no shape fails onnx.checker: then the
        # batch is set as given (see the docstring for how a caller tells).
        infer_shapes(graph, shapes, model=model, verified=True, model_nodes=node_fields)
    if len(graph) >= RETURN_MEMORY_MIN_NODES:
        _return_freed_memory()
    return graph


# Graphs from this size on give the memory freed after shape inference back to the system.
RETURN_MEMORY_MIN_NODES = 10_000


def _return_freed_memory() -> None:
    """Give free heap memory back to the system (glibc's malloc_trim; elsewhere nothing).

    Shape inference's model copies (150 MB at 100k nodes) are freed when it returns, but
    glibc keeps freed heap below a live allocation, and the analysis' Python objects then come
    from new memory (pymalloc maps its own arenas): the freed heap would add to the process's
    peak (100k-node chain: 550 -> 497 MiB; the trim takes ~17 ms there).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # deferred: only large graphs on Linux need it

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)   # None with a libc other than glibc (musl)
    if trim is not None:
        trim(0)


NCHWC_DOMAIN = "com.microsoft.nchwc"


def _refuse_nchwc(model: onnx.ModelProto, rows: list[NodeRow], label: str | None) -> None:
    """InputError for a model with onnxruntime's NCHWc layout ops (saved at ORT_ENABLE_ALL).

    Those ops (com.microsoft.nchwc Conv, MaxPool, Upsample, ReorderInput/ReorderOutput) work
    on channels padded to onnxruntime's SIMD block (8 or 16) with weights stored reordered and
    padded: the model's real channel counts, hence its exact MACs, are no longer in the file.
    """
    if not any(opset.domain == NCHWC_DOMAIN for opset in model.opset_import):
        return   # onnxruntime imports the domain it uses; no per-node scan for every model
    ops = sorted({row[1] for row in rows if row[2] == NCHWC_DOMAIN})
    if not ops:
        return   # the domain imported but unused
    prefix = f"{label}: " if label else ""
    raise InputError(f"{prefix}saved by onnxruntime at ORT_ENABLE_ALL (NCHWc layout ops: {', '.join(ops)}): "
                     "their padded channels hide the model's exact MACs; re-save at ORT_ENABLE_EXTENDED "
                     "or analyze the original model")


def _inline_functions(model: onnx.ModelProto, rows: list[NodeRow], label: str | None) -> tuple[onnx.ModelProto, int]:
    """(`model` with every call of a model-local function replaced by its body, the number of calls in the main graph).

    onnx.inliner.inline_local_functions does it (recursively: functions calling functions,
    attribute references bound to the call's values, names made unique) — onnx's own
    expansion, the one its shape inference and onnxruntime apply, so segcost does not write
    another. Without it a call node is an unknown op counting 0 MACs (a
    `torch.onnx.export(export_modules_as_functions=...)` model). Called after the expansion
    budget (frontends.expansion) and the external-data confinement, which walk function
    bodies. A caller's model is not changed (a new ModelProto is returned).
    """
    functions = {(function.domain, function.name) for function in model.functions}
    calls = sum(1 for row in rows if (row[2], row[1]) in functions)
    initializers = [tensor.name for tensor in model.graph.initializer]
    try:
        # convert_version: a function importing another opset than the model's is converted
        # (onnx.version_converter); without it onnx leaves that call in place, silently
        inlined = onnx.inliner.inline_local_functions(_with_default_attributes(model), convert_version=True)
    except Exception as error:  # onnx raises its C++ errors as bare Exception subclasses
        prefix = f"{label}: " if label else ""
        raise InputError(f"{prefix}model-local functions cannot be inlined "
                         f"({type(error).__name__}: {_first_line(str(error))})") from None
    if [tensor.name for tensor in inlined.graph.initializer] != initializers:
        # the IR reads initializer payloads by their index in the file (protoscan regions)
        raise InputError(f"{label or 'model'}: inlining model-local functions changed the initializers")
    left = sum(1 for node in inlined.graph.node if (node.domain, node.op_type) in functions)
    return inlined, calls - left   # a call left in place stays an unsupported op in the analysis


def _with_default_attributes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every call of a local function given the function's default attribute values it omits.

    onnx's inliner (1.23) binds a call's attributes into the body but drops a default that
    the function declares (FunctionProto.attribute_proto) when the call omits it: a
    `LeakyRelu <alpha: float = @a>` body then runs at LeakyRelu's own default, not the
    function's (onnxruntime, which runs the function, differs). Calls are in the main graph,
    in subgraphs and in other functions' bodies. A copy is made only when a default is missing.
    """
    defaults = {(function.domain, function.name, function.overload): list(function.attribute_proto)
                for function in model.functions if len(function.attribute_proto)}
    if not defaults:
        return model

    def missing(nodes) -> list[tuple[onnx.NodeProto, onnx.AttributeProto]]:
        found, stack = [], [nodes]   # a stack, not recursion: subgraphs may nest deeply
        while stack:
            for node in stack.pop():
                given = {attribute.name for attribute in node.attribute}
                found += [(node, default) for default in defaults.get((node.domain, node.op_type, node.overload), ())
                          if default.name not in given]
                for attribute in node.attribute:
                    if attribute.HasField("g"):
                        stack.append(attribute.g.node)
                    stack.extend(subgraph.node for subgraph in attribute.graphs)
        return found

    def bodies(proto: onnx.ModelProto):
        return [proto.graph.node, *(function.node for function in proto.functions)]

    if not any(missing(nodes) for nodes in bodies(model)):
        return model
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    for nodes in bodies(bound):
        for node, default in missing(nodes):
            node.attribute.append(default)
    return bound


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def _with_declared_batch(graph: Graph, input_shapes: InputShapes) -> InputShapes:
    """`input_shapes` with axis 0 replaced by the file's symbol where the file declares the batch symbolic."""
    kept = {}
    for name, dims in input_shapes.items():
        declared = graph.shape(name or (graph.inputs[0] if len(graph.inputs) == 1 else ""))
        if dims and declared and len(declared) == len(dims) and not (isinstance(declared[0], int) and declared[0] > 0):
            # A symbol name (or None for an unnamed dim) kept as declared: apply_input_shapes stores
            # the tuple as given and shape inference reads a str dim as a dim_param.
            dims = cast(tuple[int, ...], (declared[0], *dims[1:]))
        kept[name] = dims
    return kept


def file_model(graph: Graph) -> onnx.ModelProto | None:
    """The model file `graph` was loaded from, parsed whole as onnxruntime parses it, external data inline.

    Inputs carry the IR's (possibly --input-shape overridden) types; declared intermediate
    and output shapes are dropped, as they may describe other sizes. None for a graph not
    loaded from a file. Memory: every weight in memory once (the numeric check's cost).
    """
    source = next((item for item in graph.info.resources if isinstance(item, ModelSource)), None)
    if source is None:
        return None
    try:
        model = source.whole_model()
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InputError(f"{graph.info.path}: not a valid ONNX model (protobuf parse failed: {error})") from None
    inputs = {value.name: value for value in model.graph.input}
    for name in graph.inputs:
        info = graph.tensors.get(name)
        if name in inputs and info is not None and info.shape is not None:
            inputs[name].type.CopyFrom(helper.make_tensor_type_proto(info.dtype, list(info.shape)))
    del model.graph.value_info[:]
    for output in model.graph.output:
        if output.type.HasField("tensor_type"):
            output.type.tensor_type.ClearField("shape")
    return model


def _check_attributes(model: onnx.ModelProto,
                      rows: list[NodeRow] | None = None) -> list[tuple[object, str, onnx.AttributeProto]]:
    """Names are text; every attribute has a type, and for a known op the type its schema declares.

    `rows` are node_rows(model.graph) (read here when not given; the loader passes the same
    rows on to the IR build, so each node field is read from protobuf once). Returns the
    (node, op type, attribute) of main-graph attributes that hold tensors or subgraphs, for
    the external-data check (frontends.confine).

    Cost rules and passes trust the spec's attribute types (an INT `group`, INTS `pads`);
    a file that breaks them is rejected here with the node and attribute named. ONNX's
    proto2 strings come back as bytes when not UTF-8, which is reported first.
    """
    graph = model.graph
    if rows is None:
        rows = node_rows(graph)
    named = chain(graph.input, graph.output, graph.initializer, graph.value_info)
    texts = [model.producer_name, model.doc_string, graph.name, graph.doc_string, *map(_NAME, named),
             *(opset.domain for opset in model.opset_import)]
    opsets = {opset.domain or "ai.onnx": opset.version for opset in model.opset_import}
    opsets.setdefault("ai.onnx", opsets.get("", 0))
    schema_types: dict[tuple[str, str], dict[str, int]] = {}
    first_error = None  # raised after the walk, so that a text error anywhere comes first
    tensor_attributes = []
    texts_ok = _all_text(texts)
    with_attributes: Iterable[tuple[int, NodeRow]] = ()
    if rows:
        # whole columns checked at C speed (no Python frame per node); only nodes with attributes are walked
        names, op_types, domains, doc_strings, inputs, outputs, attribute_lists, _ = zip(*rows)
        texts_ok = texts_ok and _all_text(names, op_types, domains, doc_strings, chain.from_iterable(inputs),
                                          chain.from_iterable(outputs))
        with_attributes = compress(enumerate(rows), attribute_lists)
    attribute_names: list[object] = []
    for index, (node_name, op_type, domain, _, _, _, attributes, _) in with_attributes:
        declared_types = schema_types.get((domain, op_type))
        if declared_types is None:
            declared_types = schema_types[domain, op_type] = _declared_attribute_types(opsets, domain, op_type)
        for attribute in attributes:
            name, attribute_type = attribute.name, attribute.type
            attribute_names.append(name)
            if attribute_type in TENSOR_ATTRIBUTES:
                tensor_attributes.append((node_name or index, op_type, attribute))
            if first_error is None and (attribute_type == onnx.AttributeProto.UNDEFINED
                                        or declared_types.get(name, attribute_type) != attribute_type):
                first_error = (node_name or index, op_type, name, attribute_type, declared_types.get(name))
    if not (texts_ok and _all_text(attribute_names)):
        raise GraphError("a name, op type or doc string is not valid UTF-8 (corrupt file?)")
    if first_error is not None:
        node_name, op_type, name, attribute_type, declared = first_error
        where = f"node {node_name!r} ({op_type}) attribute {name!r}"
        if attribute_type == onnx.AttributeProto.UNDEFINED:
            raise GraphError(f"{where} has no type")
        raise GraphError(f"{where} is {onnx.AttributeProto.AttributeType.Name(attribute_type)}, the op "
                         f"needs {onnx.AttributeProto.AttributeType.Name(declared)}")
    return tensor_attributes


_NAME = attrgetter("name")


def _all_text(*columns) -> bool:
    """True when every item of every column is a str (protobuf returns bytes for a string that is not UTF-8).

    str.join takes str items only and raises TypeError for any other: a type check of every
    item at C speed (300k names at 100k nodes).
    """
    try:
        for column in columns:
            "".join(column)
    except TypeError:
        return False
    return True


def _declared_attribute_types(opsets: dict[str, int], domain: str, op_type: str) -> dict[str, int]:
    """{attribute name: AttributeProto type} from the op's schema; empty for an unknown op."""
    domain = domain or "ai.onnx"
    if domain not in opsets or not isinstance(domain, str) or not isinstance(op_type, str):
        return {}  # non-text names are reported by the caller
    try:
        schema = onnx.defs.get_schema(op_type, opsets[domain], "" if domain == "ai.onnx" else domain)
    except onnx.defs.SchemaError:
        return {}
    # AttrType is an int-valued enum whose stub mypy cannot convert; the value is AttributeProto's type number
    return {name: int(attribute.type) for name, attribute in schema.attributes.items()}  # type: ignore[call-overload]


def read_model(model_path: Path) -> tuple[onnx.ModelProto, dict[int, tuple[int, int]]]:
    """Parse the file's structure; large initializer payloads are left in the file (see protoscan).

    Returns the model and {initializer index: (offset, length) in the file}.
    """
    model, regions, _, _ = _read_model(Path(model_path))
    return model, regions


def _read_model(model_path: Path) -> tuple[onnx.ModelProto, dict[int, tuple[int, int]], HeldFile, bytes]:
    """read_model, the open model file the regions are read from later (never reopened by name), and the
    graph's node fields as serialized in the file (see protoscan.scan)."""
    held = open_regular(model_path, "an .onnx file")
    try:
        data, regions, node_fields = scan(held)
    except OSError as error:
        raise InputError(f"{model_path}: cannot read ({error.strerror or error})") from None
    if not data:
        raise InputError(f"{model_path}: file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InputError(f"{model_path}: not a valid ONNX model (protobuf parse failed: {error})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise InputError(f"{model_path}: not a valid ONNX model (no graph; truncated or not ONNX?)")
    if model.graph.sparse_initializer:
        raise InputError(f"{model_path}: sparse initializers are not supported")
    return model, regions, held, node_fields


__all__ = ["GraphError", "InputShapes", "file_model", "infer_shapes", "load", "load_model", "opener",
           "parse_input_shapes", "read_model", "symbolic_inputs"]

"""Load an ONNX file safely into the IR, with static shapes resolved.

Steps, each turning any failure into one InputError line:
1. read and parse the protobuf (missing, empty, truncated or non-ONNX files fail here);
2. check external-data references: relative, inside the model's directory after resolving
   symlinks, and within the data file's size — the data itself is read only when needed;
3. build the IR and verify it (dangling tensors, duplicate producers, cycles);
4. apply ``--input-shape`` overrides and compute every shape (`segcost.shapes`): onnx shape
   inference on a *weightless copy* of the model (it needs initializer shapes, not their
   bytes, which keeps a 130 MB model's inference in milliseconds and avoids the 2 GB protobuf
   limit), run-time shape chains evaluated by onnxruntime, declared shapes only where nothing
   can be computed.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from segcost.errors import GraphError, InputError
from segcost.ir import Graph, dtype_size, verify_graph
from segcost.ir.onnx_io import from_model
from segcost.shapes import InputShapes, infer_shapes, symbolic_inputs


def parse_input_shapes(specs: tuple[str, ...] | list[str]) -> InputShapes:
    """Parse ``name=1x3x512x512`` (or just ``1x3x512x512`` for a single-input model)."""
    shapes: InputShapes = {}
    for spec in specs:
        name, _, dims_text = spec.rpartition("=")
        try:
            dims = tuple(int(dim) for dim in dims_text.lower().replace(",", "x").split("x"))
        except ValueError:
            raise InputError(f"--input-shape {spec!r}: expected NAME=DxDxD..., e.g. input=1x3x512x512") from None
        if not dims or any(dim <= 0 for dim in dims):
            raise InputError(f"--input-shape {spec!r}: every dimension must be a positive integer")
        shapes[name] = dims
    return shapes


def load(path: str | os.PathLike, input_shapes: InputShapes | None = None) -> Graph:
    """Read `path` into a verified IR with inferred shapes; weights are read only when needed."""
    return opener(path)(input_shapes)


def opener(path: str | os.PathLike):
    """Read `path` once; the returned function builds its IR for given input shapes (e.g. many probe sizes)."""
    model_path = Path(path)
    model, regions = read_model(model_path)
    resolved = model_path.resolve()
    payload_regions = {index: (resolved, offset, length) for index, (offset, length) in regions.items()}
    resolver = _external_resolver(model_path)

    def build(input_shapes: InputShapes | None = None) -> Graph:
        return load_model(model, input_shapes, label=str(model_path), resolve_external=resolver,
                          payload_regions=payload_regions)

    return build


def load_model(model: onnx.ModelProto, input_shapes: InputShapes | None = None, label: str | None = None,
               resolve_external=None, payload_regions=None) -> Graph:
    """Build a verified IR with inferred shapes from an in-memory ModelProto."""
    _check_attributes(model)
    graph = from_model(model, resolve_external=resolve_external, payload_regions=payload_regions)
    graph.info.path = label
    verify_graph(graph)
    infer_shapes(graph, dict(input_shapes or {}), model=model)
    return graph


def _check_attributes(model: onnx.ModelProto) -> None:
    """Names are text; every attribute has a type, and for a known op the type its schema declares.

    Cost rules and passes trust the spec's attribute types (an INT `group`, INTS `pads`);
    a file that breaks them is rejected here with the node and attribute named. ONNX's
    proto2 strings come back as bytes when not UTF-8, which is reported first. One walk over
    the nodes does both: reading a node's fields from protobuf is the cost at 100k nodes.
    """
    graph = model.graph
    named = [*graph.input, *graph.output, *graph.initializer, *graph.value_info]
    texts = [model.producer_name, model.doc_string, graph.name, graph.doc_string, *(item.name for item in named),
             *(opset.domain for opset in model.opset_import)]
    opsets = {opset.domain or "ai.onnx": opset.version for opset in model.opset_import}
    opsets.setdefault("ai.onnx", opsets.get("", 0))
    schema_types: dict[tuple[str, str], dict[str, int]] = {}
    first_error = None  # raised after the walk, so that a text error anywhere comes first
    for index, node in enumerate(graph.node):
        op_type, domain = node.op_type, node.domain
        texts += (node.name, op_type, domain, node.doc_string)
        texts.extend(node.input)
        texts.extend(node.output)
        attributes = node.attribute
        if not attributes:
            continue
        declared_types = schema_types.get((domain, op_type))
        if declared_types is None:
            declared_types = schema_types[domain, op_type] = _declared_attribute_types(opsets, domain, op_type)
        for attribute in attributes:
            name, attribute_type = attribute.name, attribute.type
            texts.append(name)
            if first_error is None and (attribute_type == onnx.AttributeProto.UNDEFINED
                                        or declared_types.get(name, attribute_type) != attribute_type):
                first_error = (node.name or index, op_type, name, attribute_type, declared_types.get(name))
    if set(map(type, texts)) - {str}:
        raise GraphError("a name, op type or doc string is not valid UTF-8 (corrupt file?)")
    if first_error is not None:
        node_name, op_type, name, attribute_type, declared = first_error
        where = f"node {node_name!r} ({op_type}) attribute {name!r}"
        if attribute_type == onnx.AttributeProto.UNDEFINED:
            raise GraphError(f"{where} has no type")
        raise GraphError(f"{where} is {onnx.AttributeProto.AttributeType.Name(attribute_type)}, the op "
                         f"needs {onnx.AttributeProto.AttributeType.Name(declared)}")


def _declared_attribute_types(opsets: dict[str, int], domain: str, op_type: str) -> dict[str, int]:
    """{attribute name: AttributeProto type} from the op's schema; empty for an unknown op."""
    domain = domain or "ai.onnx"
    if domain not in opsets or not isinstance(domain, str) or not isinstance(op_type, str):
        return {}  # non-text names are reported by the caller
    try:
        schema = onnx.defs.get_schema(op_type, opsets[domain], "" if domain == "ai.onnx" else domain)
    except onnx.defs.SchemaError:
        return {}
    return {name: attribute.type for name, attribute in schema.attributes.items()}


def read_model(model_path: Path) -> tuple[onnx.ModelProto, dict[int, tuple[int, int]]]:
    """Parse the file's structure; large initializer payloads are left in the file (see protoscan)."""
    from segcost.frontends.protoscan import scan

    if not model_path.exists():
        raise InputError(f"{model_path}: no such file")
    if model_path.is_dir():
        raise InputError(f"{model_path}: is a directory, expected an .onnx file")
    try:
        data, regions = scan(model_path)
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
    return model, regions


def _external_resolver(model_path: Path):
    base_dir = model_path.resolve().parent
    sizes: dict[Path, int] = {}

    def resolve(tensor: onnx.TensorProto) -> tuple[Path, int, int]:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        where = f"{model_path}: initializer {tensor.name!r} external data {location!r}"
        if not location:
            raise InputError(f"{where}: no location given")
        if os.path.isabs(location) or Path(location).drive:
            raise InputError(f"{where}: absolute paths are refused; data must lie beside the model")
        data_path = (base_dir / location).resolve()
        if not data_path.is_relative_to(base_dir):
            raise InputError(f"{where}: path escapes the model's directory {base_dir}")
        if data_path not in sizes:
            if not data_path.is_file():
                raise InputError(f"{where}: file not found")
            sizes[data_path] = data_path.stat().st_size
        try:
            offset = int(entries.get("offset", 0))
            expected = _tensor_nbytes(tensor)
            length = int(entries.get("length", expected))
        except ValueError:
            raise InputError(f"{where}: offset/length are not integers") from None
        if offset < 0 or length < 0 or offset + length > sizes[data_path]:
            raise InputError(f"{where}: region {offset}+{length} lies outside the {sizes[data_path]}-byte file")
        if expected and length < expected:
            raise InputError(f"{where}: {length} bytes stored, {expected} needed for shape {list(tensor.dims)}")
        return data_path, offset, length

    return resolve


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    count = 1
    for dim in tensor.dims:
        count *= int(dim)
    return count * dtype_size(tensor.data_type)


__all__ = ["GraphError", "InputShapes", "infer_shapes", "load", "load_model", "opener", "parse_input_shapes",
           "read_model", "symbolic_inputs"]

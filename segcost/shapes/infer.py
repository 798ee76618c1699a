"""Fill `graph.tensors` with computed shapes (see the package docstring for the three steps)."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

import onnx
from onnx import helper

from segcost.errors import InputError, ShapeError
from segcost.ir import Graph, Node, Shape, TensorInfo, is_static_shape
from segcost.ir.onnx_io import (
    keep_inline_for_inference,
    nodes_with_subgraphs,
    read_subgraph_infos,
    read_value_infos,
    to_model,
)
from segcost.shapes.branches import (
    collect_branch_shapes,
    decide_branches,
    forget_branches,
    open_ifs,
    read_nested_shapes,
    take_branches,
)
from segcost.shapes.contrib import drop_temporaries, has_twins, with_twins
from segcost.shapes.declared import fill_open, record_conflicts
from segcost.shapes.evaluate import Resolved, resolve_value_chains
from segcost.shapes.fit import check_fit
from segcost.shapes.propagation import address_space_bound, fastbins_off, long_vector, needs_values

InputShapes = dict[str, tuple[int, ...]]


def infer_shapes(graph: Graph, input_shapes: InputShapes | None = None, model: onnx.ModelProto | None = None,
                 verified: bool = False, model_nodes: bytes | None = None) -> None:
    """Fill graph.tensors with the shapes computed from the graph inputs.

    `input_shapes` ({input: dims}) override the inputs' shapes first; the file's declared
    shapes then describe other sizes and are neither used nor compared. `model`, when given,
    is the ModelProto `graph` was just built from (copying its messages is cheaper than
    rebuilding them from the IR). `verified`: `graph` passed verify_graph (every tensor a node
    reads has a source), so when every produced tensor and input has a static shape, no node
    reads an open one (checked on the tables, not on 100k nodes' inputs). `model_nodes`: the
    serialized `node` fields of `model.graph` (the file's, see frontends.protoscan), when known.
    Used by the loader and again by passes that change where shapes come from (constant folding).

    Raises:
        InputError: an override names no input or has the wrong rank.
        ShapeError: onnx shape inference fails even in non-strict mode, or an op's constant-fixed
            shape does not fit its input (shapes/fit.py).
    """
    if input_shapes:
        apply_input_shapes(graph, dict(input_shapes))
    trust_declared = not input_shapes
    declared = dict(graph.tensors)  # the file's shapes (or those of the previous run)
    shell: onnx.ModelProto | bytes
    if model is not None:
        shell = _shell_from_model(model, graph, model_nodes)
    else:
        shell = to_model(graph, keep_value_info=False, weightless=True, keep_output_shapes=False)
    # the nodes with subgraphs, found once (a walk over 100k nodes: ~12 ms); shape inference adds or removes none
    with_subgraphs = nodes_with_subgraphs(graph)
    shell, taken = _take_constant_branches(graph, shell, with_subgraphs)   # If nodes on a constant condition
    inferred = _infer(graph, shell, copy_of_graph=not taken, subgraphs=bool(with_subgraphs))
    _take_shapes(graph, inferred, declared, with_subgraphs)
    if any(node.op_type == "If" for node in with_subgraphs) and open_ifs(graph):
        # conditions computed from the static shapes just inferred (`Shape(x)[2] > 48`), decided up front: an If
        # whose branches agree in shape, or that feeds only graph outputs, leaves nothing open for the rounds below
        message = _message(shell)   # parsed once, for the conditions' cone and the branches taken

        def reinfer() -> onnx.ModelProto:
            again = _infer(graph, message)   # not a copy of the graph: its nodes are looked at
            _take_shapes(graph, again, declared, with_subgraphs)
            return again

        inferred, keys = decide_branches(graph, message, inferred, reinfer)
        shell = message
        taken.extend(keys)
    # The fast path ends here for almost every model: the checks below walk the IR's own
    # (already decoded) tables, and onnxruntime is imported only when a chain is evaluated.
    unresolved = _unresolved(graph, verified)
    if unresolved or _open_outputs(graph):
        _infer_open_shapes(graph, _message(shell), inferred, declared, unresolved, verified, trust_declared, taken,
                           with_subgraphs)
    if taken:
        collect_branch_shapes(graph, taken)
    if trust_declared:
        fill_open(graph, declared)
        record_conflicts(graph, declared)
    check_fit(graph)  # baked Reshape targets, Expand shapes, Split sizes (shapes/fit.py)


def _infer_open_shapes(graph: Graph, shell: onnx.ModelProto, inferred: onnx.ModelProto,
                       declared: dict[str, TensorInfo], unresolved: bool, verified: bool,
                       trust_declared: bool, taken: list[str], with_subgraphs: list[Node]) -> None:
    """infer_shapes' steps for a graph whose first inference left a consumed tensor (`unresolved`) or a
    graph output without a static shape: com.microsoft twins, run-time value chains (an If whose condition
    they compute is replaced by its branch; its key is appended to `taken`), declared seeds. `with_subgraphs`:
    nodes_with_subgraphs(graph)."""
    infer = lambda proto: _infer(graph, proto)  # noqa: E731
    twinned = False
    if has_twins(shell):  # com.microsoft ops: shapes/contrib.py
        infer = lambda proto: drop_temporaries(_infer(graph, with_twins(proto)))  # noqa: E731
        inferred = infer(shell)
        _take_shapes(graph, inferred, declared, with_subgraphs)
        unresolved, twinned = _unresolved(graph, verified), True
    if unresolved and not symbolic_inputs(graph):
        # Open parts are inferred alone where onnx sees each node as in the whole model: no
        # subgraph reads outer tensors and no twin builder looks at the model's other tensors.
        def branch(proto: onnx.ModelProto, values: dict) -> bool:   # an If whose condition is now computed
            keys = take_branches(graph, proto, values) if open_ifs(graph) else []
            taken.extend(keys)
            return bool(keys)

        resolved = resolve_value_chains(shell, infer, inferred, parts=not twinned and not with_subgraphs,
                                        strict=lambda: "segcost.shape_inference" not in graph.info.metadata_props,
                                        rewrite=branch if with_subgraphs else None)
        if resolved.inferred is not inferred:   # else graph.tensors already hold its shapes
            inferred = resolved.inferred
            _take_shapes(graph, inferred, declared, with_subgraphs)
        if resolved.parts:
            _take_part_shapes(graph, resolved)
        unresolved = _unresolved(graph, verified)
    if trust_declared and unresolved:
        seeded = _seed_declared(shell, declared, graph, infer)
        if seeded is not None:
            _take_shapes(graph, seeded, declared, with_subgraphs)


def _take_constant_branches(graph: Graph, shell: onnx.ModelProto | bytes, with_subgraphs: list[Node]
                            ) -> tuple[onnx.ModelProto | bytes, list[str]]:
    """Replace in `shell` the If nodes whose condition is a constant by their taken branch (shapes.branches);
    forget the branches an earlier run took (the input shapes may have changed). Returns the shell (parsed
    when it was bytes and an If was replaced) and the If keys replaced. `with_subgraphs`:
    nodes_with_subgraphs(graph)."""
    ifs = [node for node in with_subgraphs if node.op_type == "If"]
    if not ifs:
        return shell, []
    for node in ifs:
        forget_branches(node)
    constants = {name: graph.initializers[name].array for name in open_ifs(graph).values()
                 if name in graph.initializers and graph.initializers[name].size == 1}
    if not constants:
        return shell, []
    message = _message(shell)
    return message, take_branches(graph, message, constants)


def _shell_from_model(model: onnx.ModelProto, graph: Graph, model_nodes: bytes | None = None
                      ) -> onnx.ModelProto | bytes:
    """The weightless model for inference, copied from the parsed file at the C level.

    Rebuilding it from the IR (to_model) is the general path, but for the freshly loaded
    file copying the protobuf messages is several times cheaper in time and memory — it
    decides whether a 100k-node graph fits in 1 GiB. Graph outputs carry their type only:
    a shape the file declares must not constrain (or contradict) the computed one.

    With `model_nodes` (model.graph's node fields as serialized) the shell is returned
    serialized, its nodes those bytes: no copy of the nodes is made (at 100k nodes the copy
    and its serialization took ~45 ms and 53 MB); `_message` parses it when a step needs it.
    """
    shell = onnx.ModelProto()
    lifted = set(graph.info.lifted_constants)  # Constant nodes the IR reads as initializers
    # A weight held in a Constant node (paddle2onnx: all of them) is declared as a typed input,
    # as a weight initializer is: copying its data made every inference run (one per chain
    # level in shapes.evaluate) serialize the whole model (PP-OCRv4 rec: 10.8 MB, 4 runs).
    heavy = {name for name in lifted if not keep_inline_for_inference(graph.initializers[name])}
    if heavy:
        model_nodes = None   # the Constant nodes holding them are left out of the copy
        shell.graph.node.extend(node for node in model.graph.node
                                if not (node.op_type == "Constant" and node.output and node.output[0] in heavy))
    elif model_nodes is not None:
        pass   # the nodes are the bytes appended below
    elif sum(init.nbytes for init in graph.initializers.values() if not init.is_lazy) <= COPY_GRAPH_MAX_INLINE_BYTES:
        # One C-level copy of the whole graph, then everything but its nodes and name dropped:
        # 4x cheaper than copying 100k NodeProtos one by one (extend), at the price of copying
        # the initializers that hold their data inline (bounded here).
        shell.graph.CopyFrom(model.graph)
        for field in _GRAPH_FIELDS_NOT_IN_SHELL:
            shell.graph.ClearField(field)
    else:
        shell.graph.node.extend(model.graph.node)
    shell.graph.name = model.graph.name
    shell.ir_version = max(model.ir_version, 4)
    shell.opset_import.extend(model.opset_import)
    shell.functions.extend(model.functions)
    for name in graph.inputs:
        info = graph.tensors.get(name)
        shell.graph.input.append(helper.make_tensor_value_info(
            name, info.dtype if info else 0, list(info.shape) if info and info.shape is not None else None))
    shell.graph.output.extend(_output_declaration(graph, name) for name in graph.outputs)
    # Initializers declared as typed inputs, serialized here (a ValueInfoProto field per weight,
    # its type's bytes shared by the weights of one shape) and parsed in one call: a message
    # built field by field per weight cost twice as much at 33k weights.
    type_fields: dict[tuple[int, tuple[int, ...]], bytes] = {}   # weights share a few types
    declared: list[bytes] = []
    for init in graph.initializers.values():  # the file's order, each still holding its TensorProto
        if init.name in lifted and init.name not in heavy:
            continue  # still defined by its Constant node in this copy
        if keep_inline_for_inference(init):
            shell.graph.initializer.append(init.to_proto())
            continue
        type_field = type_fields.get((init.dtype, init.shape))
        if type_field is None:
            type_bytes = helper.make_tensor_type_proto(init.dtype, init.shape).SerializeToString()
            type_field = type_fields[init.dtype, init.shape] = _VALUE_INFO_TYPE + _varint(len(type_bytes)) + type_bytes
        encoded = init.name.encode()
        value_info = _VALUE_INFO_NAME + _varint(len(encoded)) + encoded + type_field
        declared.append(_GRAPH_INPUT + _varint(len(value_info)) + value_info)
    if model_nodes is None:
        shell.graph.MergeFromString(b"".join(declared))   # appended to graph.input after the real inputs
        return shell
    # A message field that occurs twice is read as one, its repeated fields concatenated in order
    # (protobuf's encoding rules): a second `graph` field adds the nodes, and the declared weights after
    # the real inputs, to the first one's name, inputs, outputs and inline initializers.
    length = len(model_nodes) + sum(map(len, declared))
    return b"".join([shell.SerializeToString(), _MODEL_GRAPH, _varint(length), model_nodes, *declared])


def _message(shell: onnx.ModelProto | bytes) -> onnx.ModelProto:
    """`shell` as a message (parsed, when _shell_from_model assembled it as bytes)."""
    return onnx.ModelProto.FromString(shell) if isinstance(shell, bytes) else shell


# Inline initializer data (bytes) up to which the shell copies the whole graph at once (see above).
COPY_GRAPH_MAX_INLINE_BYTES = 32 * 1024 * 1024
_GRAPH_FIELDS_NOT_IN_SHELL = tuple(field.name for field in onnx.GraphProto.DESCRIPTOR.fields
                                   if field.name not in ("node", "name"))
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]
# Protobuf field keys (field number << 3 | wire type 2) of ModelProto.graph, GraphProto.input,
# ValueInfoProto.name/.type
_MODEL_GRAPH, _GRAPH_INPUT, _VALUE_INFO_NAME, _VALUE_INFO_TYPE = b"\x3a", b"\x5a", b"\x0a", b"\x12"


def _varint(value: int) -> bytes:
    """`value` as a protobuf varint (why hand-written: protobuf's Python API has no public encoder)."""
    if value < 0x80:
        return _ONE_BYTE[value]   # names and a weight's type: nearly every length written here
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _output_declaration(graph: Graph, name: str) -> onnx.ValueInfoProto:
    """A graph output for the shell: its type only, or — for an output that is an input or an initializer —
    its full known shape: onnx inference takes an unshaped output declaration as the tensor's type, and
    every consumer of that input or weight would lose its shape."""
    init = graph.initializers.get(name)
    if init is not None:
        return helper.make_tensor_value_info(name, init.dtype, list(init.shape))
    info = graph.tensors.get(name) if name in graph.inputs else None
    return helper.make_tensor_value_info(name, graph.dtype(name),
                                         list(info.shape) if info is not None and info.shape is not None else None)


def _infer(graph: Graph, shell: onnx.ModelProto | bytes, copy_of_graph: bool = False,
           subgraphs: bool | None = None) -> onnx.ModelProto:
    """onnx shape inference, strict first; a non-strict fallback is noted in graph metadata.

    Values are propagated (data_prop) only where a shape needs them, under an address-space cap,
    and for the whole model only after a pass without it finds no rank-1 tensor long enough to
    make that pass costly (shapes.propagation); a later round's part (its lengths were bounded
    with the whole model's) runs under the cap alone.
    `copy_of_graph`: `shell` holds exactly `graph`'s nodes, `subgraphs`: whether a node of `graph` has one, when
    known (see propagation.needs_values).
    """
    if not needs_values(graph, shell, copy_of_graph, subgraphs):
        return _run_inference(graph, shell, data_prop=False)
    plain = None
    if copy_of_graph:   # the whole model: checked before; a later round's part runs under the cap alone
        plain = _run_inference(graph, shell, data_prop=False)
        if long_vector(plain) is not None:
            return plain   # shapes that needed the values stay open; the layers reading them say so
    try:
        with address_space_bound():
            return _run_inference(graph, shell, data_prop=True)
    except MemoryError:   # past the bound: without values, as above
        return plain if plain is not None else _run_inference(graph, shell, data_prop=False)


def _run_inference(graph: Graph, shell: onnx.ModelProto | bytes, data_prop: bool) -> onnx.ModelProto:
    with fastbins_off():   # onnx frees its C++ copy of the model in ~1M blocks (see shapes.propagation)
        return _strict_then_plain(graph, shell, data_prop)


def _strict_then_plain(graph: Graph, shell: onnx.ModelProto | bytes, data_prop: bool) -> onnx.ModelProto:
    try:
        inferred = onnx.shape_inference.infer_shapes(shell, check_type=True, strict_mode=True, data_prop=data_prop)
        graph.info.metadata_props.pop("segcost.shape_inference", None)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as strict_error:
        # Unknown ops or partial type errors make strict mode fail; the non-strict run still
        # types everything it can, and a MAC-bearing op with a missing shape is reported later.
        try:
            inferred = onnx.shape_inference.infer_shapes(shell, strict_mode=False, data_prop=data_prop)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - onnx raises several unrelated types
            raise ShapeError(f"shape inference failed: {_first_line(error)}") from None
        graph.info.metadata_props["segcost.shape_inference"] = "non-strict: " + _first_line(strict_error)
    except MemoryError:
        raise   # the caller's address_space_bound
    except Exception as error:  # noqa: BLE001
        raise ShapeError(f"shape inference failed: {_first_line(error)}") from None
    return inferred


def _seed_declared(shell: onnx.ModelProto, declared: dict[str, TensorInfo], graph: Graph,
                   infer: Callable[[onnx.ModelProto], onnx.ModelProto]) -> onnx.ModelProto | None:
    """Re-infer with the file's static shapes given for the tensors computation left open.

    This is where a declared shape is used — after a custom op, say — and it then reaches the
    layers downstream of it too. Tensors with a computed shape are never seeded. None when
    there is nothing to seed.
    """
    produced = {name for node in shell.graph.node for name in node.output}
    seeds = []
    for name, info in declared.items():
        computed = graph.tensors.get(name)
        if name in produced and info.is_static and info.dtype and (computed is None or not computed.is_static):
            seeds.append(helper.make_tensor_value_info(name, info.dtype, list(info.shape or ())))
    if not seeds:
        return None
    shell.graph.value_info.extend(seeds)
    return infer(shell)


def _unresolved(graph: Graph, verified: bool = False) -> bool:
    """True when a node consumes a tensor whose shape is not fully known (`verified`: see infer_shapes)."""
    tensors, initializers = graph.tensors, graph.initializers
    if verified and graph.produced().keys() <= tensors.keys() and all(name in tensors for name in graph.inputs):
        # tensors share a few shape objects (read_value_infos): each distinct one is checked once
        if all(map(is_static_shape, {id(shape): shape for shape in map(_SHAPE, tensors.values())}.values())):
            return False   # every tensor a node can read (a verified graph's) is static: no walk needed
    static: dict[Shape, bool] = {}   # tensors share a few distinct shapes: each is checked once
    for node in graph.nodes.values():
        for name in node.inputs:
            if name and name not in initializers:
                info = tensors.get(name)
                shape = info.shape if info is not None else None
                if shape is None:
                    return True
                known = static.get(shape)
                if known is None:
                    known = static[shape] = is_static_shape(shape)
                if not known:
                    return True
    return False


_SHAPE = attrgetter("shape")


def _open_outputs(graph: Graph) -> bool:
    """True when a graph output's shape is not fully known."""
    return any(graph.tensors.get(name) is None or not graph.tensors[name].is_static for name in graph.outputs
               if name not in graph.initializers)


def _take_shapes(graph: Graph, inferred: onnx.ModelProto, declared: dict[str, TensorInfo],
                 with_subgraphs: list[Node]) -> None:
    """Replace graph.tensors by the inferred types (inputs keep theirs; initializers have their own).
    `with_subgraphs`: nodes_with_subgraphs(graph)."""
    graph.tensors.clear()
    graph.tensors.update({name: declared[name] for name in graph.inputs if name in declared})
    # initializers declared as typed inputs for inference keep the initializer's own shape
    read_value_infos(graph, inferred.graph.input, skip=graph.initializers)
    read_value_infos(graph, inferred.graph.value_info)
    read_value_infos(graph, inferred.graph.output)
    read_subgraph_infos(graph, inferred.graph, with_subgraphs)  # shapes inside If/Loop/Scan bodies, for their MACs
    read_nested_shapes(graph, inferred, with_subgraphs)   # ... and inside Ifs left open in branches taken
    for init in inferred.graph.initializer:  # tensors evaluated by resolve_value_chains
        if init.name not in graph.initializers and init.name not in graph.tensors:
            graph.tensors[init.name] = TensorInfo(init.name, init.data_type, tuple(int(dim) for dim in init.dims))
    for name in graph.tensors.keys() & graph.initializers.keys():
        del graph.tensors[name]  # initializer shapes come from the initializer itself


def _take_part_shapes(graph: Graph, resolved: Resolved) -> None:
    """Update graph.tensors from the parts inferred after `resolved.inferred` (what inferring the
    whole shell once more would give: every other node's output type is unchanged)."""
    for part in resolved.parts:
        read_value_infos(graph, part.graph.value_info, skip=graph.initializers)
    outputs = set(graph.outputs)
    for init in resolved.injected:   # as _take_shapes reads an evaluated tensor (a graph output keeps its type)
        if init.name in outputs:
            continue
        graph.tensors.pop(init.name, None)
        if init.name not in graph.initializers:
            graph.tensors[init.name] = TensorInfo(init.name, init.data_type, tuple(int(dim) for dim in init.dims))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def apply_input_shapes(graph: Graph, input_shapes: InputShapes) -> None:
    """Set the shapes of graph inputs from `--input-shape` ({name: dims}; "" names the only input).

    Raises:
        InputError: an unknown input name, an unnamed shape for a multi-input model, or a rank
            other than the model's.
    """
    if "" in input_shapes:
        if len(graph.inputs) != 1:
            raise InputError(f"the model has {len(graph.inputs)} inputs ({', '.join(graph.inputs)}); "
                             "name the one to shape: --input-shape NAME=1x3x512x512")
        input_shapes = {graph.inputs[0]: input_shapes.pop("")} | input_shapes
    for name, dims in input_shapes.items():
        if name not in graph.inputs:
            raise InputError(f"--input-shape: the model has no input {name!r} (inputs: {', '.join(graph.inputs)})")
        known = graph.tensors.get(name)
        if known is not None and known.shape is not None and len(known.shape) != len(dims):
            raise InputError(f"--input-shape {name}: rank {len(dims)} given, the model's input has rank "
                             f"{len(known.shape)}")
        if known is not None:   # what the file says, for messages about sizes baked into the export
            graph.info.exported_input_shapes.setdefault(name, known.shape)
        graph.tensors[name] = TensorInfo(name, known.dtype if known else onnx.TensorProto.FLOAT, tuple(dims))


def symbolic_inputs(graph: Graph) -> list[tuple[str, int, str]]:
    """(input, axis, symbol) for every graph-input dim that is not a concrete positive integer."""
    found = []
    for name in graph.inputs:
        shape = graph.shape(name)
        if shape is None:
            found.append((name, -1, "unknown rank"))
            continue
        for axis, dim in enumerate(shape):
            if not isinstance(dim, int) or dim <= 0:
                found.append((name, axis, str(dim) if dim is not None else "?"))
    return found

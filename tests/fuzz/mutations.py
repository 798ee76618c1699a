"""Seeded mutations of real models for the fuzz suite: bytes-level and structure-level.

Every mutator takes the serialized model and a `random.Random` and returns new bytes, so a
case is reproducible from (seed, index) alone.
"""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _parse(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def splice(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    start, source, length = rng.randrange(len(out)), rng.randrange(len(out)), rng.randint(1, 256)
    out[start:start + length] = data[source:source + length]
    return bytes(out)


def wrong_dtype(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    target = rng.choice(list(model.graph.initializer) + list(model.graph.input))
    dtype = rng.choice([TensorProto.STRING, TensorProto.BOOL, TensorProto.INT64, TensorProto.COMPLEX128, 0, 999])
    if isinstance(target, TensorProto):
        target.data_type = dtype
    else:
        target.type.tensor_type.elem_type = dtype
    return model.SerializeToString()


def bad_dims(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    value = rng.choice([-1, 0, -(2**40), 2**40, 2**62, 7])
    if rng.random() < 0.5 and model.graph.initializer:
        tensor = rng.choice(list(model.graph.initializer))
        if tensor.dims:
            tensor.dims[rng.randrange(len(tensor.dims))] = value
    else:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_value = value
    return model.SerializeToString()


def cycle(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    nodes = list(model.graph.node)
    late, early = rng.sample(range(len(nodes)), 2) if len(nodes) > 1 else (0, 0)
    late, early = max(late, early), min(late, early)
    if nodes[early].input:
        nodes[early].input[0] = nodes[late].output[0]
    return model.SerializeToString()


def duplicate_names(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    nodes = list(model.graph.node)
    first, second = rng.choice(nodes), rng.choice(nodes)
    second.output[0] = first.output[0]
    return model.SerializeToString()


def missing_initializer(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    if model.graph.initializer:
        del model.graph.initializer[rng.randrange(len(model.graph.initializer))]
    return model.SerializeToString()


def wrong_attribute_type(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    candidates = [node for node in model.graph.node if node.attribute]
    if candidates:
        attribute = rng.choice(list(rng.choice(candidates).attribute))
        replacement = rng.choice([helper.make_attribute(attribute.name, "text"),
                                  helper.make_attribute(attribute.name, 3.5),
                                  helper.make_attribute(attribute.name, [-5, 0, 2**40]),
                                  helper.make_attribute(attribute.name, [1.5, 2.5])])
        attribute.CopyFrom(replacement)
    return model.SerializeToString()


def nested_subgraphs(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([5, 40, 200])
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    inner = leaf
    for level in range(depth):
        # only the then-branch nests, so the file grows linearly with depth
        node = helper.make_node("If", ["cond"], [f"out{level}"], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([node], f"g{level}", [],
                                  [helper.make_tensor_value_info(f"out{level}", TensorProto.FLOAT, [1])])
    top = helper.make_node("If", ["cond"], ["result"], then_branch=inner, else_branch=leaf, name="deep")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["xx"]), top], "nested",
                              [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                               helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("result", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def huge_declared_tensor(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    tensor = model.graph.initializer.add()
    tensor.name = "huge"
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend([rng.choice([2**29, 2**31, 2**40]), 4])
    if rng.random() < 0.5:
        tensor.raw_data = b"\0" * 64
    else:
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(2**33))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    first = model.graph.node[0]
    model.graph.node.insert(0, helper.make_node("Shape", ["huge"], ["huge_shape"], name="use_huge"))
    del first
    return model.SerializeToString()


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2048)))


def custom_op(data: bytes, rng: random.Random) -> bytes:
    model = _parse(data)
    node = rng.choice(list(model.graph.node))
    node.op_type = rng.choice(["NoSuchOp", "Conv", "MatMul", "Gemm", "Resize", "ConvTranspose"])
    if rng.random() < 0.5:
        node.domain = "com.example"
    return model.SerializeToString()


# Where mutated external data points: the worker's working directory holds CANARY_NAME with
# CANARY bytes (it must never be read), the model's folder holds nothing but the model.
CANARY_NAME = "data.bin"
CANARY = np.array([1, 7777777], np.int64).tobytes()  # read as a shape, it would print as 1x7777777
_LOCATIONS = (CANARY_NAME, CANARY_NAME, "./" + CANARY_NAME, "../" + CANARY_NAME, "sub/../" + CANARY_NAME,
              "/etc/hostname", "", "model.onnx", ".", "/dev/zero", "a\\..\\" + CANARY_NAME)


def _make_external(tensor: TensorProto, rng: random.Random) -> None:
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    entries = [("location", rng.choice(_LOCATIONS))]
    if rng.random() < 0.5:  # a well-formed reference to the working directory's file
        entries = [("location", CANARY_NAME), ("offset", "0"), ("length", str(len(CANARY)))]
    elif rng.random() < 0.7:
        entries.append(("offset", rng.choice(["0", "8", "-1", "x", str(2**62)])))
    if len(entries) < 3 and rng.random() < 0.7:
        entries.append(("length", rng.choice(["16", "0", "4096", "-3", str(2**40)])))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _external_shape_constant(rng: random.Random, output: str) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.array([1, 1], np.int64), "k")
    _make_external(tensor, rng)
    return helper.make_node("Constant", [], [output], value=tensor, name="ext_const")


def external_data_elsewhere(data: bytes, rng: random.Random) -> bytes:
    """External data on a tensor that is not a main-graph initializer (Constant, subgraph, function, sparse)."""
    model = _parse(data)
    kind = rng.choice(["constant", "subgraph_constant", "subgraph_initializer", "function", "sparse", "existing"])
    if kind == "existing":  # an existing Constant node or initializer turned external
        constants = [node for node in model.graph.node if node.op_type == "Constant" and node.attribute]
        if constants:
            attribute = rng.choice(constants).attribute[0]
            if attribute.type == onnx.AttributeProto.TENSOR:
                _make_external(attribute.t, rng)
                return model.SerializeToString()
        kind = "constant"
    shape_name = "ext_shape"
    if kind == "constant":
        nodes = [_external_shape_constant(rng, shape_name)]
    elif kind in ("subgraph_constant", "subgraph_initializer"):
        if kind == "subgraph_constant":
            body = helper.make_graph([_external_shape_constant(rng, "inner")], "then", [],
                                     [helper.make_tensor_value_info("inner", TensorProto.INT64, [2])])
        else:
            init = numpy_helper.from_array(np.array([1, 1], np.int64), "inner_init")
            _make_external(init, rng)
            body = helper.make_graph([helper.make_node("Identity", ["inner_init"], ["inner"])], "then", [],
                                     [helper.make_tensor_value_info("inner", TensorProto.INT64, [2])],
                                     initializer=[init])
        cond = numpy_helper.from_array(np.array(True), "ext_cond")
        model.graph.initializer.append(cond)
        nodes = [helper.make_node("If", ["ext_cond"], [shape_name], then_branch=body, else_branch=body, name="ext_if")]
    elif kind == "function":
        body = [_external_shape_constant(rng, "s"), helper.make_node("Identity", ["s"], ["b"])]
        model.functions.append(helper.make_function("fuzz.local", "ExtShape", [], ["b"], body,
                                                    [helper.make_opsetid("", 17)]))
        model.opset_import.append(helper.make_opsetid("fuzz.local", 1))
        nodes = [helper.make_node("ExtShape", [], [shape_name], domain="fuzz.local", name="ext_call")]
    else:
        values = numpy_helper.from_array(np.array([1, 1], np.int64), "values")
        _make_external(values, rng)
        sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0, 1], np.int64), "i"), [2])
        nodes = [helper.make_node("Constant", [], [shape_name], sparse_value=sparse, name="ext_sparse")]
    # the external values become the shape of an extra graph output, which analyze prints
    model.graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), "ext_one"))
    nodes.append(helper.make_node("Expand", ["ext_one", shape_name], ["ext_side"], name="ext_expand"))
    nodes.append(helper.make_node("Identity", ["ext_side"], ["ext_out"], name="ext_use"))  # consumed: resolved
    model.graph.output.append(helper.make_empty_tensor_value_info("ext_out"))
    for offset, node in enumerate(nodes):
        model.graph.node.insert(offset, node)
    return model.SerializeToString()


def repeated_graph_field(data: bytes, rng: random.Random) -> bytes:
    """A second ModelProto.graph field (protobuf merges it): extra initializers, nodes or a renamed copy."""
    model = _parse(data)
    extra = onnx.ModelProto()
    choice = rng.choice(["initializers", "copy", "node"])
    if choice == "initializers" and model.graph.initializer:
        for tensor in rng.sample(list(model.graph.initializer), min(3, len(model.graph.initializer))):
            copy = extra.graph.initializer.add()
            copy.CopyFrom(tensor)
            if rng.random() < 0.5:
                copy.name += "_again"
    elif choice == "copy":
        extra.graph.CopyFrom(model.graph)
    else:
        extra.graph.node.append(helper.make_node("Relu", [model.graph.output[0].name], ["again"]))
    repeats = rng.choice([1, 1, 2])
    return data + extra.SerializeToString() * repeats


def exponential_functions(data: bytes, rng: random.Random) -> bytes:
    """Model-local functions where f_i calls f_{i+1} twice (or f_last calls f_0): 2**depth nodes expanded."""
    model = _parse(data)
    depth = rng.choice([3, 24, 40, 64])
    recursive = rng.random() < 0.3
    for level in range(depth):
        last = level == depth - 1
        callee = "f0" if recursive and last else f"f{level + 1}"
        body = ([helper.make_node("Relu", ["a"], ["b"])] if last and not recursive else
                [helper.make_node(callee, ["a"], ["t"], domain="fuzz.fn"),
                 helper.make_node(callee, ["t"], ["b"], domain="fuzz.fn")])
        model.functions.append(helper.make_function("fuzz.fn", f"f{level}", ["a"], ["b"], body,
                                                    [helper.make_opsetid("", 17), helper.make_opsetid("fuzz.fn", 1)]))
    model.opset_import.append(helper.make_opsetid("fuzz.fn", 1))
    output = model.graph.output[0].name
    last_node = next(node for node in model.graph.node if output in node.output)
    last_node.output[list(last_node.output).index(output)] = "before_f0"
    model.graph.node.append(helper.make_node("f0", ["before_f0"], [output], domain="fuzz.fn", name="call_f0"))
    return model.SerializeToString()


def huge_intermediate(data: bytes, rng: random.Random) -> bytes:
    """Expand the input to a GiB-sized tensor and reduce it again: the numeric check must not run it."""
    model = _parse(data)
    first = model.graph.node[0]
    size = rng.choice([1 << 10, 1 << 20, 1 << 30])
    model.graph.initializer.append(numpy_helper.from_array(np.array([size, 1, 1, 1], np.int64), "grow_shape"))
    model.graph.node.insert(0, helper.make_node("Expand", [first.input[0], "grow_shape"], ["grown"], name="grow"))
    model.graph.node.insert(1, helper.make_node("ReduceMax", ["grown"], ["shrunk"], name="shrink", axes=[0],
                                                keepdims=1))
    model.graph.node.insert(2, helper.make_node("Add", [first.input[0], "shrunk"], ["regrown"], name="regrow"))
    first.input[0] = "regrown"
    return model.SerializeToString()


MUTATORS = (truncate, flip_bits, splice, wrong_dtype, bad_dims, cycle, duplicate_names, missing_initializer,
            wrong_attribute_type, nested_subgraphs, huge_declared_tensor, random_bytes, custom_op,
            external_data_elsewhere, repeated_graph_field, exponential_functions, huge_intermediate)


def mutate(data: bytes, seed: int, index: int) -> tuple[str, bytes]:
    rng = random.Random(seed * 1_000_003 + index)
    mutator = MUTATORS[index % len(MUTATORS)]
    try:
        return mutator.__name__, mutator(data, rng)
    except Exception:  # noqa: BLE001 - a mutation that cannot apply falls back to bit flips
        return "flip_bits", flip_bits(data, rng)


def seed_models() -> list[bytes]:
    """Real small models: the built-in DeepLabV3Lite at low width and a few single-op graphs."""
    from segcost.samples import deeplabv3lite

    models = [deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32).SerializeToString()]
    rng = np.random.default_rng(0)
    for op_type, attrs, weight_shape in (("Conv", {"group": 2, "pads": [1, 1, 1, 1]}, (4, 2, 3, 3)),
                                         ("ConvTranspose", {"strides": [2, 2]}, (4, 2, 2, 2))):
        weight = numpy_helper.from_array(rng.standard_normal(weight_shape).astype(np.float32), "w")
        graph = helper.make_graph([helper.make_node(op_type, ["x", "w"], ["y"], name="layer", **attrs)], "single",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                                  [helper.make_empty_tensor_value_info("y")], initializer=[weight])
        models.append(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return models

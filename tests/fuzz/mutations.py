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


MUTATORS = (truncate, flip_bits, splice, wrong_dtype, bad_dims, cycle, duplicate_names, missing_initializer,
            wrong_attribute_type, nested_subgraphs, huge_declared_tensor, random_bytes, custom_op)


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

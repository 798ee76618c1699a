"""segcost.shapes.values: shape-chain values in numpy, bit for bit what onnxruntime computes (issue 19).

Each case runs one node through shapes.values and through onnxruntime and compares dtype,
shape and bytes; a case numpy cannot reproduce must raise NotExact (the caller then runs
onnxruntime), never return a different value.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.shapes import values
from tests.test_shapes import CONV1_MACS, CONV2_MACS, chain_model

I64 = np.int64


def _ort(op_type: str, inputs: list[np.ndarray | None], attrs: dict, opset: int, outputs: int = 1) -> list[np.ndarray]:
    names = [f"in{index}" if array is not None else "" for index, array in enumerate(inputs)]
    node = helper.make_node(op_type, names, [f"out{index}" for index in range(outputs)], **attrs)
    inits = [numpy_helper.from_array(array, name) for name, array in zip(names, inputs) if array is not None]
    graph = helper.make_graph([node], "g", [], [helper.make_empty_tensor_value_info(f"out{index}")
                                               for index in range(outputs)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {})


def _numpy(op_type: str, inputs: list[np.ndarray | None], attrs: dict, opset: int, outputs: int = 1):
    names = [f"in{index}" if array is not None else "" for index, array in enumerate(inputs)]
    node = helper.make_node(op_type, names, [f"out{index}" for index in range(outputs)], **attrs)
    known = {name: array for name, array in zip(names, inputs) if array is not None}
    targets = [f"out{index}" for index in range(outputs)]
    result = values.compute_values(targets, {target: node for target in targets}, known, opset)
    return [result[target] for target in targets]


def _a(*items, dtype=I64) -> np.ndarray:
    return np.array(items, dtype=dtype)


def _s(item, dtype=I64) -> np.ndarray:
    return np.array(item, dtype=dtype)


F32 = np.float32
CASES = [
    ("Add", [_a(3, -7, 2**62), _a(4, 5, 2**62)], {}),          # wraps around like int64 in C++
    ("Sub", [_a(3, -7), _a(4, 5)], {}),
    ("Mul", [_a(3, -7), _a(-4, 5)], {}),
    ("Mul", [_a(1.5, -2.25, dtype=F32), _a(3.1, 7.0, dtype=F32)], {}),
    ("Div", [_a(7, -7, 7, -7, 0, 6), _a(2, 2, -2, -2, 5, 3)], {}),   # truncates toward zero
    ("Div", [_a(7, -7, 9, dtype=np.int32), _a(2, 2, -4, dtype=np.int32)], {}),
    ("Div", [_a(64.0, 1.0, -3.0, dtype=F32), _a(3.0, 3.0, 7.0, dtype=F32)], {}),
    ("Mod", [_a(7, -7, 7, -7), _a(3, 3, -3, -3)], {}),               # the divisor's sign
    ("Mod", [_a(7, -7, 7, -7), _a(3, 3, -3, -3)], {"fmod": 1}),
    ("Mod", [_a(7.5, -7.5, dtype=F32), _a(2.0, 2.0, dtype=F32)], {"fmod": 1}),
    ("Pow", [_s(64.0, F32), _s(0.5, F32)], {}),
    ("Pow", [_a(2.0, 3.0, dtype=F32), _s(3, I64)], {}),
    ("Cast", [_a(2.7, -2.7, 0.0, 7.0, dtype=F32)], {"to": TensorProto.INT64}),
    ("Cast", [_a(2**40 + 1, -3)], {"to": TensorProto.INT32}),
    ("Cast", [_a(2**40 + 1, -3)], {"to": TensorProto.FLOAT}),
    ("Cast", [_a(0, 3)], {"to": TensorProto.BOOL}),
    ("Cast", [_a(True, False, dtype=bool)], {"to": TensorProto.INT64}),
    ("Cast", [_a(0.5, 0.0, dtype=F32)], {"to": TensorProto.BOOL}),
    ("Concat", [_a(1, 2), _a(3), _a(4, 5)], {"axis": 0}),
    ("Concat", [_a(1, 2).reshape(1, 2), _a(3, 4).reshape(1, 2)], {"axis": -1}),
    ("Gather", [_a(1, 8, 16, 32), _s(2)], {"axis": 0}),
    ("Gather", [_a(1, 8, 16, 32), _a(-1, 0, 3)], {"axis": 0}),
    ("Gather", [np.arange(12, dtype=I64).reshape(3, 4), _a(1, -1, dtype=np.int32)], {"axis": 1}),
    ("Unsqueeze", [_s(5), _a(0)], {}),
    ("Unsqueeze", [_a(1, 2), _a(-1, 0)], {}),
    ("Squeeze", [_a(5), _a(0)], {}),
    ("Squeeze", [np.zeros((1, 3, 1), I64)], {}),
    ("Reshape", [np.arange(24, dtype=I64), _a(2, -1, 4)], {}),
    ("Reshape", [np.arange(24, dtype=I64).reshape(2, 12), _a(0, 3, -1)], {}),
    ("Transpose", [np.arange(6, dtype=I64).reshape(2, 3)], {}),
    ("Transpose", [np.arange(24, dtype=I64).reshape(2, 3, 4)], {"perm": [1, 2, 0]}),
    ("ConstantOfShape", [_a(2, 3)], {}),
    ("ConstantOfShape", [_a(4)], {"value": numpy_helper.from_array(_a(7))}),
    ("ConstantOfShape", [_a(0)], {"value": numpy_helper.from_array(_a(1))}),
    ("Expand", [_a(1, 2, 3).reshape(3, 1), _a(2, 1, 4)], {}),
    ("Range", [_s(0), _s(10), _s(3)], {}),
    ("Range", [_s(10), _s(-3), _s(-4)], {}),
    ("Range", [_s(5), _s(1), _s(2)], {}),
    ("Range", [_s(2, np.int32), _s(7, np.int32), _s(1, np.int32)], {}),
    ("Equal", [_a(1, 2, 3), _a(1, 0, 3)], {}),
    ("Equal", [_a(1.0, np.nan, dtype=F32), _a(1.0, np.nan, dtype=F32)], {}),
    ("Greater", [_a(1, 2, 3), _s(2)], {}),
    ("GreaterOrEqual", [_a(1, 2, 3), _s(2)], {}),
    ("Less", [_a(1, 2, 3), _s(2)], {}),
    ("LessOrEqual", [_a(1, 2, 3), _s(2)], {}),
    ("Not", [_a(True, False, dtype=bool)], {}),
    ("And", [_a(True, False, True, dtype=bool), _a(True, True, False, dtype=bool)], {}),
    ("Or", [_a(True, False, False, dtype=bool), _a(True, True, False, dtype=bool)], {}),
    ("Xor", [_a(True, False, False, dtype=bool), _a(True, True, False, dtype=bool)], {}),
    ("Where", [_a(True, False, dtype=bool), _a(1, 2), _a(7, 8)], {}),
    ("Where", [_a(True, False, dtype=bool), _s(1.5, F32), _a(7, 8, dtype=F32)], {}),
    ("Neg", [_a(3, -4)], {}),
    ("Abs", [_a(3, -4)], {}),
    ("Floor", [_a(2.5, -2.5, dtype=F32)], {}),
    ("Ceil", [_a(2.5, -2.5, dtype=F32)], {}),
    ("Sqrt", [_a(2.0, 64.0, 10.0, dtype=F32)], {}),
    ("Min", [_a(3, -4, 9), _a(1, 5, 9), _s(4)], {}),
    ("Max", [_a(3, -4, 9), _a(1, 5, 9)], {}),
    ("Identity", [_a(3, 4)], {}),
] + [("Slice", [np.arange(10, dtype=I64), _a(start), _a(end), _a(0), _a(step)], {})
     for start, end, step in [(1, 8, 2), (-3, 100, 1), (0, -1, 1), (-100, 100, 3), (8, 1, -2), (100, -100, -1),
                              (-1, -100, -3), (3, 3, 1), (-20, 0, -1), (5, 2, 1)]]


@pytest.mark.parametrize(("op_type", "inputs", "attrs"), CASES, ids=[case[0] for case in CASES])
def test_numpy_value_is_onnxruntime_value(op_type, inputs, attrs):
    expected = _ort(op_type, inputs, attrs, 17)
    got = _numpy(op_type, inputs, attrs, 17)
    for want, have in zip(expected, got):
        assert (have.dtype, have.shape) == (want.dtype, want.shape)
        assert have.tobytes() == want.tobytes(), (have, want)


def test_old_opsets_read_axes_and_starts_from_attributes():
    data = np.arange(10, dtype=I64)
    for op_type, inputs, attrs in [("Slice", [data], {"starts": [2], "ends": [-1], "axes": [0]}),
                                   ("Unsqueeze", [data], {"axes": [0, 2]}),
                                   ("Squeeze", [data.reshape(1, 10)], {"axes": [0]})]:
        want, have = _ort(op_type, inputs, attrs, 9)[0], _numpy(op_type, inputs, attrs, 9)[0]
        assert have.dtype == want.dtype and have.shape == want.shape and np.array_equal(have, want)


@pytest.mark.parametrize(("op_type", "inputs", "attrs"), [
    ("Div", [_a(7), _a(0)], {}),                                 # C++ integer division by zero
    ("Mod", [_a(7), _a(0)], {}),
    ("Cast", [_a(np.nan, dtype=F32)], {"to": TensorProto.INT64}),   # undefined in C++
    ("Cast", [_a(3e10, dtype=F32)], {"to": TensorProto.INT32}),
    ("Cast", [_a(2.0**63, dtype=np.float64)], {"to": TensorProto.INT64}),   # int64 max rounds up to this
    ("Cast", [_a(1.0, dtype=F32)], {"to": TensorProto.FLOAT16}),
    ("Pow", [_s(10.0, F32), _s(0.5, F32)], {}),                  # 3.1622...: last-ulp rounding may differ
    ("Range", [_s(0.0, F32), _s(1.0, F32), _s(0.1, F32)], {}),   # onnxruntime accumulates float steps
    ("Gather", [_a(1, 2), _s(2)], {"axis": 0}),
    ("Add", [_a(1, 2), _a(1, 2, dtype=np.int32)], {}),
    ("Add", [_a(1, 2), _a(1, 2, 3)], {}),                        # shapes that do not broadcast
    ("Reshape", [np.arange(6, dtype=I64), _a(4, -1)], {}),
    ("ReduceProd", [_a(2, 3)], {}),                              # not implemented here
])
def test_what_numpy_would_not_reproduce_is_refused(op_type, inputs, attrs):
    with pytest.raises(values.NotExact):
        _numpy(op_type, inputs, attrs, 17)


def test_a_shape_chain_resolves_without_importing_onnxruntime():
    """Before, every chain round built an onnxruntime session (and the import cost 20 ms per run)."""
    script = ("import sys, onnx\nfrom segcost.frontends.onnx import load_model\n"
              f"graph = load_model(onnx.load_from_string({chain_model().SerializeToString()!r}))\n"
              "print(graph.shape('z'), 'onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert result.stdout.split() == ["(1,", "8,", "8,", "32)", "False"]


def test_a_chain_through_an_op_numpy_does_not_evaluate_still_resolves_with_onnxruntime():
    """ReduceProd is not in shapes.values: the round falls back to onnxruntime and closes the chain."""
    model = chain_model()
    nodes = list(model.graph.node)
    position = next(index for index, node in enumerate(nodes) if node.op_type == "Concat")
    nodes[position:position] = [helper.make_node("ReduceProd", ["nc"], ["ncp"], keepdims=1, name="prod"),
                                helper.make_node("Div", ["nc", "ncp"], ["nc1"], name="ones"),
                                helper.make_node("Mul", ["nc1", "nc"], ["nc2"], name="again")]
    nodes[position + 3].input[0] = "nc2"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    graph = load_model(model)
    assert graph.shape("z") == (1, 8, 8, 32)
    assert analyze(graph).totals.macs == CONV1_MACS + CONV2_MACS


def test_every_registered_op_has_a_case():
    assert set(values.OPS) - {"Constant"} <= {case[0] for case in CASES}


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_arithmetic_on_random_operands_matches_onnxruntime(dtype):
    rng = np.random.default_rng(19)
    a = rng.integers(-60, 60, 400).astype(dtype)
    b = rng.integers(-9, 9, 400).astype(dtype)
    b[b == 0] = 7
    if dtype == np.float32:
        a, b = a * np.float32(1.37), b * np.float32(0.61)
    cases = [("Add", {}), ("Sub", {}), ("Mul", {}), ("Div", {}), ("Mod", {"fmod": 1}), ("Less", {}), ("Equal", {})]
    if dtype != np.float32:
        cases.append(("Mod", {}))
    for op_type, attrs in cases:
        want, have = _ort(op_type, [a, b], attrs, 17)[0], _numpy(op_type, [a, b], attrs, 17)[0]
        assert have.dtype == want.dtype and have.tobytes() == want.tobytes(), op_type
    if dtype == np.float32:
        for to in (TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8):
            values = np.abs(a) if to == TensorProto.UINT8 else a   # |a| < 83: in range of every target
            want, have = _ort("Cast", [values], {"to": to}, 17)[0], _numpy("Cast", [values], {"to": to}, 17)[0]
            assert have.dtype == want.dtype and have.tobytes() == want.tobytes(), to

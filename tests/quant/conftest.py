"""Small ONNX models for the int8 tests, built with onnx.helper."""

from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Collects nodes and initializers; conv() adds a 1x1 (or kxk) Conv with seeded weights of a chosen gain."""

    def __init__(self, seed: int = 0):
        self.nodes: list = []
        self.inits: list = []
        self.rng = np.random.default_rng(seed)

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def conv(self, name: str, x: str, cin: int, cout: int, gain: float = 1.0, kernel: int = 1) -> str:
        weight = self.rng.standard_normal((cout, cin, kernel, kernel)) * gain / np.sqrt(cin * kernel * kernel)
        self.const(name + "_w", weight.astype(np.float32))
        self.const(name + "_b", (0.1 * gain * self.rng.standard_normal(cout)).astype(np.float32))
        self.nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], name=name,
                                           pads=[kernel // 2] * 4))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def model(self, inputs: dict[str, list], outputs: dict[str, list], opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else 0.0


@pytest.fixture
def qm():
    """Helpers for the int8 tests: Builder, cosine."""
    return types.SimpleNamespace(Builder=Builder, cosine=cosine)

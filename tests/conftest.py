"""Shared helpers: tiny hand-built ONNX models and an in-process CLI runner."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model


def single_op_model(op_type: str, input_shapes: dict[str, list], weights: dict[str, np.ndarray] | None = None,
                    inputs: list[str] | None = None, y_shape: list | None = None, opset: int = 17,
                    domain: str = "", dtype: int = TensorProto.FLOAT, **attrs) -> onnx.ModelProto:
    """A model with one node: graph inputs from `input_shapes`, constants from `weights`."""
    weights = weights or {}
    names = inputs if inputs is not None else [*input_shapes, *weights]
    node = helper.make_node(op_type, names, ["y"], name="node", domain=domain or None, **attrs)
    graph = helper.make_graph(
        [node], "single",
        inputs=[helper.make_tensor_value_info(name, dtype, shape) for name, shape in input_shapes.items()],
        outputs=[helper.make_tensor_value_info("y", dtype, y_shape)
                 if y_shape is not None else helper.make_empty_tensor_value_info("y")],
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def layer_of(model: onnx.ModelProto, **input_shapes):
    """Analyze `model` and return the cost of its node named 'node'."""
    result = analyze(load_model(model, input_shapes or None))
    return next(layer for layer in result.layers if layer.name == "node")


def weight(*shape: int, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


@pytest.fixture
def run_cli(capsys):
    """Run `segcost ARGS` in-process; returns (exit_code, stdout, stderr)."""
    from segcost.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        return exited.value.code, captured.out, captured.err

    return run


@pytest.fixture
def pandas_records(monkeypatch):
    """A stand-in pandas whose DataFrame.from_records keeps the rows: the returned dict gets them under "rows"
    (to_pandas() then returns "frame"), so tests read what segcost hands pandas without installing it."""
    import sys
    import types

    seen: dict = {}

    class DataFrame:
        @classmethod
        def from_records(cls, rows):
            seen["rows"] = rows
            return "frame"

    monkeypatch.setitem(sys.modules, "pandas", types.SimpleNamespace(DataFrame=DataFrame))
    return seen

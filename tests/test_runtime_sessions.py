"""Every onnxruntime session segcost opens goes through segcost.ir.runtime.open_session, which silences
onnxruntime's own log: a failing kernel must not print a coloured `[E:onnxruntime...]` line to stderr
next to segcost's one `segcost: error:` line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost
from segcost.ir.runtime import open_session

PACKAGE = Path(segcost.__file__).parent


def test_no_module_opens_a_session_but_the_runtime_helper():
    opened = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
              if path.name != "runtime.py" and re.search(r"InferenceSession\s*\(", path.read_text())]
    assert opened == []


def test_a_failing_kernel_leaves_stderr_silent(capfd):
    """A Reshape to a target that does not fit its input fails at run time; onnxruntime logs it at ERROR."""
    shape = numpy_helper.from_array(np.array([5, 5], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 5])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = open_session(model)
    with pytest.raises(Exception):  # noqa: B017, PT011 - onnxruntime's own exception types
        session.run(None, {"x": np.zeros((2, 3), np.float32)})
    assert capfd.readouterr().err == ""

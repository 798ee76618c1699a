"""Every onnxruntime session segcost opens goes through segcost.ir.runtime.open_session, which silences
onnxruntime's own log: a failing kernel must not print a coloured `[E:onnxruntime...]` line to stderr
next to segcost's one `segcost: error:` line."""

from __future__ import annotations

import ast
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


# Every function that may call open_session, with the bound that covers its run (segcost/targets/run_bounds.py).
# A new caller fails test_every_session_is_opened_behind_the_run_bound until it is listed here with its bound;
# a user's model should go through bounded_session instead.
BOUNDED_CALLERS = {
    "targets/run_bounds.py:bounded_session": "bound_run_memory(graph) first: the gate itself",
    "pipeline.py:run_onnxruntime": "optimize_model: prepare_check bounds the graph before any pass runs",
    "quant/ranges.py:stream_tensors": "int8 calibration: optimize_model and sweep bound the fused graph first",
    "quant/ranges.py:quiet_session": "int8 accuracy of the calibrated graph: within optimize_model's bound",
    "quant/speed.py:measure": "optimize --measure: the float and int8 models of optimize_model's bound",
    "quant/quantize.py:_equalization_error": "int8 calibration (equalization): within the same bound",
    "shapes/evaluate.py:_run_onnxruntime": "shape values of constants while loading, not the model's run",
}


def _open_session_callers() -> set[str]:
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for call in ast.walk(function):
                if isinstance(call, ast.Call) and (getattr(call.func, "id", None) == "open_session"
                                                   or getattr(call.func, "attr", None) == "open_session"):
                    callers.add(f"{path.relative_to(PACKAGE).as_posix()}:{function.name}")
        if path.name != "runtime.py" and re.search(r"\bopen_session\b", path.read_text()) and not any(
                caller.startswith(f"{path.relative_to(PACKAGE).as_posix()}:") for caller in callers):
            callers.add(f"{path.relative_to(PACKAGE).as_posix()}:<module-level or aliased use>")
    return callers


def test_every_session_is_opened_behind_the_run_bound():
    """breaker6 R7: profile and calibrate opened sessions on models optimize refuses to run (3 GiB, 10^12 trips)."""
    assert _open_session_callers() - set(BOUNDED_CALLERS) == set()


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

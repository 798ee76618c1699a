"""Every command that runs a user's model in onnxruntime bounds it first (breaker6 R7).

`optimize` refused a 152-byte Expand to 3 GiB and a Loop of 10^12 constant trips before running
them; `profile` and `calibrate` ran both (6.6 GB RSS; a run that never ends), and so did
`optimize --int8 --no-check` (calibration) and a sweep's calibration and onnxruntime latency.
The models here are small; the byte bound is lowered so that they are over it.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost.targets.run_bounds as run_bounds

EXPANDED = [1, 1024, 2048]   # 8 MiB of float32, over the 1 MiB bound the tests set


def expand_model() -> onnx.ModelProto:
    """x[1, 1] Expanded to EXPANDED, then summed: an intermediate far larger than the file."""
    shape = numpy_helper.from_array(np.array(EXPANDED, np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Expand", ["x", "shape"], ["big"], name="grow"),
                               helper.make_node("ReduceSum", ["big"], ["y"], name="sum", keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def loop_model(trips: int = 3) -> onnx.ModelProto:
    """A Loop with a constant trip count around one Add (breaker6's had 10^12 trips)."""
    body = helper.make_graph([helper.make_node("Add", ["v", "one"], ["v_next"], name="add"),
                              helper.make_node("Identity", ["cond"], ["cond_out"], name="keep")], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_next", TensorProto.FLOAT, [1, 4])],
                             [numpy_helper.from_array(np.ones((1, 4), np.float32), "one")])
    initializers = [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                    numpy_helper.from_array(np.array(True), "go")]
    graph = helper.make_graph([helper.make_node("Loop", ["trips", "go", "x"], ["y"], name="loop", body=body)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def sessions(monkeypatch):
    """The onnxruntime sessions opened during the test (none may be), with the bound lowered to 1 MiB."""
    opened: list = []
    monkeypatch.setattr(run_bounds, "MAX_RUN_TENSOR_BYTES", 1 << 20)
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *args, **kwargs: opened.append(args) or 1 / 0)
    return opened


def _save(model: onnx.ModelProto, path) -> str:
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


COMMANDS = [("profile", ["--runs", "1", "--warmup", "0"]), ("calibrate", ["--runs", "1", "-o", "OUT"]),
            ("optimize", ["--int8", "--no-check", "--calib-size", "1", "-o", "OUT"])]


@pytest.mark.parametrize("command,options", COMMANDS)
@pytest.mark.parametrize("build,message", [(expand_model, "tensor 'big' [1, 1024, 2048] needs 8,388,608 bytes"),
                                           (loop_model, "node 'loop' (Loop) has a subgraph")])
def test_commands_refuse_a_run_they_cannot_bound_before_onnxruntime_sees_it(run_cli, tmp_path, sessions, command,
                                                                             options, build, message):
    path = _save(build(), tmp_path / "m.onnx")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(command, path, *[str(out) if item == "OUT" else item for item in options])
    assert sessions == []                                 # onnxruntime never saw it
    assert code == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcost: error: ") and message in lines[0], stderr
    assert not out.exists()


def test_a_sweep_bounds_its_calibration_and_its_onnxruntime_latency(sessions):
    from segcost.frontends.onnx import load_model
    from segcost.sweep.run import _ort_latency_ms, _quantize
    from segcost.sweep.spec import Settings

    graph = load_model(expand_model())
    with pytest.raises(Exception, match="tensor 'big'"):
        _ort_latency_ms(graph, Settings())
    with pytest.raises(Exception, match="tensor 'big'"):
        _quantize(graph, "cpu", 1)
    assert sessions == []


def test_a_model_within_the_bounds_is_still_profiled(run_cli, tmp_path):
    path = _save(expand_model(), tmp_path / "m.onnx")
    code, stdout, stderr = run_cli("profile", path, "--runs", "1", "--warmup", "0")
    assert code == 0, stderr
    assert run_bounds.bound_run_memory.__module__ == "segcost.targets.run_bounds"

"""Untrusted models never exhaust the machine, and Ctrl-C always stops segcost (issue 14, resources)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]


def _segcost(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "segcost", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _save(model: onnx.ModelProto, path: Path) -> str:
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return str(path)


def _model(nodes, inputs, initializers=(), functions=(), opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *opsets], functions=list(functions))


def huge_intermediate():
    """Expand a 1x1 input to 4 GiB, then sum it: a few hundred bytes of file."""
    shape = numpy_helper.from_array(np.array([1, 1 << 15, 1 << 15], np.int64), "shape")
    return _model([helper.make_node("Expand", ["x", "shape"], ["big"], name="grow"),
                   helper.make_node("ReduceSum", ["big"], ["y"], name="sum", keepdims=0)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])], [shape])


def data_dependent_intermediate():
    """Expand to a shape read from an input: its size is unknown until the run."""
    return _model([helper.make_node("Expand", ["x", "shape"], ["big"], name="grow"),
                   helper.make_node("ReduceSum", ["big"], ["y"], name="sum", keepdims=0)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1]),
                   helper.make_tensor_value_info("shape", TensorProto.INT64, [3])])


@pytest.mark.parametrize("build,message", [(huge_intermediate, "tensor 'big' [1, 32768, 32768] needs"),
                                           (data_dependent_intermediate, "tensor 'big' has no static shape")])
def test_numeric_check_refuses_unbounded_memory_before_running(run_cli, tmp_path, monkeypatch, build, message):
    import segcost.pipeline

    ran = []
    monkeypatch.setattr(segcost.pipeline, "run_onnxruntime", lambda *args: ran.append(args) or [])
    path = _save(build(), tmp_path / "m.onnx")
    code, stdout, stderr = run_cli("optimize", path, "-o", str(tmp_path / "o.onnx"))
    assert ran == []                                        # onnxruntime never saw it
    assert code == 2, stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcost: error: numeric check:"), stderr
    assert message in lines[0] and "--no-check" in lines[0]
    assert not (tmp_path / "o.onnx").exists()


def exponential_functions(depth: int = 40, recursive: bool = False) -> onnx.ModelProto:
    """f_i calls f_{i+1} twice: 2**depth nodes once expanded, from about 3 KB of file."""
    functions = []
    for level in range(depth):
        callee = f"f{0 if recursive and level == depth - 1 else level + 1}"
        body = ([helper.make_node("Relu", ["a"], ["b"])] if level == depth - 1 and not recursive else
                [helper.make_node(callee, ["a"], ["t"], domain="local"),
                 helper.make_node(callee, ["t"], ["b"], domain="local")])
        functions.append(helper.make_function("local", f"f{level}", ["a"], ["b"], body,
                                              [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]))
    return _model([helper.make_node("f0", ["x"], ["y"], domain="local", name="call")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], functions=functions,
                  opsets=[helper.make_opsetid("local", 1)])


@pytest.mark.parametrize("recursive,message", [(False, "expand to more than 1,000,000 nodes"),
                                               (True, "calls itself")])
def test_exponential_or_recursive_functions_are_refused_before_expansion(tmp_path, recursive, message):
    path = _save(exponential_functions(recursive=recursive), tmp_path / "m.onnx")
    assert os.path.getsize(path) < 4096
    process = _segcost("analyze", path)
    try:
        _, stderr = process.communicate(timeout=60)   # today's main: hours inside onnx's C++
    finally:
        process.kill()
    assert process.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segcost: error: {path}: ") and message in lines[0], stderr


def long_running_model(size: int = 4096, steps: int = 30) -> onnx.ModelProto:
    """A chain of large MatMuls: about a minute inside onnxruntime's C++ (GIL released)."""
    nodes, previous = [], "x"
    for step in range(steps):
        nodes.append(helper.make_node("MatMul", [previous, "x"], [f"m{step}"], name=f"mm{step}"))
        previous = f"m{step}"
    nodes.append(helper.make_node("ReduceMean", [previous], ["y"], name="mean", keepdims=0))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see the run has started")
def test_ctrl_c_stops_a_long_onnxruntime_run_with_one_line(tmp_path):
    path = _save(long_running_model(), tmp_path / "m.onnx")
    process = _segcost("optimize", path, "-o", str(tmp_path / "o.onnx"))
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and _cpu_seconds(process.pid) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)                                # loading done, onnxruntime is multiplying
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=20)   # today's main: until the run ends
        stopped_after = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["segcost: interrupted"], stderr
    assert stopped_after < 15
    assert not (tmp_path / "o.onnx").exists() and os.listdir(tmp_path) == ["m.onnx"]

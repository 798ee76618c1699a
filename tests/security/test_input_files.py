"""Config-like inputs cannot hang or exhaust the machine (issue 14, items 9 and 10).

Budgets files, pyproject.toml, baselines, target profiles and sweep specs go through one
reader (segcost.fileio.read_text_file): regular files under a size cap. Sweeps are bounded
before they are expanded, their duplicate checks are linear, and each point has a timeout;
`segcost diff` aligns renamed layers in linear memory. Wrong-typed values are one error line
naming the file and key. Commands that could hang run in a subprocess with a time and
memory limit, so on the old code they fail instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.errors import InputError
from tests.security.helpers import one_error_line

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 3 * 2**30


def _small_model(path: Path) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "small",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _segcost(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """`segcost ARGS` in a subprocess under a memory limit; a hang fails the test after `timeout` s."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    try:
        done = subprocess.run([sys.executable, "-m", "segcost", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=env, preexec_fn=_limits, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"segcost {' '.join(args)} still running after {timeout} s")
    return done.returncode, done.stderr


def _special(kind: str, path: Path) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return path


# -------------------------------------------------------------------- special and oversized files

@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("role", ["profile", "baseline", "sweep-spec", "budgets-file"])
def test_config_like_inputs_must_be_regular_files(tmp_path, role, kind):
    """A FIFO blocked the reader forever; /dev/zero filled the memory (read_text on an endless file)."""
    model = _small_model(tmp_path / "model.onnx")
    if role == "profile":
        path = _special(kind, tmp_path / "board.toml")
        args = ["cost", str(model), "--target", str(path)]
    elif role == "baseline":
        path = _special(kind, tmp_path / "baseline.json")
        args = ["check", str(model), "--baseline", str(path)]
    elif role == "sweep-spec":
        path = _special(kind, tmp_path / "spec.toml")
        args = ["sweep", str(path), "-q", "--max-points", "0"]
    else:
        path = _special(kind, tmp_path / "segcost.toml")
        args = ["check"]   # the implicit ./segcost.toml
    code, err = _segcost(*args, cwd=tmp_path, timeout=30)
    one_error_line(code, err, path.name, "regular file")


def test_config_like_inputs_have_a_size_cap(tmp_path):
    """A valid 2 MiB budgets file (segcost.fileio.MAX_CONFIG_BYTES is 1 MiB)."""
    model = _small_model(tmp_path / "model.onnx")
    config = tmp_path / "segcost.toml"
    padding = "# padding\n" * (2 * 2**20 // 10)
    config.write_text(f'[[models]]\npath = "{model.name}"\nmax_gmacs = 10\n{padding}')
    code, err = _segcost("check", cwd=tmp_path)
    one_error_line(code, err, "segcost.toml", "limit")


@pytest.mark.parametrize("role", ["profile", "baseline", "sweep-spec", "budgets-file"])
def test_deeply_nested_config_like_inputs_areone_error_line(tmp_path, role):
    """5000 nested arrays: the parsers' RecursionError used to surface without the file's name."""
    model = _small_model(tmp_path / "model.onnx")
    deep_toml = "a = " + "[" * 5000 + "]" * 5000 + "\n"
    if role == "profile":
        path, args = tmp_path / "board.toml", ["cost", str(model), "--target", "board.toml"]
    elif role == "baseline":
        path, args = tmp_path / "baseline.json", ["check", str(model), "--baseline", "baseline.json"]
    elif role == "sweep-spec":
        path, args = tmp_path / "spec.toml", ["sweep", "spec.toml", "-q", "--max-points", "0"]
    else:
        path, args = tmp_path / "segcost.toml", ["check"]
    path.write_text("[" * 100_000 + "]" * 100_000 if role == "baseline" else deep_toml)
    code, err = _segcost(*args, cwd=tmp_path)
    one_error_line(code, err, path.name, "nested")


# ---------------------------------------------------------------------------------- sweeps bounded

def test_sweep_point_count_is_capped_before_expansion(tmp_path):
    """150 sizes x 150 classes = 22,500 points (the cap, spec.MAX_POINTS, is 10,000): refused from the axes."""
    sizes = ", ".join(f'"{32 * (index + 1)}"' for index in range(150))
    classes = ", ".join(str(index + 1) for index in range(150))
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[axes]\nmodels = ["MobileNetV2+FPNLite"]\ninput_sizes = [{sizes}]\nnum_classes = [{classes}]\n')
    code, err = _segcost("sweep", str(spec), "-q", "--max-points", "0", cwd=tmp_path, timeout=60)
    one_error_line(code, err, "spec.toml", "22,500 points")
    assert not (tmp_path / "spec.cache").exists()


class _Slow(Exception):
    pass


def _cpu_budget(seconds: float):
    def expire(signum, frame):
        raise _Slow(f"over {seconds} s of CPU")

    signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)


def test_sweep_duplicate_detection_is_linear():
    """80,000 distinct classes: the quadratic `in list` check took minutes; a set takes milliseconds."""
    from segcost.sweep.spec import parse_spec

    data = {"axes": {"models": ["MobileNetV2+FPNLite"], "num_classes": list(range(1, 80_001))}}
    _cpu_budget(5.0)
    try:
        with pytest.raises(InputError, match="80,000 points"):
            parse_spec(data, "spec.toml")
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)


def test_sweep_points_have_a_timeout(tmp_path):
    """A factory that never returns becomes an error row after settings.point_timeout_s, not a hung sweep."""
    from segcost.sweep.points import Point
    from segcost.sweep.run import run_point
    from segcost.sweep.spec import Settings

    (tmp_path / "hangs_forever.py").write_text("import time\n\ndef build(**kwargs):\n    time.sleep(3600)\n")
    point = Point(0, "hangs_forever:build", True, 32, 32, None, None, None, "fp32", ("macs",),
                  Settings(point_timeout_s=1), key="k", search_path=str(tmp_path))
    started = time.monotonic()
    try:
        result = run_point(point)
    finally:
        sys.modules.pop("hangs_forever", None)
    assert time.monotonic() - started < 30
    assert result["status"] == "error" and "timed out" in result["error"]
    assert result["cacheable"] is False   # how busy the machine was is no property of the point


def test_sweep_timeout_setting_does_not_change_point_hashes():
    from segcost.sweep.points import expand
    from segcost.sweep.spec import parse_spec

    quick = parse_spec({"axes": {"models": ["MobileNetV2+FPNLite"]}, "settings": {"point_timeout_s": 5}})
    slow = parse_spec({"axes": {"models": ["MobileNetV2+FPNLite"]}, "settings": {"point_timeout_s": 500}})
    assert [p.key for p in expand(quick, "code").points] == [p.key for p in expand(slow, "code").points]


# ------------------------------------------------------------------------------------- diff bounded

def _chain(path: Path, layers: int, prefix: str) -> Path:
    """`layers` 1x1 Convs in a chain, every name starting with `prefix` (a renamed copy has no name in common)."""
    nodes, tensors, previous = [], [], "x"
    weight = np.ones((2, 2, 1, 1), np.float32)
    for index in range(layers):
        nodes.append(helper.make_node("Conv", [previous, f"{prefix}w{index}"], [f"{prefix}t{index}"],
                                      name=f"{prefix}conv{index}"))
        tensors.append(numpy_helper.from_array(weight, f"{prefix}w{index}"))
        previous = f"{prefix}t{index}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 2, 4, 4])],
                              initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_diff_of_renamed_8000_layer_graphs_is_fast_and_small(tmp_path):
    """The old exact LCS built an 8000 x 8000 table (gigabytes); the 3 GiB limit made that an error."""
    left = _chain(tmp_path / "a.onnx", 8000, "a_")
    right = _chain(tmp_path / "b.onnx", 8000, "b_")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "segcost", "diff", str(left), str(right), "--format", "json"],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limits, check=False,
                          env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))})
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["changes"] == []   # every layer paired by structure, none added or removed
    assert seconds < 60


# ------------------------------------------------------------------------ wrong-typed values, NUL

@pytest.mark.parametrize("file_name,content,words", [
    ("segcost.toml", '[[models]]\npath = "model.onnx"\ninput_shape = 5\nmax_gmacs = 1\n', ["input_shape"]),
    ("segcost.toml", '[[models]]\npath = "model.onnx"\ntarget = 5\nmax_gmacs = 1\n', ["target"]),
    ("segcost.toml", '[[models]]\npath = "model.onnx"\nverify = "yes"\nmax_gmacs = 1\n', ["verify"]),
    ("segcost.toml", '[[models]]\npath = "model.onnx"\nmax_gmacs = nan\n', ["max_gmacs"]),
    ("segcost.toml", '[[models]]\npath = "model.onnx"\nmax_params_m = inf\n', ["max_params_m"]),
    ("segcost.toml", '[[models]]\npath = "m\\u0000.onnx"\nmax_gmacs = 1\n', ["NUL"]),
    ("pyproject.toml", 'tool = 5\n', ["tool"]),
    ("pyproject.toml", '[tool]\nsegcost = 5\n', ["tool.segcost"]),
])
def test_wrong_typed_config_values_areone_error_line(tmp_path, file_name, content, words):
    _small_model(tmp_path / "model.onnx")
    (tmp_path / file_name).write_text(content)
    code, err = _segcost("check", cwd=tmp_path)
    one_error_line(code, err, file_name, *words)


@pytest.mark.parametrize("totals", [
    '{"macs": NaN, "params": 1}', '{"macs": 1e400, "params": 1}', '{"macs": Infinity, "params": 1}',
    '{"macs": 1.5, "params": 1}', '{"macs": -5, "params": 1}', '{"params": 1}', '{"macs": "3", "params": 1}',
])   # a 30-digit count is valid since breaker6 R6: counts are exact integers of any size (test_check_inputs)
def test_bad_baseline_numbers_areone_error_line(tmp_path, totals):
    model = _small_model(tmp_path / "model.onnx")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(f'{{"schema": "segcost.baseline/1", "models": {{"{model}": {{"totals": {totals}}}}}}}')
    code, err = _segcost("check", str(model), "--baseline", str(baseline), cwd=tmp_path)
    one_error_line(code, err, "baseline.json")


def test_nul_byte_in_a_sweep_spec_target_isone_error_line(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('measures = ["macs", "latency"]\n[axes]\nmodels = ["MobileNetV2+FPNLite"]\n'
                    'targets = ["board\\u0000.toml"]\n')
    code, err = _segcost("sweep", str(spec), "-q", "--max-points", "0", cwd=tmp_path)
    one_error_line(code, err, "spec.toml", "NUL")

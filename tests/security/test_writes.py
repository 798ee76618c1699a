"""Outputs never replace what the user owns (issue 14, items 5-7): segcost.fileio.

One test per kind: a symlink output keeps the link, a FIFO or character device is written
through (never replaced by a regular file), an output that is the same file as any input is
refused before anything is written, all outputs of a command are checked before the first
write, and an interrupted write leaves neither a temporary file nor a damaged old file.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.security.helpers import one_error_line

REPO = Path(__file__).resolve().parents[2]


def _conv_bn_model(path: Path) -> Path:
    """Conv -> BatchNorm: small, and `optimize` has something to fuse."""
    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    for name, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
        tensors.append(numpy_helper.from_array(np.full(4, value, np.float32), name))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn")],
        "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    return _conv_bn_model(tmp_path / "model.onnx")


def _no_temp_files(folder: Path) -> None:
    assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------- special-file outputs

def test_output_onto_a_symlink_writes_its_target_and_keeps_the_link(run_cli, model, tmp_path):
    real = tmp_path / "reports" / "analysis.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(Path("reports") / "analysis.json")
    code, _, err = run_cli("analyze", str(model), "--format", "json", "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(Path("reports") / "analysis.json")
    assert '"schema"' in real.read_text()
    _no_temp_files(tmp_path)
    _no_temp_files(real.parent)


def test_output_onto_a_fifo_is_written_through(run_cli, model, tmp_path):
    fifo = tmp_path / "report.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # a reader is waiting, as `cat pipe &` would be
    try:
        code, _, err = run_cli("analyze", str(model), "--format", "json", "-o", str(fifo))
        received = b""
        while chunk := _read_available(reader):
            received += chunk
    finally:
        os.close(reader)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert b'"schema"' in received
    _no_temp_files(tmp_path)


def _read_available(handle: int) -> bytes:
    try:
        return os.read(handle, 1 << 16)
    except BlockingIOError:
        return b""


def _char_device_outputs(tmp_path: Path) -> list[Path]:
    """A symlink to /dev/null, and (when the sandbox allows mknod) a null device made under tmp."""
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    paths = [link]
    node = tmp_path / "null-node"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        paths.append(node)
    except (PermissionError, OSError):
        pass   # no CAP_MKNOD here: the symlink to /dev/null still covers the kind
    return paths


def test_output_onto_a_character_device_is_written_through(run_cli, model, tmp_path):
    before = os.stat("/dev/null")
    if not stat.S_ISCHR(before.st_mode):
        pytest.skip("/dev/null is not a character device here (something on this machine replaced it)")
    for output in _char_device_outputs(tmp_path):
        kind_before = os.lstat(output).st_mode
        code, _, err = run_cli("analyze", str(model), "-o", str(output))
        assert code == 0, err
        assert stat.S_IFMT(os.lstat(output).st_mode) == stat.S_IFMT(kind_before), f"{output} was replaced"
        assert stat.S_ISCHR(os.stat(output).st_mode)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    _no_temp_files(tmp_path)


# ------------------------------------------------------------------------ outputs that are inputs

def _budget_file(tmp_path: Path, model: Path) -> Path:
    config = tmp_path / "segcost.toml"
    config.write_text(f'[[models]]\npath = "{model.name}"\nmax_gmacs = 10\n')
    return config


def _baseline(run_cli, model: Path, tmp_path: Path) -> Path:
    baseline = tmp_path / "baseline.json"
    code, _, err = run_cli("baseline", "save", str(model), "-o", str(baseline))
    assert code == 0, err
    return baseline


def _profile(tmp_path: Path) -> Path:
    from segcost.targets.profile_toml import profile_text

    profile = tmp_path / "board.toml"
    profile.write_text(profile_text("tda4vm"))
    return profile


@pytest.mark.parametrize("case", ["config-symlink", "baseline-hardlink", "profile-cost", "profile-analyze",
                                  "calibrate-base", "calibration-data"])
def test_an_output_that_is_any_input_is_refused_before_writing(run_cli, model, tmp_path, case):
    """Every input kind, reached through a symlink or a hard link (same device and inode)."""
    if case == "config-symlink":
        victim = _budget_file(tmp_path, model)
        output = tmp_path / "report.txt"
        output.symlink_to(victim.name)
        args = ["check", "--config", str(victim), "-o", str(output)]
    elif case == "baseline-hardlink":
        victim = _baseline(run_cli, model, tmp_path)
        output = tmp_path / "check.json"
        os.link(victim, output)
        args = ["check", str(model), "--baseline", str(victim), "--format", "json", "-o", str(output)]
    elif case == "profile-cost":
        victim = output = _profile(tmp_path)
        args = ["cost", str(model), "--target", str(victim), "-o", str(output)]
    elif case == "profile-analyze":
        victim = _profile(tmp_path)
        output = tmp_path / "analysis.md"
        output.symlink_to(victim)
        args = ["analyze", str(model), "--target", str(victim), "--format", "md", "-o", str(output)]
    elif case == "calibrate-base":
        victim = output = _profile(tmp_path)
        args = ["calibrate", str(model), "--base", str(victim), "--runs", "1", "-o", str(output)]
    else:
        victim = tmp_path / "calib.npy"
        np.save(victim, np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
        output = tmp_path / "int8.onnx"
        output.symlink_to(victim.name)
        args = ["optimize", str(model), "--int8", "--calib", str(victim), "--calib-size", "2", "--no-check",
                "-o", str(output)]
    before = victim.read_bytes()
    code, _, err = run_cli(*args)
    one_error_line(code, err, "same file", str(victim.name))
    assert victim.read_bytes() == before
    _no_temp_files(tmp_path)


def test_all_outputs_are_checked_before_the_first_write(run_cli, model, tmp_path):
    """optimize -o o.onnx --report model.onnx used to write o.onnx, then fail."""
    before = model.read_bytes()
    output = tmp_path / "o.onnx"
    code, _, err = run_cli("optimize", str(model), "--no-check", "-o", str(output), "--report", str(model))
    one_error_line(code, err, "--report", "same file")
    assert not output.exists() and model.read_bytes() == before


def test_two_outputs_that_are_one_file_are_refused(run_cli, model, tmp_path):
    output = tmp_path / "o.onnx"
    code, _, err = run_cli("optimize", str(model), "--no-check", "-o", str(output), "--report", str(output))
    one_error_line(code, err, "same file")
    assert not output.exists()


def test_a_sweep_table_onto_its_spec_is_refused(run_cli, tmp_path):
    """The sweep table used to be opened with open(..., "w") through a symlink: the spec was truncated."""
    spec = tmp_path / "spec.toml"
    spec.write_text('[axes]\nmodels = ["MobileNetV2+FPNLite"]\n')
    table = tmp_path / "results.csv"
    table.symlink_to(spec.name)
    code, _, err = run_cli("sweep", str(spec), "-o", str(table), "--max-points", "0", "-q")
    one_error_line(code, err, "same file")
    assert spec.read_text().startswith("[axes]")


# ------------------------------------------------------------------------------ interrupted writes

_WRITER = textwrap.dedent("""
    import sys, time
    from segcost.fileio import write_atomic

    def chunks():
        yield "new content, first half\\n"
        print("writing", flush=True)   # the parent signals us now, while the temporary file exists
        time.sleep(60)
        yield "second half\\n"

    write_atomic(sys.argv[1], chunks())
""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_write_leaves_no_temp_file_and_the_old_file(tmp_path, signum):
    target = tmp_path / "report.json"
    target.write_text("old report\n")
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))})
    try:
        assert process.stdout.readline().strip() == "writing", process.stderr.read()
        assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))   # the write is under way
        process.send_signal(signum)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    # cleaned up, then the process still dies of the signal (exit status 130 / 143 in a shell)
    assert process.returncode == -signum, process.stderr.read()
    assert target.read_text() == "old report\n"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


# -------------------------------------------------------------------- a model's external data is an input
def _external_data_model(folder: Path) -> tuple[Path, Path]:
    """model.onnx whose weights live in model.onnx.data beside it."""
    proto = onnx.load(_conv_bn_model(folder / "inline.onnx"))
    onnx.save_model(proto, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx", folder / "model.onnx.data"


@pytest.mark.parametrize("command", [
    ["analyze", "{model}", "-o", "{data}"],
    ["optimize", "{model}", "-o", "{data}"],
    ["optimize", "{model}", "-o", "{other}", "--report", "{data}"],
    ["cost", "{model}", "--target", "tda4vm", "-o", "{data}"],
    ["baseline", "save", "{model}", "-o", "{data}"],
])
def test_an_output_onto_the_models_external_data_is_refused(run_cli, tmp_path, command):
    """The data file is only known once the model is read; no output may replace it, and none is written."""
    model_path, data = _external_data_model(tmp_path)
    before = data.read_bytes()
    other = tmp_path / "out.onnx"
    args = [part.format(model=model_path, data=data, other=other) for part in command]
    code, _, err = run_cli(*args)
    one_error_line(code, err, str(data), "model reads")
    assert data.read_bytes() == before
    assert not other.exists()   # checked before the first write
    _no_temp_files(tmp_path)

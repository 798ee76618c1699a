"""The local backend's hold on its workers: a hard per-point deadline and a quiet Ctrl-C.

A point stuck in native code never returns to the interpreter, so the worker's SIGALRM cannot
stop it: the driver kills that worker at the deadline (plus a grace period) and the rest of the
sweep goes on. Ctrl-C reaches the whole process group; only the driver may answer it, with one
line and exit 130, never a traceback from the fork server or a worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segcost.sweep import read_table
from segcost.sweep.backends import HARD_GRACE_SECONDS

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.sweep.test_sweep:tiny_segnet"


def stuck_factory(num_classes: int = 4):
    """Blocks forever in C: locks a plain mutex it already holds (Python signal handlers never run)."""
    import ctypes

    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)   # zero bytes: PTHREAD_MUTEX_INITIALIZER, a non-recursive mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)


def _spec(tmp_path: Path, models: str, sizes: str, timeout: int = 1800) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(f"""
        measures = ["macs"]
        [settings]
        point_timeout_s = {timeout}
        [axes]
        models = [{models}]
        input_sizes = [{sizes}]
        """))
    return path


def _sweep(tmp_path: Path, spec: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "segcost", "sweep", str(spec), "-o", str(tmp_path / "r.csv"),
                             "--trust-model-code", *options], cwd=REPO, env={**os.environ, "TMPDIR": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(process: subprocess.Popen, seconds: float) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        raise AssertionError(f"still running after {seconds} s: {err.decode()[-2000:]}") from None
    return process.returncode, err.decode()


def test_a_point_stuck_in_native_code_is_killed_at_its_deadline(tmp_path):
    # 3 s: time enough for the good point's cold export on a busy machine (the deadline is per point)
    spec = _spec(tmp_path, f'"tests.sweep.test_worker_control:stuck_factory", "{FACTORY}"', '"32x32"', timeout=3)
    started = time.monotonic()
    code, err = _finish(_sweep(tmp_path, spec, "--workers", "1", "-q"), 90)
    assert code == 0, err
    rows = read_table(tmp_path / "r.csv")
    assert [row["status"] for row in rows] == ["error", "ok"], [row["error"] for row in rows]
    assert rows[0]["error"] == "timed out: stopped after 3 s (settings.point_timeout_s)"
    assert 3 <= rows[0]["seconds"] < 3 + HARD_GRACE_SECONDS + 5
    assert time.monotonic() - started < 60
    assert len(list((tmp_path / "r.cache").glob("*.json"))) == 1     # the timed-out point is retried next run
    assert not list(tmp_path.glob("segcost-sweep-*"))                  # the killed worker's export is removed


def _fork_server_of(pid: int) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and b"forkserver" in (entry / "cmdline").read_bytes():
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the sweep did not get there in time"
        time.sleep(0.02)


@pytest.mark.parametrize("moment", ["fork server importing torch", "workers running points"])
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, moment):
    spec = _spec(tmp_path, f'{{ model = "{FACTORY}", width_multipliers = [0.5, 1.0, 1.5, 2.0] }}',
                 '"32x32", "48x48", "64x64", "80x80", "96x96", "112x112"')
    process = _sweep(tmp_path, spec, "--workers", "2", "-q")
    if moment == "fork server importing torch":
        _wait_for(lambda: _fork_server_of(process.pid))
        time.sleep(0.3)
    else:
        _wait_for(lambda: len(list(tmp_path.glob("r.cache/*.json"))) >= 1)
    os.killpg(process.pid, signal.SIGINT)             # what the terminal sends on Ctrl-C: every process
    code, err = _finish(process, 60)
    lines = err.strip().splitlines()
    assert code == 130 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("segcost: interrupted after"), err
    assert len(read_table(tmp_path / "r.csv")) < 24

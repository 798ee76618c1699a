"""Runs fuzz cases in a separate, resource-limited process (see test_fuzz.py).

python -m tests.fuzz.worker SEED START COUNT WORKDIR — prints one JSON line per failure and
a final summary line; a crash of this process (segfault, OOM kill) is itself a failure the
parent reports with the last case index written to WORKDIR/progress.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
from pathlib import Path

import numpy as np

MEMORY_LIMIT_BYTES = 3 * 2**30
SECONDS_PER_CASE = 20
# Which command each case runs, by index: mostly analyze (the cheapest, the most exposed).
COMMANDS = ("analyze", "analyze", "analyze", "verify", "analyze", "check", "analyze", "optimize", "analyze", "verify")


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


def run_case(index: int, data: bytes, workdir: Path) -> dict | None:
    from segcost.cli import main

    model = workdir / "model.onnx"
    model.write_bytes(data)
    command = COMMANDS[index % len(COMMANDS)]
    args = [command, str(model)]
    if command == "optimize":
        args += ["-o", str(workdir / "out.onnx")]
    elif command == "check":
        args += ["--max-gmacs", "1000"]
    before = sorted(os.listdir(workdir))
    stderr, stdout = io.StringIO(), io.StringIO()
    signal.alarm(SECONDS_PER_CASE)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                main(args)
                code = 0
            except SystemExit as exit_:
                code = exit_.code
    except CaseTimeout:
        return {"index": index, "command": command, "problem": f"took over {SECONDS_PER_CASE}s"}
    finally:
        signal.alarm(0)
    message = stderr.getvalue().strip()
    after = sorted(name for name in os.listdir(workdir) if name not in ("out.onnx",))
    problem = None
    if code not in (0, 1, 2):
        problem = f"exit code {code}"
    elif "Traceback" in message or "SEGCOST_DEBUG" in message:
        problem = "unexpected exception: " + message.splitlines()[-1][:300]
    elif code == 2 and len([line for line in message.splitlines() if line.startswith("segcost: error")]) != 1:
        problem = f"exit 2 without one error line: {message[:300]!r}"
    elif after != before:
        problem = f"files appeared in the model's folder: {sorted(set(after) - set(before))}"
    elif _leaks_canary(stdout.getvalue(), workdir / "out.onnx"):
        problem = "the working directory's data.bin was read (its values appear in the output)"
    return None if problem is None else {"index": index, "command": command, "problem": problem, "code": code}


def _leaks_canary(stdout: str, output: Path) -> bool:
    from tests.fuzz.mutations import CANARY

    distinctive = str(int(np.frombuffer(CANARY, np.int64).max()))
    return distinctive in stdout or (output.exists() and CANARY in output.read_bytes())


def main() -> None:
    seed, start, count, workdir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]).resolve()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    signal.signal(signal.SIGALRM, _alarm)
    from tests.fuzz.mutations import CANARY, CANARY_NAME, mutate, seed_models

    # Run from a working directory holding the file mutated external data names: onnx and
    # onnxruntime would resolve a relative location there; segcost must never read it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    cwd = workdir / "cwd"
    cwd.mkdir(exist_ok=True)
    (cwd / CANARY_NAME).write_bytes(CANARY)
    os.chdir(cwd)

    seeds = seed_models()
    cases = workdir / "cases"
    cases.mkdir(exist_ok=True)
    failures = 0
    for index in range(start, start + count):
        (workdir / "progress").write_text(str(index))
        mutator, data = mutate(seeds[index % len(seeds)], seed, index)
        failure = run_case(index, data, cases)
        for leftover in cases.iterdir():
            leftover.unlink()
        if failure is not None:
            failures += 1
            failure["mutator"] = mutator
            print(json.dumps(failure), flush=True)
    print(json.dumps({"done": count, "failures": failures}), flush=True)


if __name__ == "__main__":
    main()

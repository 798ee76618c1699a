"""Hostile input: ≥ 1000 seeded mutations of real models through analyze, verify, optimize, check.

Every case must end in a result or exit 2 with one line — never a traceback, a hang (20 s
per case) or a memory blow-up (3 GiB address-space limit), and nothing may be written
beside the model but the requested output. Cases run in worker processes so a crash of
the interpreter is caught and named by its case index; reproduce one with
`python -m tests.fuzz.worker SEED INDEX 1 DIR`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SEED = int(os.environ.get("SEGCOST_FUZZ_SEED", "20261126"))
CASES = int(os.environ.get("SEGCOST_FUZZ_CASES", "1040"))
WORKERS = 2
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.fuzz
def test_mutated_models_never_crash(tmp_path):
    per_worker = CASES // WORKERS
    processes = []
    for worker in range(WORKERS):
        workdir = tmp_path / f"worker{worker}"
        workdir.mkdir()
        processes.append((workdir, subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker", str(SEED), str(worker * per_worker), str(per_worker),
             str(workdir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    failures, done = [], 0
    for workdir, process in processes:
        stdout, stderr = process.communicate(timeout=1800)
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines or "done" not in lines[-1]:
            last = (workdir / "progress").read_text() if (workdir / "progress").exists() else "?"
            failures.append({"index": last, "problem": f"worker died (exit {process.returncode}) at case {last}: "
                                                       f"{stderr.strip().splitlines()[-1:] }"})
            continue
        done += lines[-1]["done"]
        failures += lines[:-1]
    assert done == per_worker * WORKERS >= 1000
    assert failures == [], "\n".join(json.dumps(failure) for failure in failures[:20])

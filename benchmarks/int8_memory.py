"""Peak memory of `segcost optimize --int8`: calibration must not grow with --calib-size.

Runs the command in a child process (so its peak is measured alone) and prints the child's
peak resident set size (getrusage RUSAGE_CHILDREN ru_maxrss, KiB on Linux), wall and CPU
time, for each --calib-size given. Streaming calibration keeps one sample's intermediates
at a time, so the peak should be flat in --calib-size.

    python benchmarks/int8_memory.py MODEL.onnx [--calib-size 2 16] [--limit-gib 6] [-- extra optimize args]

MODEL: e.g. HF UperNet-ConvNeXt exported at 576x576 with random weights (transformers config
objects, no download). --limit-gib sets an address-space limit on the child (prlimit), so a
regression fails instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(model: str, calib_size: int, limit_gib: float | None, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="segcost-int8-mem-") as directory:
        command = [sys.executable, "-m", "segcost", "optimize", model, "--int8", "--calib-size", str(calib_size),
                   "--eval-size", "1", "--no-check", "-o", str(Path(directory) / "out.int8.onnx"), *extra]
        if limit_gib:
            command = ["prlimit", f"--as={int(limit_gib * (1 << 30))}", *command]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"calib_size": calib_size, "exit": completed.returncode, "peak_rss_gib": after.ru_maxrss / (1 << 20),
            "wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "stderr": completed.stderr.strip().splitlines()[-1:] if completed.returncode else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--calib-size", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--limit-gib", type=float, default=None)
    args, extra = parser.parse_known_args()
    extra = [item for item in extra if item != "--"]
    print(f"model {args.model}; one child process per run (ru_maxrss of the largest child so far: run the "
          "smallest --calib-size first)")
    for size in sorted(args.calib_size):
        result = run_once(args.model, size, args.limit_gib, extra)
        status = "ok" if result["exit"] == 0 else f"exit {result['exit']} {result['stderr']}"
        print(f"--calib-size {size:3d}: peak RSS {result['peak_rss_gib']:.2f} GiB, wall {result['wall_s']:.0f} s, "
              f"CPU {result['cpu_s']:.0f} s, {status}", flush=True)


if __name__ == "__main__":
    main()

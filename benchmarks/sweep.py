"""Sweep throughput on this machine: points per minute, local process pool vs Ray, side by side.

Two workloads, each run with both backends and the same number of workers (no cache):

* `zoo` — 20 points of the zoo's Lite models (UNetLite, DeepLabV3Lite, FPNLite at widths 1.0
  and 1.4, RegNetX400MF+FPNLite) at 768x384 and 512x512, 19 classes, costed on tda4vm and
  am62a: export-bound (seconds per export), the realistic case;
* `tiny` — 48 points of a three-conv network at 32-80 px: overhead-bound, where task
  dispatch and worker start-up show.

Every measurement runs in a fresh process, as `segcost sweep` would: end-to-end rates include
starting the backend (the local pool's fork server importing torch once; Ray's workers
importing torch) and, for Ray, starting the local Ray instance, which is also timed on its
own ("ray init"). "task pts/min" is points per minute of summed worker time (the cost of
one point on one worker, whatever the scheduling). The result tables of both backends are
compared, ignoring timing columns, as a sanity check.

    python benchmarks/sweep.py [--workers 2] [--workload zoo|tiny|both]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segcost.sweep import NONDETERMINISTIC_COLUMNS, SweepOptions, parse_spec, read_table, run_sweep  # noqa: E402

WORKLOADS = {
    "zoo": {"measures": ["macs", "params", "latency", "findings"], "axes": {
        "models": ["MobileNetV2+UNetLite", "MobileNetV2S16+DeepLabV3Lite", "MobileNetV2+FPNLite",
                   "RegNetX400MF+FPNLite"],
        "input_sizes": ["768x384", "512x512"], "width_multipliers": [1.0, 1.4], "num_classes": [19],
        "targets": ["tda4vm", "am62a"]}},
    "tiny": {"measures": ["macs", "params", "latency", "findings"], "axes": {
        "models": [{"model": "benchmarks.sweep:tiny_network", "width_multipliers": [0.5, 1.0, 2.0]}],
        "input_sizes": ["32x32", "48x48", "64x64", "80x80"], "num_classes": [4, 8],
        "targets": ["tda4vm", "am62a"]}},
}


def tiny_network(num_classes: int = 4, width_mult: float = 1.0):
    """Conv 3x3/2 + BN + ReLU, depthwise 3x3, 1x1 head, x2 upsample."""
    from torch import nn

    channels = max(8, int(16 * width_mult))
    return nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, 1, 1, groups=channels), nn.ReLU(),
                         nn.Conv2d(channels, num_classes, 1), nn.Upsample(scale_factor=2)).eval()


def measure(workload: str, backend: str, workers: int) -> dict:
    """One cold sweep of `workload` on `backend` (run in a child process by `main`)."""
    spec = parse_spec(WORKLOADS[workload], f"<{workload}>", REPO)
    ray_init = 0.0
    if backend == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="error")
        ray_init = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="segcost-bench-sweep-") as directory:
        try:
            started = time.perf_counter()
            summary = run_sweep(spec, Path(directory) / "results.csv",
                                SweepOptions(backend=backend, workers=workers, use_cache=False))
            sweep_seconds = time.perf_counter() - started
        finally:
            if backend == "ray":
                import ray

                ray.shutdown()
        rows = read_table(Path(directory) / "results.csv")
    task_seconds = sum(row["seconds"] or 0.0 for row in rows)
    return {"points": summary.computed, "errors": summary.errors, "ray_init": ray_init, "sweep": sweep_seconds,
            "end_to_end": 60 * summary.computed / (ray_init + sweep_seconds),
            "without_init": 60 * summary.computed / sweep_seconds,
            "per_task": 60 * summary.computed / task_seconds if task_seconds else 0.0,
            "table": [{key: value for key, value in row.items() if key not in NONDETERMINISTIC_COLUMNS}
                      for row in rows]}


def measure_in_child(workload: str, backend: str, workers: int) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--measure", workload, backend, "--workers", str(workers)],
                               cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{workload}/{backend} failed: {completed.stderr.strip()[-500:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workload", choices=("zoo", "tiny", "both"), default="both")
    parser.add_argument("--measure", nargs=2, metavar=("WORKLOAD", "BACKEND"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    os.chdir(REPO)  # the tiny workload's factory is imported as benchmarks.sweep:tiny_network
    if arguments.measure:
        print(json.dumps(measure(*arguments.measure, arguments.workers)))
        return
    workloads = list(WORKLOADS) if arguments.workload == "both" else [arguments.workload]
    load_before = os.getloadavg()[0]
    table = []
    for workload in workloads:
        local, ray = (measure_in_child(workload, backend, arguments.workers) for backend in ("local", "ray"))
        table.append([workload, local["points"], f"{local['end_to_end']:.1f}", f"{ray['end_to_end']:.1f}",
                      f"{ray['without_init']:.1f}", f"{ray['ray_init']:.1f}", f"{local['sweep']:.1f}",
                      f"{ray['sweep']:.1f}", f"{local['per_task']:.1f}", f"{ray['per_task']:.1f}",
                      "yes" if local["table"] == ray["table"] else "NO"])
    print(f"workers: {arguments.workers} on {os.cpu_count()} CPUs; load average before: {load_before:.2f}, "
          f"after: {os.getloadavg()[0]:.2f}")
    print(tabulate(table, headers=["workload", "points", "local pts/min", "ray pts/min", "ray w/o init", "ray init s",
                                   "local s", "ray s", "local task pts/min", "ray task pts/min", "same table"]))


if __name__ == "__main__":
    main()

"""Time and peak memory of `segcost analyze` / `optimize` on synthetic graphs of 10 to 100k nodes.

Each measurement is a fresh process (`python -m segcost ...`), timed by wall clock and by its
own CPU time (user + system), with its own peak RSS, both from the kernel (wait4 of the child);
on a loaded machine compare CPU time. Children keep Python's bytecode cache (in a temporary
PYTHONPYCACHEPREFIX) even when PYTHONDONTWRITEBYTECODE is set, as an installed segcost does.
`analyze` is measured twice: JSON to a file (`--format json -o`) and the default table to
stdout (discarded). Graphs come from segcost.samples.scale: `deep` (a chain of Conv/Relu/Add
residual blocks) and `wide` (parallel Conv/Relu branches summed in a tree). Growth (of the
JSON run's CPU time): a least-squares line time = start-up + per-node cost × nodes
over all sizes, and the exponent k of time − start-up ∝ nodes^k over the sizes ≥ 1k
(1.0 = linear; the raw exponent of time itself is printed too, but a fixed 0.35 s start-up
flattens it below 10k nodes).

    python benchmarks/scale.py [--max-nodes 100000] [--optimize-max 30000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

SIZES = (10, 100, 1_000, 10_000, 30_000, 100_000)


CHILD_ENV: dict[str, str] = {}   # set by main(): bytecode cache on, in a temporary folder


def run(arguments: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one segcost process; its report goes to /dev/null."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "segcost", *arguments], stdout=subprocess.DEVNULL,
                                   stderr=errors, env=CHILD_ENV or None)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not a running maximum
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"segcost {' '.join(arguments)} failed: {message}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_model(kind: str, size: int, path: Path) -> None:
    """Build and save a scale graph in a child process.

    A child's peak RSS starts at its parent's size when it is spawned (Linux keeps the
    high-water mark across exec), so this process never holds a large model itself.
    """
    code = ("import sys, onnx; from segcost.samples import scale; "
            "onnx.save_model(getattr(scale, sys.argv[1])(int(sys.argv[2])), sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, kind, str(size), str(path)], check=True)


def slope(points: list[tuple[int, float]], offset: float = 0.0) -> float:
    """Least-squares slope of log(time − offset) against log(nodes) over the sizes ≥ 1k."""
    points = [(math.log(n), math.log(t - offset)) for n, t in points if n >= 1000 and t > offset]
    if len(points) < 2:
        return float("nan")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def linear_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(start-up seconds, seconds per node) of the least-squares line through (nodes, time)."""
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    per_node = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum((n - mean_n) ** 2 for n, _ in points)
    return mean_t - per_node * mean_n, per_node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-nodes", type=int, default=100_000)
    parser.add_argument("--optimize-max", type=int, default=30_000, help="largest graph for optimize")
    args = parser.parse_args()
    rows, analyze_points = [], {"deep": [], "wide": []}
    with tempfile.TemporaryDirectory() as directory:
        CHILD_ENV.update(os.environ, PYTHONPYCACHEPREFIX=str(Path(directory) / "pycache"))
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        run(["analyze", "--format", "json", "-o", str(Path(directory) / "warm.json")])   # fills the bytecode cache
        for kind in ("deep", "wide"):
            for size in (size for size in SIZES if size <= args.max_nodes):
                path = Path(directory) / f"{kind}_{size}.onnx"
                write_model(kind, size, path)
                json_seconds, json_cpu, json_mib = run(["analyze", str(path), "--format", "json", "-o",
                                                        str(Path(directory) / "out.json")])
                table_seconds, table_cpu, table_mib = run(["analyze", str(path)])
                analyze_points[kind].append((size, json_cpu))
                optimize = ["", "", ""]
                if size <= args.optimize_max:
                    seconds, cpu, mib = run(["optimize", str(path), "--no-check", "-o",
                                             str(Path(directory) / "o.onnx")])
                    optimize = [f"{seconds:.2f}", f"{cpu:.2f}", f"{mib:.0f}"]
                rows.append([kind, size, f"{json_seconds:.2f}", f"{json_cpu:.2f}", f"{json_mib:.0f}",
                             f"{table_seconds:.2f}", f"{table_cpu:.2f}", f"{table_mib:.0f}", *optimize])
                print(f"{kind} {size}: analyze json {json_seconds:.2f}s ({json_cpu:.2f}s CPU), table "
                      f"{table_seconds:.2f}s ({table_cpu:.2f}s CPU)", file=sys.stderr)
    print(tabulate(rows, headers=["graph", "nodes", "json s", "json CPU s", "json peak MiB", "table s", "table CPU s",
                                  "table peak MiB", "optimize s", "optimize CPU s", "optimize peak MiB"],
                   disable_numparse=True))
    for kind, points in analyze_points.items():
        if len(points) < 2:
            continue
        start_up, per_node = linear_fit(points)
        print(f"{kind}: analyze (json) CPU time = {start_up:.2f} s + {per_node * 1e6:.1f} us x nodes; "
              f"time - start-up grows as nodes^{slope(points, start_up):.2f} "
              f"(raw time: nodes^{slope(points):.2f}), 1k..{args.max_nodes} nodes")


if __name__ == "__main__":
    main()

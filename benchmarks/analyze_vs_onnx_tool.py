"""Benchmark `segcost analyze` against onnx-tool on full-size segmentation models.

What it measures
  For torchvision FCN-ResNet50 and DeepLabV3-ResNet50 (random weights, 21 classes,
  no aux head) exported to ONNX at 1x3x520x1040, it runs each tool as a whole new
  process and records the wall-clock time, so interpreter start-up, imports and
  model loading are included -- the cost a user pays per invocation:
    segcost:   python -m segcost analyze MODEL --format json   (MACs = totals.macs)
    onnx-tool: python -c "onnx_tool.Model(); shape_infer(); profile()" (MACs = graph.macs[0])
  Each tool runs once untimed (warms the page cache), then --runs times, alternating
  which tool goes first; the table shows the median.

How to read the table
  MAC difference %  = (onnx-tool - segcost) / segcost. It is not an error by itself:
                      segcost counts only multiply-accumulates of Conv/Gemm/MatMul-like
                      ops, whereas onnx-tool also counts a bias add per Conv output
                      element and one "MAC" per element of Relu/Add/Resize/pooling.
  speed-up          = onnx-tool seconds / segcost seconds (> 1 means segcost is faster).
  "failed: ..."     = that tool exited non-zero; the last line of its stderr is shown.

Models are cached in --models-dir (default benchmarks/_models/, gitignored) and only
exported (needs torch/torchvision) when missing. --dynamo adds the torch.export-based
exporter's output (weights in an external .onnx.data file, exporter's default opset).

--corpus DIR adds every model listed in DIR/INDEX.txt (tests/corpus/build.py writes it: the
third-party smp / Hugging Face / torchvision / rapidocr models), each at its listed input shape.
Both wall time and the child's own CPU time (user + system, from wait4) are reported; CPU
time is what to compare on a loaded machine. "segcost/onnx-tool" is segcost's CPU time over
onnx-tool's (< 1 means segcost is faster; the goal is <= 0.5). Peak RSS is each child's own
(wait4's ru_maxrss).

Own work: in the same alternating rounds each tool's floor runs too -- the interpreter plus
`import onnx` (numpy, protobuf, ml_dtypes), which both tools need before doing anything, with
that tool's OpenBLAS thread policy. "own CPU s" is the tool's median CPU time minus its floor's,
and "own-work ratio" is segcost's over onnx-tool's: the work each tool itself does on the model
(segcost's includes click and its own imports). On small models the floor (~0.12 s CPU as
shipped) is most of either tool's run, so the whole-process ratio cannot fall far below
floor / onnx-tool's time whatever segcost does; the own-work ratio shows the part it controls.

Bytecode: the children run with Python's bytecode cache on, in a temporary
PYTHONPYCACHEPREFIX, even when the calling environment sets PYTHONDONTWRITEBYTECODE (a
source checkout on PYTHONPATH would otherwise recompile all of segcost, ~60 modules, on
every run while onnx-tool's installed modules load from their .pyc files). The untimed
warm-up run fills the cache for both tools.

Threads: numpy's OpenBLAS starts a thread per core at import, whose start-up spin costs
40-50 ms CPU (a third of a small model's whole run). segcost's command line caps it at one
thread itself (segcost.cli.one_blas_thread); onnx-tool does not. By default each tool runs as
it ships (OPENBLAS_NUM_THREADS is removed from the children's environment); --blas-threads N
sets it to N for both, which compares the tools' own work with that start-up cost equalized.

--scale-nodes N adds segcost's analysis of an N-node synthetic chain (segcost.samples.scale.deep,
Conv/Relu/Add residual blocks; the issue's goal: 100k nodes in <= 2 s and <= 700 MiB).
onnx-tool is not run on it: on 100k nodes it did not finish within 300 s. --start-up adds
`segcost --version` and `segcost analyze --help` (goal: <= 0.15 s each).

Usage (from the repo root):  python benchmarks/analyze_vs_onnx_tool.py --runs 5 [--corpus /path/to/corpus]
                             [--scale-nodes 100000] [--start-up] [--blas-threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import onnx
from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_SHAPE = (1, 3, 520, 1040)
MODEL_BUILDERS = {"fcn": "fcn_resnet50", "deeplabv3": "deeplabv3_resnet50"}

ONNX_TOOL_SNIPPET = (
    "import sys, onnx_tool\n"
    "m = onnx_tool.Model(sys.argv[1])\n"
    "import numpy\n"
    "shapes = {n: numpy.zeros([int(d) for d in s.split('x')], numpy.float32)\n"
    "          for n, s in (a.split('=', 1) for a in sys.argv[2:])}\n"
    "m.graph.shape_infer(shapes or None)\n"
    "m.graph.profile()\n"
    "print(int(round(m.graph.macs[0])))  # macs = [forward, backward]\n"
)


def export_model(name: str, path: Path, dynamo: bool) -> None:
    """Export a torchvision segmentation model whose forward returns out["out"]."""
    import torch
    import torchvision.models.segmentation as seg

    class OutOnly(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["out"]

    builder = getattr(seg, MODEL_BUILDERS[name])
    model = OutOnly(builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)).eval()
    example = (torch.randn(*INPUT_SHAPE),)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(input_names=["input"], output_names=["out"])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy-exporter notice
        if dynamo:
            torch.onnx.export(model, example, str(path), dynamo=True, external_data=True, **names)
        else:
            torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17, **names)


# The floor both tools pay before any work of their own: the interpreter and `import onnx` (which
# imports numpy, protobuf and ml_dtypes), each with its tool's OpenBLAS thread policy (segcost caps
# its own at one thread before numpy loads; onnx-tool does not). It prints 0 so it parses as "MACs".
FLOOR_SNIPPETS = {
    "segcost": "import os; os.environ.setdefault('OPENBLAS_NUM_THREADS', '1'); import onnx; print(0)",
    "onnx-tool": "import onnx; print(0)",
}
TOOLS = ("segcost", "onnx-tool")


def tool_commands(model_path: Path, input_shapes: list[str] = ()) -> dict[str, list[str]]:
    """One command per tool and per tool's floor; `input_shapes` (NAME=1x3xHxW) fix dynamic dims for both tools."""
    shape_args = [arg for spec in input_shapes for arg in ("--input-shape", spec)]
    return {  # same interpreter for both, so start-up cost is identical
        "segcost": [sys.executable, "-m", "segcost", "analyze", str(model_path), "--format", "json", *shape_args],
        "onnx-tool": [sys.executable, "-c", ONNX_TOOL_SNIPPET, str(model_path), *input_shapes],
        **{f"{tool} floor": [sys.executable, "-c", FLOOR_SNIPPETS[tool]] for tool in TOOLS},
    }


def parse_macs(tool: str, stdout: str) -> int:
    if tool == "segcost":
        return int(json.loads(stdout)["totals"]["macs"])
    return int(stdout.strip().splitlines()[-1])


CHILD_ENV: dict[str, str] = {}   # set by main(): bytecode cache on, in a temporary folder

# Peak RSS is read from wait4 (ru_maxrss), and Linux starts a forked child's high-water mark at
# its parent's resident size: children forked by this script (onnx imported, every corpus model
# opened: ~200 MiB) would all report at least that. They are started by this small launcher
# process instead (~10 MiB), which reports each child's times and peak back as one JSON line.
LAUNCHER = r"""
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    request = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(request["command"], stdout=subprocess.DEVNULL if request["discard"] else out,
                                 stderr=err, cwd=request["cwd"], env=request["env"])
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        print(json.dumps([elapsed, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime,
                          usage.ru_maxrss / 1024, out.read().decode(errors="replace"),
                          err.read().decode(errors="replace")]), flush=True)
"""


class Launcher:
    """Runs commands from a small helper process so that each one's peak RSS is its own (see LAUNCHER)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, command: list[str], discard_stdout: bool = False) -> tuple[float, int, float, float, str, str]:
        """(wall s, exit code, CPU s, peak RSS MiB, stdout, stderr) of one run of `command`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"command": command, "discard": discard_stdout, "cwd": str(REPO_ROOT),
                   "env": CHILD_ENV or dict(os.environ)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        elapsed, code, cpu, rss, stdout, stderr = json.loads(self.process.stdout.readline())
        return elapsed, code, cpu, rss, stdout, stderr

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


LAUNCH: list[Launcher] = []   # the one Launcher of this run, started by main()


def run_once(tool: str, command: list[str]) -> tuple[float, float, int, float]:
    """Run one tool process; return (wall seconds, CPU seconds, MACs, peak RSS MiB) or raise RuntimeError.

    CPU seconds are the child's own user + system time (os.wait4), so other load on the
    machine moves them far less than wall time.
    """
    elapsed, returncode, cpu, rss, stdout, stderr = LAUNCH[0].run(command)
    if returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()] or [f"exit {returncode}"]
        raise RuntimeError(lines[-1].strip()[:100])
    try:
        return elapsed, cpu, parse_macs(tool, stdout), rss
    except (ValueError, KeyError, IndexError) as exc:
        raise RuntimeError(f"unparseable output ({type(exc).__name__}: {exc})"[:100]) from exc


def benchmark(model_path: Path, runs: int, input_shapes: list[str] = ()) -> dict[str, dict]:
    """Warm-up once per tool, then `runs` timed runs with alternating tool order."""
    commands = tool_commands(model_path, input_shapes)
    results = {tool: {"times": [], "cpu": [], "rss": [], "macs": None, "error": None} for tool in commands}
    for round_index in range(runs + 1):  # round 0 is the untimed warm-up
        order = list(commands) if round_index % 2 == 0 else list(reversed(commands))
        for tool in order:
            result = results[tool]
            if result["error"]:
                continue
            try:
                elapsed, cpu, macs, rss = run_once(tool, commands[tool])
            except RuntimeError as exc:
                result["error"] = f"failed: {exc}"
                continue
            if result["macs"] is not None and macs != result["macs"]:
                result["error"] = f"failed: MACs changed between runs ({result['macs']} vs {macs})"
            result["macs"] = macs
            if round_index > 0:
                result["times"].append(elapsed)
                result["cpu"].append(cpu)
                result["rss"].append(rss)
    return results


def table_row(label: str, results: dict[str, dict]) -> list[str]:
    seg, ot = results["segcost"], results["onnx-tool"]
    seg_time = statistics.median(seg["times"]) if not seg["error"] else None
    ot_time = statistics.median(ot["times"]) if not ot["error"] else None
    diff = (f"{(ot['macs'] - seg['macs']) / seg['macs'] * 100:+.3f}"
            if seg_time is not None and ot_time is not None and seg["macs"] else "-")
    seg_cpu = statistics.median(seg["cpu"]) if seg_time is not None else None
    ot_cpu = statistics.median(ot["cpu"]) if ot_time is not None else None
    ratio = f"{seg_cpu / ot_cpu:.2f}" if seg_cpu and ot_cpu else "-"
    seg_own, ot_own = own_cpu(results, "segcost"), own_cpu(results, "onnx-tool")
    # within noise of the floor (own time <= 0) there is no ratio to show
    own_ratio = f"{seg_own / ot_own:.2f}" if seg_own is not None and seg_own > 0 and ot_own and ot_own > 0 else "-"
    return [
        label,
        seg["error"] or f"{seg['macs']:,}",
        ot["error"] or f"{ot['macs']:,}",
        diff,
        f"{seg_time:.3f}" if seg_time is not None else "-",
        f"{ot_time:.3f}" if ot_time is not None else "-",
        f"{seg_cpu:.3f}" if seg_cpu is not None else "-",
        f"{ot_cpu:.3f}" if ot_cpu is not None else "-",
        f"{max(seg['rss']):.0f}" if seg_time is not None else "-",
        f"{max(ot['rss']):.0f}" if ot_time is not None else "-",
        ratio,
        f"{seg_own:.3f}" if seg_own is not None else "-",
        f"{ot_own:.3f}" if ot_own is not None else "-",
        own_ratio,
    ]


def own_cpu(results: dict[str, dict], tool: str) -> float | None:
    """Median CPU s of `tool`'s runs minus its floor's (interpreter + `import onnx`); None if either failed."""
    run, floor = results[tool], results[f"{tool} floor"]
    if run["error"] or floor["error"] or not run["cpu"]:
        return None
    return statistics.median(run["cpu"]) - statistics.median(floor["cpu"])


def corpus_entries(folder: Path) -> list[tuple[str, Path, list[str]]]:
    """(name, model path, input-shape specs) for each row of the corpus's INDEX.txt."""
    entries = []
    for line in (folder / "INDEX.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shapes = line.split("\t")[:2]
        path = folder / f"{name}.onnx"
        inputs = [value.name for value in onnx.load(path, load_external_data=False).graph.input]
        specs = [spec for spec in shapes.split(",") if spec]
        if len(inputs) == 1 and len(specs) == 1 and not specs[0].startswith(inputs[0] + "="):
            specs = [f"{inputs[0]}={specs[0].split('=', 1)[1]}"]  # the index names every input "input"
        entries.append((name, path, specs))
    return entries


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool and model (median shown)")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "benchmarks" / "_models",
                        help="cache of exported ONNX files (reused when present)")
    parser.add_argument("--dynamo", action="store_true",
                        help="also benchmark the dynamo exporter's output (external data)")
    parser.add_argument("--models", default="fcn,deeplabv3",
                        help=f"comma-separated subset of {','.join(MODEL_BUILDERS)}")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="also benchmark every model of this corpus folder (its INDEX.txt)")
    parser.add_argument("--scale-nodes", type=int, default=0, metavar="N",
                        help="also time segcost alone on an N-node synthetic chain (e.g. 100000)")
    parser.add_argument("--blas-threads", type=int, default=None, metavar="N",
                        help="set OPENBLAS_NUM_THREADS=N for both tools (default: each tool as it ships)")
    parser.add_argument("--start-up", action="store_true",
                        help="also time `segcost --version` and `segcost analyze --help`")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else []
    if unknown := [n for n in names if n not in MODEL_BUILDERS]:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODEL_BUILDERS)}")

    with tempfile.TemporaryDirectory(prefix="segcost-bench-pyc-") as pycache:
        CHILD_ENV.update(os.environ, PYTHONPYCACHEPREFIX=pycache)
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        CHILD_ENV.pop("OPENBLAS_NUM_THREADS", None)
        if args.blas_threads is not None:
            CHILD_ENV["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
        LAUNCH.append(Launcher())
        try:
            run_all(args, names)
        finally:
            LAUNCH.pop().close()


def run_all(args: argparse.Namespace, names: list[str]) -> None:
    """Time every model the arguments ask for and print the tables."""
    variants = ["legacy"] + (["dynamo"] if args.dynamo else [])
    print(f"CPU: {cpu_model()} ({platform.machine()})")
    print("python " + platform.python_version() + ", " + ", ".join(
        f"{pkg} {package_version(pkg)}" for pkg in ("onnx", "onnxruntime", "onnx-tool", "segcost")))
    print(f"torchvision models at {'x'.join(map(str, INPUT_SHAPE))}; whole process, wall clock and the "
          f"child's CPU time, median of {args.runs} run(s) after 1 warm-up, alternating order; OpenBLAS "
          + (f"threads {args.blas_threads} for both tools\n" if args.blas_threads is not None
             else "threads as each tool ships (segcost caps its own at 1)\n"))

    rows = []
    for name in names:
        for variant in variants:
            label = f"{name} ({variant})"
            path = args.models_dir / f"{name}_{variant}.onnx"
            if not path.exists():
                print(f"exporting {path} ...", file=sys.stderr, flush=True)
                try:
                    export_model(name, path, dynamo=variant == "dynamo")
                except Exception as exc:  # keep benchmarking the other models
                    message = f"failed: export: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:80]}"
                    rows.append([label, message, message, *["-"] * 10])
                    continue
            print(f"timing {label} ...", file=sys.stderr, flush=True)
            rows.append(table_row(label, benchmark(path, args.runs)))
    for name, path, shapes in corpus_entries(args.corpus) if args.corpus else []:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        rows.append(table_row(name, benchmark(path, args.runs, shapes)))

    headers = ["model", "segcost MACs", "onnx-tool MACs", "MAC difference %", "segcost wall s",
               "onnx-tool wall s", "segcost CPU s", "onnx-tool CPU s", "segcost MiB", "onnx-tool MiB",
               "segcost/onnx-tool (CPU)", "segcost own CPU s", "onnx-tool own CPU s", "own-work ratio"]
    print(tabulate(rows, headers=headers, disable_numparse=True, colalign=("left",) + ("right",) * 13))
    for column, what in ((10, "CPU time"), (13, "own-work CPU time (minus each tool's floor)")):
        ratios = [float(row[column]) for row in rows if row[column] != "-"]
        if ratios:
            reached = sum(ratio <= 0.5 for ratio in ratios)
            print(f"\nsegcost/onnx-tool {what}: median {statistics.median(ratios):.2f}, range "
                  f"{min(ratios):.2f}-{max(ratios):.2f}, <= 0.5 on {reached} of {len(ratios)} models")
    solo_rows = []
    if args.start_up:
        for label, argv in (("segcost --version", ["--version"]), ("segcost analyze --help", ["analyze", "--help"])):
            print(f"timing {label} ...", file=sys.stderr, flush=True)
            solo_rows.append([label, *solo_timing([sys.executable, "-m", "segcost", *argv], args.runs)])
    if args.scale_nodes > 0:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"deep_{args.scale_nodes}.onnx"
            code = ("import sys, onnx; from segcost.samples.scale import deep; "
                    "onnx.save_model(deep(int(sys.argv[1])), sys.argv[2])")
            subprocess.run([sys.executable, "-c", code, str(args.scale_nodes), str(path)], check=True, cwd=REPO_ROOT)
            label = f"analyze {args.scale_nodes:,}-node chain (json to a file)"
            print(f"timing {label} ...", file=sys.stderr, flush=True)
            command = [sys.executable, "-m", "segcost", "analyze", str(path), "--format", "json",
                       "-o", str(Path(directory) / "out.json")]
            solo_rows.append([label, *solo_timing(command, args.runs)])
    if solo_rows:
        print()
        print(tabulate(solo_rows, headers=["segcost alone", "wall s", "CPU s", "peak MiB"], disable_numparse=True,
                       colalign=("left", "right", "right", "right")))


def solo_timing(command: list[str], runs: int) -> list[str]:
    """[median wall s, median CPU s, peak RSS MiB] of `runs` runs of `command` after one warm-up."""
    samples = []
    for round_index in range(runs + 1):
        elapsed, code, cpu, rss, _, stderr = LAUNCH[0].run(command, discard_stdout=True)
        if code != 0:
            return [f"failed: {stderr.strip()[-100:]}", "-", "-"]
        if round_index > 0:
            samples.append((elapsed, cpu, rss))
    return [f"{statistics.median(wall for wall, _, _ in samples):.3f}",
            f"{statistics.median(cpu for _, cpu, _ in samples):.3f}",
            f"{max(rss for _, _, rss in samples):.0f}"]


if __name__ == "__main__":
    main()

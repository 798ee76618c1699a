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

Usage (from the repo root):  python benchmarks/analyze_vs_onnx_tool.py --runs 5
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_SHAPE = (1, 3, 520, 1040)
MODEL_BUILDERS = {"fcn": "fcn_resnet50", "deeplabv3": "deeplabv3_resnet50"}

ONNX_TOOL_SNIPPET = (
    "import sys, onnx_tool\n"
    "m = onnx_tool.Model(sys.argv[1])\n"
    "m.graph.shape_infer()\n"
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


def tool_commands(model_path: Path) -> dict[str, list[str]]:
    return {  # same interpreter for both, so start-up cost is identical
        "segcost": [sys.executable, "-m", "segcost", "analyze", str(model_path), "--format", "json"],
        "onnx-tool": [sys.executable, "-c", ONNX_TOOL_SNIPPET, str(model_path)],
    }


def parse_macs(tool: str, stdout: str) -> int:
    if tool == "segcost":
        return int(json.loads(stdout)["totals"]["macs"])
    return int(stdout.strip().splitlines()[-1])


def run_once(tool: str, command: list[str]) -> tuple[float, int]:
    """Run one tool process; return (wall seconds, MACs) or raise RuntimeError."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or [f"exit {proc.returncode}"]
        raise RuntimeError(lines[-1].strip()[:100])
    try:
        return elapsed, parse_macs(tool, proc.stdout)
    except (ValueError, KeyError, IndexError) as exc:
        raise RuntimeError(f"unparseable output ({type(exc).__name__}: {exc})"[:100]) from exc


def benchmark(model_path: Path, runs: int) -> dict[str, dict]:
    """Warm-up once per tool, then `runs` timed runs with alternating tool order."""
    commands = tool_commands(model_path)
    results = {tool: {"times": [], "macs": None, "error": None} for tool in commands}
    for round_index in range(runs + 1):  # round 0 is the untimed warm-up
        order = list(commands) if round_index % 2 == 0 else list(reversed(commands))
        for tool in order:
            result = results[tool]
            if result["error"]:
                continue
            try:
                elapsed, macs = run_once(tool, commands[tool])
            except RuntimeError as exc:
                result["error"] = f"failed: {exc}"
                continue
            if result["macs"] is not None and macs != result["macs"]:
                result["error"] = f"failed: MACs changed between runs ({result['macs']} vs {macs})"
            result["macs"] = macs
            if round_index > 0:
                result["times"].append(elapsed)
    return results


def table_row(label: str, results: dict[str, dict]) -> list[str]:
    seg, ot = results["segcost"], results["onnx-tool"]
    seg_time = statistics.median(seg["times"]) if not seg["error"] else None
    ot_time = statistics.median(ot["times"]) if not ot["error"] else None
    diff = (f"{(ot['macs'] - seg['macs']) / seg['macs'] * 100:+.3f}"
            if seg_time is not None and ot_time is not None and seg["macs"] else "-")
    speedup = f"{ot_time / seg_time:.2f}x" if seg_time and ot_time else "-"
    return [
        label,
        seg["error"] or f"{seg['macs']:,}",
        ot["error"] or f"{ot['macs']:,}",
        diff,
        f"{seg_time:.3f}" if seg_time is not None else "-",
        f"{ot_time:.3f}" if ot_time is not None else "-",
        speedup,
    ]


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
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if unknown := [n for n in names if n not in MODEL_BUILDERS]:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODEL_BUILDERS)}")

    variants = ["legacy"] + (["dynamo"] if args.dynamo else [])
    print(f"CPU: {cpu_model()} ({platform.machine()})")
    print("python " + platform.python_version() + ", " + ", ".join(
        f"{pkg} {package_version(pkg)}" for pkg in ("onnx", "onnxruntime", "onnx-tool", "segcost")))
    print(f"input {'x'.join(map(str, INPUT_SHAPE))}; wall-clock per process, median of {args.runs} "
          f"run(s) after 1 warm-up, alternating order\n")

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
                    rows.append([label, message, message, "-", "-", "-", "-"])
                    continue
            print(f"timing {label} ...", file=sys.stderr, flush=True)
            rows.append(table_row(label, benchmark(path, args.runs)))

    headers = ["model", "segcost MACs", "onnx-tool MACs", "MAC difference %",
               "segcost s (median)", "onnx-tool s (median)", "speed-up"]
    print(tabulate(rows, headers=headers, disable_numparse=True, colalign=("left",) + ("right",) * 6))


if __name__ == "__main__":
    main()

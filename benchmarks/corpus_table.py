"""The corpus table (issue 15): truth vs segcost, onnx-tool, fvcore and thop on third-party models.

For every model of tests/corpus (random weights, no downloads; built into the corpus dir if
missing) it prints the reference MAC count and what each tool reports, with the difference.

    truth:     PyTorch forward hooks on Conv/Linear + torch.utils.flop_counter for functional
               matmul/attention (sdpa on the math kernel); for the shipped PP-OCR ONNX files,
               MACs from the shapes onnxruntime produces at run time (tests/corpus/).
    segcost:   segcost.analyze on the ONNX file (must equal truth: the script exits 1 otherwise).
    onnx-tool: onnx_tool.Model(path).graph.shape_infer(inputs); profile(); graph.macs[0] — in a
               subprocess (it parses arguments at import).
    fvcore:    FlopCountAnalysis(module, x).total() on the PyTorch module (its "flops" are MACs).
    thop:      thop.profile(module, (x,))[0] on the PyTorch module.
fvcore and thop are optional imports (`pip install fvcore thop`); a missing one gives "n/a".
They see only the PyTorch module, so the PP-OCR rows are "n/a" for them.

Usage (from the repo root): python benchmarks/corpus_table.py [--corpus-dir DIR] [--format md] [NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))   # the corpus builder lives in tests/, which is not installed

from tests.corpus.build import build, truth_of  # noqa: E402 - needs the sys.path entry above
from tests.corpus.models import BY_NAME, SPECS, Spec  # noqa: E402

ONNX_TOOL_SNIPPET = (
    "import sys, numpy as np, onnx_tool\n"
    "name, shape = sys.argv[2], tuple(int(d) for d in sys.argv[3].split('x'))\n"
    "m = onnx_tool.Model(sys.argv[1])\n"
    "m.graph.shape_infer({name: np.zeros(shape, dtype=np.float32)})\n"
    "m.graph.profile()\n"
    "print(int(round(m.graph.macs[0])))\n"
)


def segcost_macs(path: Path, spec: Spec) -> int:
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load

    return analyze(load(path, {spec.input_name: spec.input_shape})).totals.macs


def onnx_tool_macs(path: Path, spec: Spec) -> int | str:
    shape = "x".join(map(str, spec.input_shape))
    try:
        done = subprocess.run([sys.executable, "-c", ONNX_TOOL_SNIPPET, str(path), spec.input_name, shape],
                              check=False, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timeout"
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return "error: " + (done.stderr.strip().splitlines() or ["?"])[-1][:60]
    return int(lines[-1])


def torch_tool_macs(tool: str, spec: Spec) -> int | str:
    if spec.factory is None:
        return "n/a (ONNX only)"
    try:
        import torch

        if tool == "fvcore":
            from fvcore.nn import FlopCountAnalysis
        else:
            import thop
    except ImportError:
        return "n/a (not installed)"
    module = spec.factory()
    example = torch.randn(*spec.input_shape)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if tool == "fvcore":
                analysis = FlopCountAnalysis(module, example)
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                return int(analysis.total())
            return int(thop.profile(module, inputs=(example,), verbose=False)[0])
    except Exception as error:  # noqa: BLE001 - a tool's failure is a cell of the table
        return f"error: {type(error).__name__}"


def cell(value: int | str, truth: int) -> str:
    if isinstance(value, str):
        return value
    if value == truth:
        return f"{value:,} (exact)"
    return f"{value:,} ({100 * (value - truth) / truth:+.2f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="corpus model names (default: all)")
    parser.add_argument("--corpus-dir", default=os.environ.get("SEGCOST_CORPUS_DIR",
                                                               str(REPO_ROOT / "benchmarks" / "_models" / "corpus")),
                        help="where corpus models are built and cached ($SEGCOST_CORPUS_DIR)")
    parser.add_argument("--format", default="github", help="tabulate format (github, plain, ...)")
    args = parser.parse_args(argv)
    specs = [BY_NAME[name] for name in args.names] if args.names else list(SPECS)
    rows, inexact = [], []
    for spec in specs:
        path = build(spec, args.corpus_dir)
        truth = truth_of(spec, args.corpus_dir)["macs"]
        try:
            ours: int | str = segcost_macs(path, spec)
        except Exception as error:  # noqa: BLE001
            ours = f"error: {error}"[:80]
        if ours != truth:
            inexact.append(spec.name)
        rows.append([spec.name, "x".join(map(str, spec.input_shape)), f"{truth:,}", cell(ours, truth),
                     cell(onnx_tool_macs(path, spec), truth), cell(torch_tool_macs("fvcore", spec), truth),
                     cell(torch_tool_macs("thop", spec), truth)])
        print(f"done {spec.name}", file=sys.stderr, flush=True)
    print(tabulate(rows, headers=["model", "input", "truth MACs", "segcost", "onnx-tool", "fvcore", "thop"],
                   tablefmt=args.format))
    if inexact:
        print(f"segcost is not exact on: {', '.join(inexact)}")
    return 1 if inexact else 0


if __name__ == "__main__":
    raise SystemExit(main())

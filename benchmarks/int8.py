"""fp32 vs int8 in onnxruntime: latency, size, accuracy — side by side in one run.

For each model: segcost's fused fp32 graph and its int8 QDQ graph (`segcost optimize
--int8`, target cpu unless --target says otherwise) run in onnxruntime on this CPU with the
same session options (intra-op threads = --threads, default graph optimizations); latency
is the median of --runs runs after 3 warm-up runs, both models measured in the same
process, alternating. Also: ONNX file size, output argmax agreement, worst/median per-layer
SQNR and, for the model trained on the synthetic data set, mIoU on its held-out split.

Models: the tiny model trained by examples/train_tiny_seg.py (trained first if missing),
the built-in MobileNetV2S16+DeepLabV3Lite, and with the torch extra the zoo's Lite models
at their seed-table resolutions (--zoo, weights random: latency and SQNR only).

    python benchmarks/int8.py [--runs 20] [--zoo] [--target cpu|tda4vm] [--threads 1 --clock cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "benchmarks" / "_models"
ZOO_LITE = ("MobileNetV2S16+DeepLabV3Lite", "MobileNetV2+UNetLite", "MobileNetV2+FPNLite", "RegNetX400MF+FPNLite")


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def latencies(sessions: dict[str, ort.InferenceSession], feeds: dict[str, np.ndarray], runs: int,
              clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per run of each session, alternating between them run by run."""
    for item in sessions.values():
        for _ in range(3):
            item.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, item in sessions.items():
            started = clock()
            item.run(None, feeds)
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(label: str, graph, args, eval_data: str) -> list:
    from segcost.optimize import optimize_model
    from segcost.quant.quantize import QuantizeOptions

    options = QuantizeOptions(calibration="synthetic", calib_size=args.calib_size, target=args.target,
                              per_channel=not args.per_tensor, pow2_scales=args.pow2)
    result = optimize_model(graph, check=False, int8=options, eval_data=eval_data, eval_size=args.eval_size)
    float_model, int8_model = result.quantization.float_model, result.quantization.model
    name = graph.inputs[0]
    shape = tuple(graph.shape(name))
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    medians = latencies({"fp32": session(float_model, args.threads), "int8": session(int8_model, args.threads)},
                        feeds, args.runs, time.thread_time if args.clock == "cpu" else time.perf_counter)
    accuracy = result.accuracy
    sqnr = [layer.sqnr_db for layer in accuracy.layers]
    miou = "" if accuracy.miou_drop is None else \
        f"{accuracy.miou_float:.2f} -> {accuracy.miou_int8:.2f} ({-accuracy.miou_drop:+.2f})"
    return [label, "x".join(map(str, shape[2:])), f"{result.after.totals.macs / 1e9:.3f}",
            f"{medians['fp32'] * 1000:.1f}", f"{medians['int8'] * 1000:.1f}", f"{medians['int8'] / medians['fp32']:.2f}",
            f"{float_model.ByteSize() / 2**20:.2f}", f"{int8_model.ByteSize() / 2**20:.2f}",
            f"{accuracy.outputs[0].argmax_agreement_pct:.2f}" if accuracy.outputs[0].argmax_agreement_pct else "",
            f"{min(sqnr):.1f} / {statistics.median(sqnr):.1f}" if sqnr else "", miou]


def trained_model_path(args) -> Path:
    path = MODELS_DIR / "tiny_seg.onnx"
    if not path.exists():
        MODELS_DIR.mkdir(parents=True, exist_ok=True)
        print(f"training the tiny model (examples/train_tiny_seg.py) into {path} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny_seg.py"), "--out", str(path)],
                       check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: CPU time of the calling thread (needs --threads 1, where onnxruntime runs the "
                             "graph in that thread); unaffected by other load on the machine")
    parser.add_argument("--calib-size", type=int, default=16)
    parser.add_argument("--eval-size", type=int, default=200, help="held-out samples for SQNR/argmax/mIoU")
    parser.add_argument("--target", choices=["cpu", "tda4vm"], default="cpu")
    parser.add_argument("--per-tensor", action="store_true")
    parser.add_argument("--pow2", action="store_true")
    parser.add_argument("--zoo", action="store_true", help="also the zoo's Lite models (needs torch)")
    parser.add_argument("--no-trained", action="store_true", help="skip the trained tiny model")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1")

    from segcost.frontends import onnx as onnx_frontend
    from segcost.samples import deeplabv3lite

    rows = []
    if not args.no_trained:
        rows.append(measure("tiny Lite (trained, synthetic val)", onnx_frontend.load(trained_model_path(args)), args,
                            "synthetic"))
    rows.append(measure("built-in MobileNetV2S16+DeepLabV3Lite", onnx_frontend.load_model(deeplabv3lite()), args,
                        "synthetic"))
    if args.zoo:
        from segcost.zoo.export import export_zoo_model
        from segcost.zoo.registry import get

        with tempfile.TemporaryDirectory() as directory:
            for name in ZOO_LITE:
                model = get(name)
                path = Path(directory) / "model.onnx"
                export_zoo_model(name, path)
                rows.append(measure(f"zoo {name}", onnx_frontend.load(path), args, "synthetic"))
                del model
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"threads {args.threads}; median {args.clock} time of {args.runs} runs; target {args.target}"
          f"{', per-tensor' if args.per_tensor else ', per-channel'}{', pow2 scales' if args.pow2 else ''}")
    print(tabulate(rows, headers=["model", "input", "GMACs", "fp32 ms", "int8 ms", "int8/fp32", "fp32 MiB", "int8 MiB",
                                  "argmax agree %", "SQNR dB min/median", "mIoU fp32 -> int8"],
                   disable_numparse=True))


if __name__ == "__main__":
    main()

"""int8 quantizers side by side in onnxruntime: segcost vs onnxruntime quantize_static vs NNCF.

For each model, one fused fp32 graph (segcost's fusions) and the same calibration samples
(--calib-size from the synthetic train split) go to every quantizer:
* segcost (`segcost optimize --int8`, target cpu unless --target says otherwise);
* onnxruntime `quantize_static` with all its defaults;
* onnxruntime `quantize_static` per-channel, u8 activations / s8 weights;
* NNCF `nncf.quantize` (ONNX backend, defaults; skipped if nncf is not installed).
Every model runs in onnxruntime CPU with the same session options (intra-op threads =
--threads, default graph optimizations); latency is the median of --runs runs after 3
warm-up runs, all sessions in one process, alternating run by run (--clock cpu: process
CPU time, needs --threads 1; unaffected by other load). Also: serialized size, output
SQNR and per-pixel argmax agreement against fp32 on --eval-size held-out samples, and for
the model trained on the synthetic data set, mIoU (percent) on them.

Models: extra ONNX files given as arguments (random weights: speed and agreement only), the
tiny model trained by examples/train_tiny_seg.py (trained first if missing), the built-in
MobileNetV2S16+DeepLabV3Lite, and with the torch extra the zoo's Lite models (--zoo) and
torchvision's FCN-ResNet50 (--fcn HxW: weights=None, 21 classes, no auxiliary head).

    python benchmarks/int8.py [MODEL.onnx ...] [--runs 21] [--threads 1 --clock cpu] [--zoo] [--fcn 256x256]
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


PEERS = ("segcost", "ORT defaults", "ORT per-channel u8/s8", "NNCF")


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self.items = iter(feeds)

    def get_next(self):
        return next(self.items, None)


def ort_quantize(float_model: onnx.ModelProto, feeds: list[dict], per_channel_u8s8: bool) -> onnx.ModelProto:
    """onnxruntime's quantize_static: all defaults, or per-channel with u8 activations / s8 weights."""
    from onnxruntime.quantization import QuantType, quantize_static

    with tempfile.TemporaryDirectory() as directory:
        source, target = Path(directory) / "f.onnx", Path(directory) / "q.onnx"
        onnx.save(float_model, source)
        options = dict(per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8) \
            if per_channel_u8s8 else {}
        quantize_static(source, target, _Reader(feeds), **options)
        return onnx.load(target)


def nncf_quantize(float_model: onnx.ModelProto, feeds: list[dict]) -> onnx.ModelProto | None:
    """nncf.quantize with the ONNX backend and its defaults (None if nncf is not installed)."""
    try:
        import nncf
    except ImportError:
        return None
    return nncf.quantize(float_model, nncf.Dataset(feeds), subset_size=len(feeds))


def agreement(float_session, int8_session, samples) -> dict:
    """Output SQNR (dB), argmax agreement (%) and, with labels, mIoU float/int8 (%) over `samples`."""
    from segcost.quant.accuracy import confusion, miou_from_confusion

    signal = noise = 0.0
    agree = pixels = 0
    conf_f = conf_q = None
    for sample in samples:
        a = float_session.run(None, sample.feeds)[0].astype(np.float64)
        b = int8_session.run(None, sample.feeds)[0].astype(np.float64)
        signal += float(np.sum(a * a))
        noise += float(np.sum((a - b) ** 2))
        agree += int(np.sum(a.argmax(1) == b.argmax(1)))
        pixels += a.shape[0] * a.shape[2] * a.shape[3]
        if sample.label is not None and tuple(sample.label.shape) == tuple(a.shape[2:]):
            classes = a.shape[1]
            if conf_f is None:
                conf_f, conf_q = np.zeros((classes, classes), np.int64), np.zeros((classes, classes), np.int64)
            conf_f += confusion(a.argmax(1)[0], sample.label, classes)
            conf_q += confusion(b.argmax(1)[0], sample.label, classes)
    result = {"sqnr": 10 * np.log10(signal / noise) if noise else float("inf"), "agree": 100.0 * agree / pixels}
    if conf_f is not None:
        result["miou"] = (miou_from_confusion(conf_f), miou_from_confusion(conf_q))
    return result


def measure(label: str, graph, args, eval_data: str, trained: bool = False) -> list[list]:
    """One row per quantizer for this model: same fused float model, same calibration samples.

    mIoU only for the `trained` model: a random-weight model's classes are not the data set's.
    """
    from segcost.ir.onnx_io import to_model
    from segcost.pipeline import optimize_model
    from segcost.quant.calibration import open_source
    from segcost.quant.quantize import QuantizeOptions, single_image_input

    options = QuantizeOptions(calibration="synthetic", calib_size=args.calib_size, target=args.target,
                              per_channel=not args.per_tensor, pow2_scales=args.pow2)
    result = optimize_model(graph, check=False, int8=options, eval_data=eval_data, eval_size=1)
    # The fused float model as every quantizer gets it (result.quantization.float_model is the one
    # segcost quantized: after its cross-layer equalization, which the peers must not be handed).
    float_model = to_model(result.graph)
    calibration = [sample.feeds for sample in result.quantization.source]
    name, shape = single_image_input(result.graph)
    models = {"segcost": result.quantization.model}
    if not args.segcost_only:
        models["ORT defaults"] = ort_quantize(float_model, calibration, False)
        models["ORT per-channel u8/s8"] = ort_quantize(float_model, calibration, True)
        quantized = nncf_quantize(float_model, calibration)
        if quantized is not None:
            models["NNCF"] = quantized
    sessions = {"fp32": session(float_model, args.threads)}
    sessions.update({peer: session(model, args.threads) for peer, model in models.items()})
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    medians = latencies(sessions, feeds, args.runs, time.process_time if args.clock == "cpu" else time.perf_counter)
    samples = list(open_source(eval_data, name, shape, args.eval_size if trained else args.eval_size_random,
                               split="val"))
    if not trained:
        for sample in samples:
            sample.label = None
    rows = []
    for peer, model in models.items():
        quality = agreement(sessions["fp32"], sessions[peer], samples)
        miou = ""
        if "miou" in quality:
            before, after = quality["miou"]
            miou = f"{before:.2f} -> {after:.2f} ({after - before:+.2f})"
        rows.append([label, "x".join(map(str, shape[2:])), peer, f"{medians['fp32'] * 1000:.1f}",
                     f"{medians[peer] * 1000:.1f}", f"{medians[peer] / medians['fp32']:.2f}",
                     f"{float_model.ByteSize() / 2**20:.2f}", f"{model.ByteSize() / 2**20:.2f}",
                     f"{quality['sqnr']:.1f}", f"{quality['agree']:.2f}", miou])
    return rows


def fcn_resnet50(size: str):
    """torchvision FCN-ResNet50 (weights=None, weights_backbone=None, 21 classes, no aux head) at HxW, in the IR."""
    import torch
    import torchvision

    from segcost.frontends import onnx as onnx_frontend
    from segcost.frontends.torch import export

    height, width = (int(part) for part in size.lower().split("x"))
    torch.manual_seed(0)   # the same random weights in every run
    module = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                          aux_loss=False)
    with tempfile.TemporaryDirectory() as directory:
        path = export(module, (1, 3, height, width), Path(directory) / "fcn_resnet50.onnx")
        return onnx_frontend.load_model(onnx.load(path))


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
    parser.add_argument("--eval-size", type=int, default=200,
                        help="held-out samples for SQNR/argmax/mIoU of the trained model")
    parser.add_argument("--eval-size-random", type=int, default=16,
                        help="held-out samples for SQNR/argmax of the random-weight models")
    parser.add_argument("--target", choices=["cpu", "tda4vm"], default="cpu")
    parser.add_argument("--per-tensor", action="store_true")
    parser.add_argument("--pow2", action="store_true")
    parser.add_argument("--zoo", action="store_true", help="also the zoo's Lite models (needs torch)")
    parser.add_argument("--fcn", metavar="HxW", help="also torchvision FCN-ResNet50 (random weights) at this size")
    parser.add_argument("--no-trained", action="store_true", help="skip the trained tiny model")
    parser.add_argument("--no-builtin", action="store_true", help="skip the built-in DeepLabV3Lite")
    parser.add_argument("--segcost-only", action="store_true", help="no peer quantizers")
    parser.add_argument("models", nargs="*", help="more ONNX models (e.g. the corpus cache), random weights")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1")

    from segcost.frontends import onnx as onnx_frontend
    from segcost.samples import deeplabv3lite

    rows = []
    for path in args.models:
        rows += measure(Path(path).stem, onnx_frontend.load(path), args, "synthetic")
    if not args.no_trained:
        rows += measure("tiny Lite (trained, synthetic val)", onnx_frontend.load(trained_model_path(args)), args,
                        "synthetic", trained=True)
    if not args.no_builtin:
        rows += measure("built-in MobileNetV2S16+DeepLabV3Lite", onnx_frontend.load_model(deeplabv3lite()), args,
                        "synthetic")
    if args.zoo:
        from segcost.zoo.export import export_zoo_model
        from segcost.zoo.registry import get

        with tempfile.TemporaryDirectory() as directory:
            for name in ZOO_LITE:
                model = get(name)
                path = Path(directory) / "model.onnx"
                export_zoo_model(name, path)
                rows += measure(f"zoo {name}", onnx_frontend.load(path), args, "synthetic")
                del model
    if args.fcn:
        rows += measure("torchvision FCN-ResNet50 (weights=None)", fcn_resnet50(args.fcn), args, "synthetic")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"threads {args.threads}; median {args.clock} time of {args.runs} runs; target {args.target}"
          f"{', per-tensor' if args.per_tensor else ', per-channel'}{', pow2 scales' if args.pow2 else ''}")
    print(tabulate(rows, headers=["model", "input", "quantizer", "fp32 ms", "int8 ms", "int8/fp32", "fp32 MiB",
                                  "int8 MiB", "output SQNR dB", "argmax agree %", "mIoU fp32 -> int8 (%)"],
                   disable_numparse=True))


if __name__ == "__main__":
    main()

"""How well does the `cpu` profile predict onnxruntime on this machine? Calibrate on some models, test on others.

For every model: segcost's fusion pipeline runs (Conv-BN folded, activations marked), the
graph goes to onnxruntime with segcost.targets.measure's session options (CPU provider,
ORT_ENABLE_ALL, --threads intra-op threads, sequential), and each run is timed twice,
alternately: a plain session for wall time and a profiling session for per-node kernel
times; both are medians over --runs runs after 3 warm-up runs. ORT node names are mapped
back to IR layer groups (ORT fuses Conv+Relu, folds residual Adds into NCHWc convs), each
group's measured time being its kernel time plus its share of the between-kernel time.
All models are measured round-robin (run r of every model before run r+1 of any), so that
calibration and evaluation models see the same load from other processes.

Whole-model latency is compared twice: against the median wall time of session.run (the
target), and against the sum of per-node medians plus ORT's time between kernels. On a
shared machine the two differ: a run is slowed wherever one of its ~100 kernels is
pre-empted, which the wall-time median keeps and each node's median removes. The script
prints the load average before and after measuring, so a reader can tell which happened.

Then the cpu profile's parameters are fitted (segcost.targets.calibrate: log-space
Levenberg–Marquardt) on the CALIBRATION models only, and for every model — above all the
EVALUATION models, which the fit never saw — the script prints Spearman's rho between
predicted and measured per-group times and the whole-model latency error. Targets: rho ≥ 0.9
and |latency error| ≤ 15% on each evaluation model. The shipped profiles/cpu.toml is
evaluated the same way (it was calibrated earlier, on the same calibration models).

Models: the built-in MobileNetV2S16+DeepLabV3Lite at several widths and resolutions, and
with the torch extra the zoo's Lite models (random weights; exported once into
benchmarks/_models/cost_model/).

    python benchmarks/cost_model.py [--runs 10] [--threads 2] [--no-zoo] [--write-profile cpu.toml]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import onnxruntime as ort
from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "benchmarks" / "_models" / "cost_model"

# (label, builder keyword arguments) of the built-in DeepLabV3Lite, 19 classes.
BUILTIN = {
    "DeepLabV3Lite w1.0 768x384": dict(width=1.0, height=384, width_px=768),
    "DeepLabV3Lite w0.5 512x512": dict(width=0.5, height=512, width_px=512),
    "DeepLabV3Lite w1.4 512x256": dict(width=1.4, height=256, width_px=512),
    "DeepLabV3Lite w0.75 384x384": dict(width=0.75, height=384, width_px=384),
    # Channels not rounded: 9-, 13-, 35-channel layers and 18-, 54-, 78-, 210-, 318-channel
    # depthwise convs, which onnxruntime runs off its NCHWc path (the unaligned_* parameters).
    "DeepLabV3Lite w0.55 r1 512x256": dict(width=0.55, height=256, width_px=512, channel_divisor=1),
}
# (zoo name, input WxH) exported with torch; sizes keep each run in the 20-200 ms range.
ZOO = {
    "RegNetX800MF+FPNLite": "512x256",
    "MobileNetV2+UNetLite": "512x256",
    "MobileNetV2+FPNLite": "512x256",
    "RegNetX400MF+FPNLite": "384x384",
    "LR-ASPP MobileNetV3-Large": "512x256",
    "ERFNet": "512x256",
    "ResNet50+FCN": "384x192",
    "MobileNetV2+SwiftNet": "512x256",
    "deeplabv3_mnv2": "384x384",
}
# Between them they have every conv kind the cpu profile has a parameter for: depthwise and
# pointwise (DeepLabV3Lite), unaligned channels (the r1 variant), grouped (RegNetX), dense
# k×k and ConvTranspose (ERFNet).
CALIBRATION = ("DeepLabV3Lite w1.0 768x384", "DeepLabV3Lite w0.5 512x512", "DeepLabV3Lite w0.55 r1 512x256",
               "RegNetX800MF+FPNLite 512x256", "ERFNet 512x256")
RHO_TARGET = 0.9
LATENCY_TARGET_PCT = 15.0


def build_models(use_zoo: bool) -> dict:
    """Label → fused IR graph."""
    from segcost.frontends.onnx import load, load_model
    from segcost.pipeline import build_pipeline
    from segcost.samples import deeplabv3lite

    graphs = {}
    for label, options in BUILTIN.items():
        graphs[label] = build_pipeline()(load_model(deeplabv3lite(num_classes=19, **options))).graph
    if not use_zoo:
        return graphs
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: zoo models skipped", file=sys.stderr)
        return graphs
    from segcost.zoo.export import export_zoo_model

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    for name, size in ZOO.items():
        path = MODELS_DIR / f"{name.replace(' ', '_').replace('+', '_')}_{size}.onnx"
        if not path.exists():
            print(f"exporting {name} at {size} ...", file=sys.stderr)
            export_zoo_model(name, path, size, 19)
        graphs[f"{name} {size}"] = build_pipeline()(load(path)).graph
    return graphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per model (median)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--no-zoo", action="store_true", help="only the built-in models (no torch needed)")
    parser.add_argument("--write-profile", metavar="TOML", help="write the profile fitted here")
    parser.add_argument("--save-measurements", metavar="JSON",
                        help="keep the measurements (to refit without re-measuring)")
    parser.add_argument("--load-measurements", metavar="JSON", help="use saved measurements instead of measuring")
    args = parser.parse_args()

    from segcost.fileio.writes import write_atomic
    from segcost.targets.calibrate import CalibrationSample, calibrated_profile_text, fit_profile
    from segcost.targets.cost_model import estimate_prepared, prepare
    from segcost.targets.measure import compare, map_to_layers, measure_many
    from segcost.targets.profile_toml import load_profile, profile_text

    print(f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
          f"session options: segcost.targets.measure.session_options")
    shipped = load_profile("cpu")
    graphs = build_models(not args.no_zoo)
    if args.load_measurements:
        measurements, note = _load_measurements(args.load_measurements)
        graphs = {label: graph for label, graph in graphs.items() if label in measurements}
        print(f"measurements from {args.load_measurements}: {note}")
    else:
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        measurements = measure_many(graphs, runs=args.runs, threads=args.threads,
                                    progress=lambda done, total: print(f"\rround {done}/{total}", end="",
                                                                       file=sys.stderr, flush=True))
        note = (f"measured {len(graphs)} models, {args.runs} runs each after 3 warm-up runs (medians; models "
                f"interleaved run by run), {args.threads} threads, in {time.perf_counter() - started:.0f} s; "
                f"load average "
                f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (this machine has {os.cpu_count()} cores)")
        print("\n" + note)
        if args.save_measurements:
            _save_measurements(args.save_measurements, measurements, note)
    samples = {}
    for label, graph in graphs.items():
        prepared = prepare(graph, None)
        samples[label] = CalibrationSample(label, prepared, map_to_layers(prepared, measurements[label]),
                                           measurements[label])
    calibration = [samples[label] for label in CALIBRATION if label in samples]
    fit = fit_profile(calibration, shipped)
    print(f"\nfit on {len(calibration)} calibration models ({fit.groups} layer groups, {fit.iterations} iterations): "
          f"log error median |e| {fit.median_abs_log_error:.3f}, RMS {fit.rms_log_error:.3f}")
    print(tabulate([[name, f"{value:.4g}" + (" (not exercised)" if name in fit.unconstrained else ""),
                     f"{_value(shipped, name):.4g}"] for name, value in fit.parameters.items()],
                   headers=["parameter", "fitted now", "shipped cpu.toml"]))
    for title, profile in (("profile fitted now", fit.profile), ("shipped profiles/cpu.toml", shipped)):
        rows, misses = [], []
        for label, sample in samples.items():
            comparison = compare(estimate_prepared(sample.prepared, profile), sample.mapping, sample.measurement)
            role = "calibration" if label in CALIBRATION else "EVALUATION"
            ok = comparison.spearman_rho >= RHO_TARGET and abs(comparison.latency_error_pct) <= LATENCY_TARGET_PCT
            if role == "EVALUATION" and not ok:
                misses.append(f"{label}: {_why(comparison)}")
            rows.append([label, role, len(comparison.groups), f"{comparison.spearman_rho:.3f}",
                         f"{comparison.predicted_latency_ms:.1f}", f"{comparison.measured_latency_ms:.1f}",
                         f"{comparison.latency_error_pct:+.1f}%", f"{comparison.robust_latency_ms:.1f}",
                         f"{comparison.robust_error_pct:+.1f}%", "ok" if ok else "MISS"])
        print(f"\n{title}: Spearman rho over layer groups; latency against the median wall time and against "
              f"the sum of per-node medians (targets: rho >= {RHO_TARGET}, |error vs wall| <= "
              f"{LATENCY_TARGET_PCT:.0f}%)")
        print(tabulate(rows, headers=["model", "role", "groups", "rho", "predicted ms", "wall ms", "error",
                                      "node-median ms", "error", "targets"]))
        print("all evaluation models meet both targets" if not misses else
              "targets missed on:\n  " + "\n  ".join(misses))
    if args.write_profile:
        first = calibration[0].measurement
        text = calibrated_profile_text(fit, profile_text("cpu"), [sample.name for sample in calibration], first.runs,
                                       first.threads, first.ort_version, note)
        write_atomic(args.write_profile, text)
        print(f"wrote {args.write_profile}")


def _why(comparison) -> str:
    """What a miss comes from: rho or latency, the wall/node-median gap, the groups that add most error."""
    reasons = []
    if comparison.spearman_rho < RHO_TARGET:
        reasons.append(f"rho {comparison.spearman_rho:.3f}")
    if abs(comparison.latency_error_pct) > LATENCY_TARGET_PCT:
        gap = 100 * (comparison.measured_latency_ms / comparison.robust_latency_ms - 1)
        if abs(gap) > 5:
            reasons.append(f"wall median is {gap:+.0f}% off the per-node medians (load on the machine)")
        worst = sorted(comparison.groups, key=lambda group: -abs(group.predicted_ms - group.measured_ms))[:3]
        reasons.append("largest errors: " + ", ".join(
            f"{group.name} ({group.op_types}) {group.predicted_ms:.2f} vs {group.measured_ms:.2f} ms"
            for group in worst))
    return "; ".join(reasons)


def _save_measurements(path: str, measurements: dict, note: str) -> None:
    import json
    from dataclasses import asdict

    from segcost.fileio.writes import write_atomic

    write_atomic(path, json.dumps({"note": note, "models": {label: asdict(measurement)
                                                            for label, measurement in measurements.items()}}))


def _load_measurements(path: str) -> tuple[dict, str]:
    import json

    from segcost.targets.measure import Measurement, NodeTime

    document = json.loads(Path(path).read_text())
    measurements = {}
    for label, fields in document["models"].items():
        fields["node_times"] = [NodeTime(**node) for node in fields["node_times"]]
        measurements[label] = Measurement(**fields)
    return measurements, document["note"]


def _value(profile, name: str) -> float:
    from segcost.targets.calibrate import get_parameter

    return get_parameter(profile, name)


if __name__ == "__main__":
    main()

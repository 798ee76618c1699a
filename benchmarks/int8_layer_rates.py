"""int8 vs fp32 onnxruntime kernel time per layer kind on real models, and the int8 rates fitted on them.

For each model: fused and quantized as `segcost optimize --int8` does (cpu target, --calib-size
synthetic calibration images), the float model that was quantized and the QDQ model run in
onnxruntime's CPUExecutionProvider with its profiler (1 intra-op thread, ORT_ENABLE_ALL, 3 warm-up
runs, then --runs runs alternating between the two; per node the median kernel time). Each int8
node is matched to its float-graph layer by name (onnxruntime names a QLinearConv `<Conv name>_token_N`
and an NCHWc conv `<output tensor>_nchwc`, the output of the last activation fused into it).

Printed:
* per model and layer kind (dense k×k, pointwise 1×1, depthwise, grouped, 3-channel stem; other
  layers by op type, "(float)" for one the QDQ graph runs in float; onnxruntime's own nodes —
  ReorderInput/Output, Transpose, Q/DQ — by op type): measured fp32 and int8 ms and their ratio;
* per model the rates of `segcost.quant.cpu_int8.Int8Rates` that reproduce its measurement
  (fit_model), and their medians over the --fit models and over all;
* int8/fp32 of the whole model, measured (sum of kernel times) and predicted
  (`mixed_cost.precision_costs`, full int8) with the built-in CPU_INT8_RATES, with the --fit
  median, and with the median of the other models (leave-one-out).

    python benchmarks/int8_layer_rates.py [--runs 21] [--fit default,unet,regnet,smp_unet] [--save r1.pkl]
    python benchmarks/int8_layer_rates.py --load r1.pkl r2.pkl ...   # refit on saved rounds (their median)

Models (exported into --models-dir when missing, random weights): the built-in default
MobileNetV2S16+DeepLabV3Lite (512²), the zoo's MobileNetV2+UNetLite, MobileNetV2+FPNLite (512²) and
RegNetX400MF+FPNLite (384²) (needs torch), and the corpus exports smp_unet_resnet18,
smp_manet_resnet18, tv_lraspp_mobilenetv3 (128×160; --corpus DIR, skipped if absent).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tabulate import tabulate

ZOO = {"unet": "MobileNetV2+UNetLite", "fpn": "MobileNetV2+FPNLite", "regnet": "RegNetX400MF+FPNLite"}
CORPUS = {"smp_unet": "smp_unet_resnet18", "smp_manet": "smp_manet_resnet18", "lraspp": "tv_lraspp_mobilenetv3"}
KINDS = ("dense", "pointwise", "grouped", "depthwise")
WARMUP = 3
MIN_KIND_MS = 0.3   # a model fits a kind's rate only if that kind takes this long in one of its graphs


def kernel_times(models: dict[str, onnx.ModelProto], feeds: dict[str, np.ndarray], runs: int
                 ) -> dict[str, dict[str, tuple[str, float]]]:
    """{model key: {onnxruntime node name: (op type, median kernel ms over `runs`)}} from onnxruntime's
    profiler, 1 thread; the models run alternately, run by run, so that a change in machine load hits both."""
    from segcost.targets.measure import session_options

    with tempfile.TemporaryDirectory() as directory:
        sessions = {}
        for key, model in models.items():
            options = session_options(1)
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(directory, key)
            sessions[key] = ort.InferenceSession(model.SerializeToString(), options,
                                                 providers=["CPUExecutionProvider"])
        for _ in range(WARMUP + runs):
            for session in sessions.values():
                session.run(None, feeds)
        result = {}
        for key, session in sessions.items():
            with open(session.end_profiling()) as handle:
                result[key] = _node_medians(json.load(handle), runs)
    return result


def _node_medians(events: list[dict], runs: int) -> dict[str, tuple[str, float]]:
    samples: dict[str, list[float]] = collections.defaultdict(list)
    ops: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][:-len("_kernel_time")]
            samples[name].append(event["dur"] / 1000)
            ops[name] = event["args"]["op_name"]
    return {name: (ops[name], statistics.median(values[-runs:])) for name, values in samples.items()}


def export_models(directory: Path, corpus: Path | None) -> dict[str, Path]:
    """{short name: ONNX path}: the built-in default and zoo models (exported once) and the corpus ones present."""
    paths: dict[str, Path] = {}
    default = directory / "default.onnx"
    if not default.exists():
        from segcost.samples import deeplabv3lite

        onnx.save_model(deeplabv3lite(), default)
    paths["default"] = default
    for short, name in ZOO.items():
        path = directory / f"{short}.onnx"
        if not path.exists():
            from segcost.zoo.export import export_zoo_model

            export_zoo_model(name, path)
        paths[short] = path
    for short, stem in CORPUS.items():
        if corpus is not None and (Path(corpus) / f"{stem}.onnx").exists():
            paths[short] = Path(corpus) / f"{stem}.onnx"
    return paths


def collect(path: Path, runs: int, calib_size: int) -> dict:
    """One model: its graphs (for re-predicting at other rates) and per float-graph layer the measured
    fp32 and int8 kernel ms (see the module docstring)."""
    import segcost.frontends.onnx as onnx_frontend
    from segcost.frontends.onnx import load_model
    from segcost.ir.onnx_io import to_model
    from segcost.pipeline import optimize_model, static_view
    from segcost.quant.mixed_cost import fold_weights, quantized_units
    from segcost.quant.quantize import QuantizeOptions, single_image_input

    result = optimize_model(onnx_frontend.load(str(path)), check=False,
                            int8=QuantizeOptions(calib_size=calib_size), eval_size=1)
    quantized = result.quantization
    graph = result.graph
    static_float, static_int8 = static_view(graph), static_view(quantized.graph)
    name, shape = single_image_input(graph)
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    times = kernel_times({"fp32": quantized.float_model, "int8": quantized.model}, feeds, runs)
    units = quantized_units(graph, static_int8)
    members = {member for unit in units.values() for member in unit.members}
    by_name: dict[str, str] = {}   # onnxruntime node name or output tensor -> float graph key
    for key in static_float.topological_order():
        node = static_float.node(key)
        target = node.meta.get("fused_into", key)
        by_name[node.name or key] = target
        by_name.update({tensor: target for tensor in node.outputs if tensor})
    measured: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"fp32": 0.0, "int8": 0.0})
    other: dict[str, collections.Counter] = {"fp32": collections.Counter(), "int8": collections.Counter()}
    for side, table in times.items():
        for node_name, (op, ms) in table.items():
            key = by_name.get(node_name) or by_name.get(node_name.removesuffix("_nchwc")) or by_name.get(
                re.sub(r"_token_\d+$", "", node_name))
            if key is not None and op not in ("QuantizeLinear", "DequantizeLinear", "Transpose"):
                measured[key][side] += ms
            else:
                other[side][op] += ms
    folded = fold_weights(load_model(to_model(static_int8), label=static_int8.info.path))
    return {"graph": graph, "static_float": static_float, "static_int8": static_int8, "folded": folded,
            "measured": dict(measured), "other": other, "units": members,
            "fp32_total": sum(ms for _, ms in times["fp32"].values()),
            "int8_total": sum(ms for _, ms in times["int8"].values())}


def layer_kinds(data: dict) -> dict[str, str]:
    """{float graph key: kind}: a conv kind (dense/pointwise/grouped/depthwise/stem), else the op type, with
    " (float)" for a layer the QDQ graph runs in float."""
    from segcost.quant.cpu_int8 import nearest_resizes, stem_keys
    from segcost.targets.cost_model import estimate

    graph = data["static_float"]
    stems = stem_keys(graph)
    nearest = set(nearest_resizes(graph))
    kinds = {}
    for layer in estimate(graph, "cpu").layers:
        node = graph.node(layer.name)
        kind = ("stem" if layer.name in stems else layer.kind) if layer.macs else layer.op_type
        kind += " nearest" if layer.name in nearest else ""
        kinds[layer.name] = kind if (node.name or layer.name) in data["units"] else f"{kind} (float)"
    return kinds


def predicted(data: dict, rates) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """({key: fp32 ms}, {key: int8 unit ms}, {key: ms as the QDQ graph runs it in float}) at `rates`."""
    from segcost.quant.cpu_int8 import cpu_layer_ms, cpu_variants

    fp32_profile, int8_profile = cpu_variants(rates)
    fp32, int8, in_int8, _, _ = cpu_layer_ms(data["static_float"], data["folded"], fp32_profile, int8_profile, rates)
    graph = data["static_float"]
    return fp32, int8, {key: in_int8.get(graph.node(key).name or key, fp32.get(key, 0.0)) for key in graph.dag}


FIELDS = {"dense": "dense", "pointwise": "pointwise", "grouped": "grouped", "depthwise": "depthwise",
          "stem": "stem", "Resize (float)": "plain_resize", "Resize nearest": "nearest_resize"}   # kind -> field


def fit_model(data: dict, kinds: dict[str, str]) -> dict[str, float]:
    """{Int8Rates field: rate} of one model: per kind, the rate for which its predicted int8 ms, scaled by its
    measured/predicted fp32 ms (the same layers' float kernels), equals its measured int8 ms (bisection in
    log space). A float layer of the QDQ graph runs another kernel than in the float graph: scaled by the
    whole model's measured/predicted fp32 ms instead. Kinds under MIN_KIND_MS of measured fp32 are skipped."""
    from dataclasses import replace

    from segcost.quant.cpu_int8 import CPU_INT8_RATES

    low = {field: math.log(0.02) for field in FIELDS.values()}
    high = {field: math.log(8.0) for field in FIELDS.values()}
    seen: set[str] = set()
    for _ in range(16):
        rates = replace(CPU_INT8_RATES, **{field: math.exp((low[field] + high[field]) / 2)
                                           for field in FIELDS.values()})
        fp32, int8, in_int8 = predicted(data, rates)
        sums = {kind: [0.0, 0.0, 0.0, 0.0] for kind in FIELDS}   # measured fp32, int8; predicted fp32, int8
        for key, times in data["measured"].items():
            kind = kinds.get(key)
            if kind in sums and times["fp32"] and times["int8"]:
                side = in_int8 if kind.endswith("(float)") else int8
                sums[kind] = [a + b for a, b in zip(sums[kind], (times["fp32"], times["int8"], fp32.get(key, 0.0),
                                                                  side.get(key, 0.0)))]
        whole = sum(fp32.values()) / data["fp32_total"]   # predicted/measured fp32 of the whole model
        for kind, (fp32_ms, int8_ms, predicted_fp32, predicted_int8) in sums.items():
            if max(fp32_ms, int8_ms) < MIN_KIND_MS or not predicted_int8:
                continue
            if kind.endswith("(float)") or kind == "Resize nearest":   # another kernel than the float graph's
                fp32_ms, predicted_fp32 = 1.0, whole
            field = FIELDS[kind]
            seen.add(field)
            if predicted_int8 * fp32_ms / predicted_fp32 > int8_ms:   # predicted too slow: a faster rate
                low[field] = math.log(getattr(rates, field))
            else:
                high[field] = math.log(getattr(rates, field))
    rates = {field: math.exp((low[field] + high[field]) / 2) for field in seen}
    return {field: rate for field, rate in rates.items() if 0.021 < rate < 7.9}   # at a bound: not identified


def pooled(per_model: dict[str, dict[str, float]], names):
    """Int8Rates with each field the median over `names` of the per-model rates (a median: one model measured
    while the machine was busy must not move it); fields no model fits keep CPU_INT8_RATES' value."""
    from dataclasses import replace

    from segcost.quant.cpu_int8 import CPU_INT8_RATES

    values: dict[str, list[float]] = collections.defaultdict(list)
    for name in names:
        for field, rate in per_model[name].items():
            values[field].append(rate)
    return replace(CPU_INT8_RATES, **{field: round(statistics.median(rates), 3) for field, rates in values.items()})


def merged(paths: list[Path]) -> dict[str, dict]:
    """Models of several --save rounds: graphs of the first, every measured time the median over the rounds (a
    round measured while the machine was busy is outvoted). Loaded one at a time (each holds its graphs)."""
    import pickle

    models = pickle.loads(paths[0].read_bytes())[0]
    keep = ("measured", "other", "fp32_total", "int8_total")
    rounds = [{short: {field: data[field] for field in keep} for short, data in models.items()}]
    for path in paths[1:]:
        loaded = pickle.loads(path.read_bytes())[0]
        rounds.append({short: {field: data[field] for field in keep} for short, data in loaded.items()})
        del loaded
    for short, data in models.items():
        runs = [each[short] for each in rounds if short in each]
        data["measured"] = {key: {side: statistics.median(run["measured"].get(key, {}).get(side, 0.0) for run in runs)
                                  for side in ("fp32", "int8")} for key in data["measured"]}
        data["other"] = {side: {op: statistics.median(run["other"][side].get(op, 0.0) for run in runs)
                                for op in data["other"][side]} for side in ("fp32", "int8")}
        for total in ("fp32_total", "int8_total"):
            data[total] = statistics.median(run[total] for run in runs)
    return models


def dispatch_us(nodes: int = 200, runs: int = 200) -> float:
    """onnxruntime's time per node of a chain of small elementwise nodes (Sigmoid on 128 floats), 1 thread, µs."""
    from onnx import TensorProto, helper

    from segcost.targets.measure import session_options

    graph = helper.make_graph([helper.make_node("Sigmoid", [f"t{index}"], [f"t{index + 1}"])
                               for index in range(nodes)], "chain",
                              [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info(f"t{nodes}", TensorProto.FLOAT, [1, 8, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    feeds = {"t0": np.ones((1, 8, 4, 4), np.float32)}
    times = []
    for index in range(WARMUP + runs):
        started = time.process_time()
        session.run(None, feeds)
        if index >= WARMUP:
            times.append(time.process_time() - started)
    return statistics.median(times) / nodes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--calib-size", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "segcost-int8-rates")
    parser.add_argument("--corpus", type=Path, default=os.environ.get("SEGCOST_CORPUS_DIR"),
                        help="folder of the corpus exports (tests/corpus; default $SEGCOST_CORPUS_DIR, else none)")
    parser.add_argument("--fit", default="default,unet,regnet,smp_unet", help="models the rates are fitted on")
    parser.add_argument("--only", help="comma-separated short names to run")
    parser.add_argument("--save", type=Path, help="pickle the collected measurements here")
    parser.add_argument("--load", type=Path, nargs="+",
                        help="fit on measurements pickled by --save instead of measuring (several: their median)")
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    paths = {} if args.load else export_models(args.models_dir, args.corpus)
    if args.only:
        paths = {short: path for short, path in paths.items() if short in args.only.split(",")}
    if args.load:
        models = merged(args.load)
        kinds = {short: layer_kinds(data) for short, data in models.items()}
    else:
        models = {short: collect(path, args.runs, args.calib_size) for short, path in paths.items()}
        kinds = {short: layer_kinds(data) for short, data in models.items()}
    if args.save:
        import pickle

        args.save.write_bytes(pickle.dumps((models, kinds)))
    rows = []
    for short, data in models.items():
        sums: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
        for key, times in data["measured"].items():
            kind = kinds[short].get(key, "?")
            sums[kind] = [sums[kind][0] + times["fp32"], sums[kind][1] + times["int8"], sums[kind][2] + 1]
        for side in ("fp32", "int8"):
            for op, ms in data["other"][side].items():
                sums[op][0 if side == "fp32" else 1] += ms
        for kind, (fp32, int8, count) in sorted(sums.items()):
            if fp32 + int8 >= 0.05:
                rows.append([short, kind, count or "", f"{fp32:.2f}", f"{int8:.2f}",
                             f"{int8 / fp32:.2f}" if fp32 else "-"])
    print("measured onnxruntime kernel ms per layer kind (1 thread, median of "
          f"{args.runs} runs per node; ops without a float-graph layer by onnxruntime op type)")
    print(tabulate(rows, headers=["model", "kind", "layers", "fp32 ms", "int8 ms", "int8/fp32"]))
    from segcost.quant.cpu_int8 import CPU_INT8_RATES
    from segcost.quant.mixed_cost import precision_costs

    per_model = {short: fit_model(data, kinds[short]) for short, data in models.items()}
    print("\nper-model rates:")
    print(tabulate([[short, *(f"{rates[field]:.3f}" if field in rates else "" for field in FIELDS.values())]
                    for short, rates in per_model.items()], headers=["model", *FIELDS.values()]))
    fit_names = [short for short in args.fit.split(",") if short in models]
    print(f"\nmedian over {', '.join(fit_names)}: {pooled(per_model, fit_names)}")
    print(f"median over all: {pooled(per_model, list(models))}")
    print(f"onnxruntime dispatch of a small elementwise node, 1 thread: {dispatch_us():.2f} µs")
    rows = []
    for short, data in models.items():
        measured = data["int8_total"] / data["fp32_total"]
        row = [short, "fit" if short in fit_names else "held out", f"{measured:.2f}"]
        others = [name for name in models if name != short]
        for rates in (CPU_INT8_RATES, pooled(per_model, fit_names), pooled(per_model, others)):
            costs = precision_costs(data["graph"], data["static_float"], data["static_int8"], "cpu", rates)
            ratio = costs.latency_ms(()) / costs.latency_ms(costs.units)
            row += [f"{ratio:.2f} ({100 * (ratio / measured - 1):+.0f}%)"]
        rows.append(row)
    print("\nint8/fp32: measured (sum of onnxruntime kernel times) and predicted (mixed_cost.precision_costs, "
          "full int8)")
    print(tabulate(rows, headers=["model", "--fit", "measured", "predicted: built-in rates", "rates of --fit models",
                                  "rates of the other models"]))


if __name__ == "__main__":
    main()

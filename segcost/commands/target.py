"""`segcost cost`, `segcost profile`, `segcost calibrate`: the target cost model on the command line.

Commands parse options, call segcost.targets and print what the renderers below make of
the result objects; nothing is computed while rendering.
"""

from __future__ import annotations

import json

import click

from segcost.errors import InputError

FORMATS = click.Choice(["table", "json", "md"])
TARGET_HELP = "Target profile: tda4vm, am62a, cpu, or a profile .toml file."


def _shape_option(function):
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW",
                        help="Static shape for a model input (repeatable).")(function)


def _fused_graph(model: str | None, input_shapes: tuple[str, ...], fuse: bool):
    """Load MODEL (default: the built-in DeepLabV3Lite) and run the fusion pipeline, as deployment toolchains do."""
    from segcost.cli import _load_graph

    graph, _ = _load_graph(model, input_shapes)
    if fuse:
        from segcost.optimize import build_pipeline

        graph = build_pipeline()(graph).graph
    return graph


@click.command("cost")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--target", default="tda4vm", show_default=True, help=TARGET_HELP)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@_shape_option
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many of the layers that dominate latency to rank (with the reason).")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Fold BatchNorm and mark fused activations first (what TIDL and onnxruntime do).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE (atomically).")
def cost(model: str | None, target: str, fmt: str, input_shapes: tuple[str, ...], top: int, fuse: bool,
         output: str | None) -> None:
    """Per-layer cycles, ms, bound, utilisation and placement of MODEL on a target, with totals."""
    from segcost.targets.cost_model import estimate, load_profile

    profile = load_profile(target)
    report = estimate(_fused_graph(model, input_shapes, fuse), profile)
    text = render_cost(report, fmt, top, model or "built-in DeepLabV3Lite")
    if output:
        from segcost.fileio import write_atomic

        write_atomic(output, text, protected=(model,))
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("profile")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@_shape_option
@click.option("--target", default="cpu", show_default=True, help="Profile whose predictions are compared.")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Measured runs (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Warm-up runs.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Intra-op threads.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--fuse/--no-fuse", default=True, show_default=True, help="Run segcost's fusion pipeline first.")
def profile_command(model: str | None, input_shapes: tuple[str, ...], target: str, runs: int, warmup: int,
                    threads: int, fmt: str, fuse: bool) -> None:
    """Measure MODEL's per-node times in onnxruntime and print them beside the profile's predictions."""
    from segcost.targets.cost_model import estimate_prepared, load_profile, prepare
    from segcost.targets.measure import compare, map_to_layers, measure

    profile = load_profile(target)
    graph = _fused_graph(model, input_shapes, fuse)
    prepared = prepare(graph, profile.rules)
    measurement = measure(graph, runs=runs, warmup=warmup, threads=threads)
    comparison = compare(estimate_prepared(prepared, profile), map_to_layers(prepared, measurement), measurement)
    click.echo(render_comparison(comparison, measurement, profile.name, fmt), nl=False)


@click.command("calibrate")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Profile TOML to write.")
@click.option("--base", default="cpu", show_default=True, help="Profile whose other values (and comments) are kept.")
@_shape_option
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Measured runs (median).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Intra-op threads.")
def calibrate(models: tuple[str, ...], output: str, base: str, input_shapes: tuple[str, ...], runs: int,
              threads: int) -> None:
    """Fit a profile's rates and overheads to onnxruntime measurements of MODELS and write it as TOML."""
    from segcost.fileio import write_atomic
    from segcost.targets.calibrate import CalibrationSample, calibrated_profile_text, fit_profile
    from segcost.targets.cost_model import estimate_prepared, load_profile, prepare
    from segcost.targets.measure import compare, map_to_layers, measure_many
    from segcost.targets.profile import parse_profile, profile_text

    base_profile = load_profile(base)
    if base_profile.fallback is not None:
        raise InputError(f"--base {base}: only a profile without a fallback device (the CPU running everything) "
                         "can be calibrated on this machine")
    graphs = {path: _fused_graph(path, input_shapes, True) for path in models}
    measurements = measure_many(graphs, runs=runs, threads=threads,
                                progress=lambda done, total: click.echo(f"\rmeasuring round {done}/{total}",
                                                                        err=True, nl=done == total))
    samples = []
    for path, graph in graphs.items():
        prepared = prepare(graph, base_profile.rules)
        samples.append(CalibrationSample(path, prepared, map_to_layers(prepared, measurements[path]),
                                         measurements[path]))
    fit = fit_profile(samples, base_profile)
    text = calibrated_profile_text(fit, profile_text(base), list(models), runs, threads,
                                   next(iter(measurements.values())).ort_version)
    parse_profile(text, output)   # never write a profile that would not load back
    write_atomic(output, text, protected=models)
    comparisons = [(sample.name, compare(estimate_prepared(sample.prepared, fit.profile), sample.mapping,
                                         sample.measurement)) for sample in samples]
    click.echo(render_fit(fit, comparisons), nl=False)
    click.echo(f"wrote {output}")


COMMANDS = [cost, profile_command, calibrate]


# -- renderers: result objects in, text out ------------------------------------------------------------------

def _table(rows: list[list], headers: list[str], fmt: str) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github" if fmt == "md" else "simple", disable_numparse=True)


def render_cost(report, fmt: str, top: int, model_label: str) -> str:
    """A TargetReport as a table, Markdown or JSON."""
    if fmt == "json":
        return json.dumps({"model": model_label, **report.to_dict()}, indent=2) + "\n"
    totals = report.totals
    heading = "## " if fmt == "md" else ""
    layer_rows = [[layer.name, layer.op_type, layer.kind, layer.placement, f"{layer.cycles:,.0f}", f"{layer.ms:.4f}",
                   layer.bound, f"{layer.utilisation_pct:.1f}", layer.memory_level] for layer in report.layers]
    parts = [f"{heading}{model_label} on {report.profile_name}: {report.profile_description}\n",
             _table(layer_rows, ["layer", "op", "kind", "placement", "cycles", "ms", "bound", "util %", "memory"], fmt),
             "",
             f"{heading}Totals",
             _table([["latency", f"{totals.latency_ms:.3f} ms"], ["throughput", f"{totals.fps:.1f} FPS"],
                     ["MACs", f"{totals.macs:,}"],
                     ["MAC utilisation", f"{totals.utilisation_pct:.1f}% of {report.peak_macs_per_s / 1e12:.3g} "
                                         f"T MACs/s ({report.dtype})"],
                     ["on accelerator", f"{totals.accelerator_ms:.3f} ms"],
                     ["fallback", f"{totals.fallback_ms:.3f} ms in {totals.fallback_layers} layers"],
                     ["transfers", f"{totals.transfer_ms:.3f} ms in {len(report.transfers)} hand-overs"],
                     ["per-run overhead", f"{totals.run_overhead_ms:.3f} ms"]], ["", ""], fmt),
             "",
             f"{heading}Share of latency by kind and by op type",
             _table([[kind, f"{100 * share:.1f}%"] for kind, share in totals.share_by_kind.items()],
                    ["kind", "share"], fmt),
             "",
             _table([[op, f"{100 * share:.1f}%"] for op, share in totals.share_by_op_type.items()],
                    ["op type", "share"], fmt),
             "",
             f"{heading}Latency by bound",
             _table([[bound, f"{ms:.3f} ms"] for bound, ms in totals.ms_by_bound.items()], ["bound", "time"], fmt)]
    if report.transfers:
        parts += ["", f"{heading}Fallback boundaries",
                  _table([[item.tensor, item.producer, item.consumer, item.direction, f"{item.bytes:,}",
                           f"{item.ms:.4f}"] for item in report.transfers],
                         ["tensor", "from", "to", "direction", "bytes", "ms"], fmt)]
    slowest = report.slowest(top)
    parts += ["", f"{heading}Layers that dominate latency",
              _table([[index, layer.name, f"{layer.ms:.4f}",
                       f"{100 * layer.ms / totals.latency_ms:.1f}%" if totals.latency_ms else "-", layer.reason]
                      for index, layer in enumerate(slowest, start=1)], ["#", "layer", "ms", "share", "why"], fmt)]
    return "\n".join(parts) + "\n"


def render_comparison(comparison, measurement, profile_name: str, fmt: str) -> str:
    """Measured against predicted, per layer group, with rho and latency errors."""
    summary = {"profile": profile_name, "spearman_rho": comparison.spearman_rho,
               "predicted_latency_ms": comparison.predicted_latency_ms,
               "measured_wall_median_ms": comparison.measured_latency_ms,
               "latency_error_pct": comparison.latency_error_pct,
               "measured_node_medians_ms": comparison.robust_latency_ms,
               "node_medians_error_pct": comparison.robust_error_pct, "unmapped_ms": comparison.unmapped_ms,
               "onnxruntime": measurement.ort_version, "threads": measurement.threads, "runs": measurement.runs}
    if fmt == "json":
        return json.dumps({**summary, "groups": [dict(vars(group)) for group in comparison.groups]}, indent=2) + "\n"
    rows = [[group.name, group.op_types, len(group.layers), f"{group.predicted_ms:.3f}", f"{group.measured_ms:.3f}",
             f"{group.predicted_ms / group.measured_ms:.2f}" if group.measured_ms else "-"]
            for group in sorted(comparison.groups, key=lambda group: -group.measured_ms)]
    lines = [_table(rows, ["layer group", "ops", "layers", "predicted ms", "measured ms", "ratio"], fmt), "",
             f"onnxruntime {measurement.ort_version}, {measurement.threads} threads, median of {measurement.runs} "
             f"runs after {measurement.warmup} warm-up; profile {profile_name}",
             f"Spearman rho over {len(comparison.groups)} layer groups: {comparison.spearman_rho:.3f}",
             f"latency: predicted {comparison.predicted_latency_ms:.2f} ms, measured {comparison.measured_latency_ms:.2f}"
             f" ms wall median ({comparison.latency_error_pct:+.1f}%), {comparison.robust_latency_ms:.2f} ms from "
             f"per-node medians ({comparison.robust_error_pct:+.1f}%)",
             f"ORT nodes without an IR layer (layout reorders): {comparison.unmapped_ms:.3f} ms"]
    return "\n".join(lines) + "\n"


def render_fit(fit, comparisons: list) -> str:
    """Fitted parameters and the in-sample fit per calibration model."""
    parameter_rows = [[name, f"{value:.4g}" + (" (not exercised by these models: base value kept)"
                                              if name in fit.unconstrained else "")]
                      for name, value in fit.parameters.items()]
    model_rows = [[name, len(comparison.groups), f"{comparison.spearman_rho:.3f}",
                   f"{comparison.predicted_latency_ms:.2f}", f"{comparison.robust_latency_ms:.2f}",
                   f"{comparison.robust_error_pct:+.1f}%"] for name, comparison in comparisons]
    return "\n".join([
        f"fitted {len(fit.parameters)} parameters on {fit.groups} layer groups ({fit.iterations} iterations), "
        f"log error median |e| {fit.median_abs_log_error:.3f}, RMS {fit.rms_log_error:.3f}",
        _table(parameter_rows, ["parameter", "value"], "table"), "",
        "in-sample fit (evaluate on other models with `segcost profile`):",
        _table(model_rows, ["model", "groups", "rho", "predicted ms", "measured ms", "error"], "table")]) + "\n"

"""`segcost cost`, `segcost profile`, `segcost calibrate`: the target cost model on the command line.

Commands parse options, call segcost.targets and print what segcost.reports.target makes of
the result objects; nothing is computed while rendering.
"""

from __future__ import annotations

import click

from segcost.commands.inputs import fused_graph
from segcost.commands.options import OptionNeedsCommand, count_type, trust_model_code_option
from segcost.errors import InputError
from segcost.reports.target import (
    render_comparison,
    render_cost,
    render_device_fit,
    render_fit,
)

FORMATS = click.Choice(["table", "json", "md"])
TARGET_HELP = "Target profile: tda4vm, am62a, cpu, or a profile .toml file."


CALIBRATE_NEEDS = {"--models-dir": "--reference",
                   **dict.fromkeys(("--input-shape", "--runs", "--threads"), "no --reference")}
"""Which calibrate options need which: --reference fits device times, nothing is measured here."""


def _shape_option(function):
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW",
                        help="Static shape for a model input (repeatable).")(function)


@click.command("cost", cls=OptionNeedsCommand, needs={"--top": "--format table or --format md"})
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--target", default="tda4vm", show_default=True, help=TARGET_HELP)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@_shape_option
@click.option("--top", type=count_type(1), default=10, show_default=True,
              help="How many of the layers that dominate latency to rank (with the reason).")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Fold BatchNorm and mark fused activations first (what TIDL and onnxruntime do).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE (atomically).")
@trust_model_code_option
def cost(model: str | None, target: str, fmt: str, input_shapes: tuple[str, ...], top: int, fuse: bool,
         output: str | None) -> None:
    """Per-layer cycles, ms, bound, utilisation and placement of MODEL on a target, with totals."""
    from segcost.commands.inputs import load_cli_graph
    from segcost.fileio.plan import OutputPlan
    from segcost.pipeline import estimate_on_target

    plan = OutputPlan.check({"-o": output}, {"MODEL": model, "--target": target})
    graph, _ = load_cli_graph(model, input_shapes)
    report = estimate_on_target(graph, target, fuse)   # the same path as analyze --target and check
    text = render_cost(report, fmt, top, model or "built-in DeepLabV3Lite")
    if output:
        plan.write(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("profile")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@_shape_option
@click.option("--target", default="cpu", show_default=True, help="Profile whose predictions are compared.")
@click.option("--runs", type=count_type(1), default=10, show_default=True, help="Measured runs (median).")
@click.option("--warmup", type=count_type(0), default=3, show_default=True, help="Warm-up runs.")
@click.option("--threads", type=count_type(1), default=2, show_default=True, help="Intra-op threads.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--fuse/--no-fuse", default=True, show_default=True, help="Run segcost's fusion pipeline first.")
@trust_model_code_option
def profile_command(model: str | None, input_shapes: tuple[str, ...], target: str, runs: int, warmup: int,
                    threads: int, fmt: str, fuse: bool) -> None:
    """Measure MODEL's per-node times in onnxruntime and print them beside the profile's predictions."""
    from segcost.targets.cost_model import estimate_prepared, load_profile, prepare
    from segcost.targets.measure import compare, map_to_layers, measure

    profile = load_profile(target)
    graph = fused_graph(model, input_shapes, fuse, profile)
    prepared = prepare(graph, profile.rules)
    measurement = measure(graph, runs=runs, warmup=warmup, threads=threads)
    comparison = compare(estimate_prepared(prepared, profile), map_to_layers(prepared, measurement), measurement)
    click.echo(render_comparison(comparison, measurement, profile.name, fmt), nl=False)


@click.command("calibrate", cls=OptionNeedsCommand, needs=CALIBRATE_NEEDS)
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Profile TOML to write.")
@click.option("--base", default="cpu", show_default=True, help="Profile whose other values (and comments) are kept.")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="CSV of measured device times (model,total_ms; repeated rows: median): fit the base profile to "
                   "them instead of measuring MODELS here. A model is MODELS-DIR/<model>.onnx.")
@click.option("--models-dir", type=click.Path(file_okay=False),
              help="Folder of the --reference models' ONNX files (default: the CSV's folder).")
@_shape_option
@click.option("--runs", type=count_type(1), default=10, show_default=True, help="Measured runs (median).")
@click.option("--threads", type=count_type(1), default=2, show_default=True, help="Intra-op threads.")
def calibrate(models: tuple[str, ...], output: str, base: str, reference: str | None, models_dir: str | None,
              input_shapes: tuple[str, ...], runs: int, threads: int) -> None:
    """Fit a profile's rates and overheads to onnxruntime measurements of MODELS (or to --reference device times)."""
    from segcost.fileio.plan import OutputPlan
    from segcost.targets.cost_model import load_profile

    plan = OutputPlan.check({"-o": output}, {"MODEL": list(models), "--base": base, "--reference": reference})
    base_profile = load_profile(base)
    if reference is not None:
        if models:
            raise InputError("give MODELS or --reference, not both")
        _calibrate_reference(reference, models_dir, plan, output, base, base_profile)
        return
    if not models:
        raise InputError("calibrate needs MODELS to measure, or --reference with measured device times")
    _calibrate_measured(models, plan, output, base, base_profile, input_shapes, runs, threads)


def _calibrate_reference(reference: str, models_dir: str | None, plan, output: str, base: str,
                         base_profile) -> None:
    """Fit `base_profile` to the device times of a reference CSV; print fit and leave-one-out errors."""
    from pathlib import Path

    from segcost.targets.cost_model import prepare
    from segcost.targets.device_fit import (
        DeviceSample,
        fit_device,
        fitted_profile_text,
        leave_one_out,
        median_abs_log,
        read_reference,
        spearman,
    )
    from segcost.targets.profile_toml import parse_profile, profile_text

    times = read_reference(reference)
    folder = Path(models_dir) if models_dir else Path(reference).parent
    samples = []
    for name, reference_time in sorted(times.items()):
        path = folder / f"{name}.onnx"
        if not path.is_file():
            raise InputError(f"{reference}: no model file {path} for reference model {name!r} (see --models-dir)")
        samples.append(DeviceSample(name, prepare(fused_graph(str(path), (), True, base_profile), base_profile.rules),
                                    reference_time.median_ms))
    fit = fit_device(samples, base_profile)
    loo = leave_one_out(samples, base_profile) if len(samples) > 2 else None
    text = fitted_profile_text(fit, profile_text(base), Path(reference).name, samples, loo)
    parse_profile(text, output)   # never write a profile that would not load back
    plan.write(output, text)
    scores = None
    if loo:
        predicted, measured = [loo[sample.name] for sample in samples], [sample.measured_ms for sample in samples]
        scores = (median_abs_log(predicted, measured), spearman(predicted, measured))
    click.echo(render_device_fit(fit, samples, loo, scores), nl=False)
    click.echo(f"wrote {output}")


def _calibrate_measured(models: tuple[str, ...], plan, output: str, base: str, base_profile,
                        input_shapes: tuple[str, ...], runs: int, threads: int) -> None:
    from segcost.targets.calibrate import (
        CalibrationSample,
        calibrated_profile_text,
        fit_profile,
    )
    from segcost.targets.cost_model import estimate_prepared, prepare
    from segcost.targets.measure import compare, map_to_layers, measure_many
    from segcost.targets.profile_toml import parse_profile, profile_text

    if base_profile.fallback is not None:
        raise InputError(f"--base {base}: only a profile without a fallback device (the CPU running everything) "
                         "can be calibrated on this machine; fit a device profile with --reference")
    graphs = {path: fused_graph(path, input_shapes, True, base_profile) for path in models}
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
    plan.write(output, text)
    comparisons = [(sample.name, compare(estimate_prepared(sample.prepared, fit.profile), sample.mapping,
                                         sample.measurement)) for sample in samples]
    click.echo(render_fit(fit, comparisons), nl=False)
    click.echo(f"wrote {output}")


COMMANDS = [cost, profile_command, calibrate]

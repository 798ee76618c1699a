"""`segcost optimize`: fuse, clean up, verify, check numerics, optionally quantize to int8; write the model.

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click

from segcost.commands.inputs import load_cli_graph
from segcost.commands.options import DECIMAL, INTEGER, OptionNeedsCommand, count_type, trust_model_code_option
from segcost.commands.output import check_outputs, report_kind

_INT8_OPTIONS = ("--calib", "--calib-size", "--per-channel/--per-tensor", "--pow2-scales", "--method", "--target",
                 "--exclude-nodes", "--eval", "--eval-size", "--max-drop", "--measure", "--mixed")
NEEDS = {**dict.fromkeys(_INT8_OPTIONS, "--int8"), "--min-sqnr": "--mixed", "--max-float-layers": "--mixed"}
"""Which optimize options need which: without it, the option would be ignored (an accuracy gate skipped)."""


@click.command(cls=OptionNeedsCommand, needs=NEEDS)
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Optimized ONNX file (default: MODEL.optimized.onnx / MODEL.int8.onnx beside MODEL).")
@click.option("--passes",
              help="Comma-separated passes to run (default: the default pipeline; fuse-pad runs only when named).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW",
              help="Static input shape; a batch dim the model declares symbolic stays symbolic in the written model.")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Write a report of passes, costs and findings: FILE.json, or FILE.html (with int8 SQNR).")
@click.option("--rules", default="current", show_default=True, help="Target rule set for the verifier.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run original and optimized models in onnxruntime and compare outputs.")
@click.option("--print-after-all", is_flag=True, help="Print every pass's summary line and op counts as it runs.")
@click.option("--int8", is_flag=True, help="Quantize to an int8 QDQ graph after fusion.")
@click.option("--calib", default="synthetic", show_default=True, metavar="DIR|NPY|NPZ|synthetic",
              help="Calibration data: a folder of images/.npy, a .npy/.npz array, or generated shapes.")
@click.option("--calib-size", default=16, show_default=True, type=count_type(1), help="Calibration samples.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scale granularity.")
@click.option("--pow2-scales", is_flag=True, help="Round every scale up to a power of two (first-gen TIDL).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="Calibration method.")
@click.option("--target", type=click.Choice(["cpu", "tda4vm"]), default="cpu", show_default=True,
              help="cpu: fastest format in onnxruntime (u8 activations); tda4vm: symmetric int8, zero points 0.")
@click.option("--exclude-nodes", default="", metavar="A,B", help="Nodes to keep in float.")
@click.option("--eval", "eval_data", metavar="DIR|NPZ|synthetic",
              help="Data for the accuracy report (default: the calibration data; synthetic: its held-out split).")
@click.option("--eval-size", type=count_type(1),
              help="Samples for the accuracy report (default: --calib-size).")
@click.option("--max-drop", type=DECIMAL, metavar="X",
              help="Exit 1 when int8 loses more than X percentage points of mIoU (or X % of pixels change class "
                   "without labels; 100 when an int8 output is all zeros), or when no output has a per-pixel "
                   "class to measure.")
@click.option("--measure", "measure_runs", type=count_type(1), metavar="N",
              help="Also measure fp32 vs int8 in onnxruntime CPU (1 thread, median CPU time of N runs).")
@click.option("--mixed", is_flag=True,
              help="With --int8: keep in float the layers where int8 is predicted slower on --target (cost model) "
                   "and the most sensitive ones until the output SQNR reaches --min-sqnr (see README).")
@click.option("--min-sqnr", type=DECIMAL, metavar="DB",
              help="--mixed: output SQNR goal against float on the calibration data, dB [default: 30].")
@click.option("--max-float-layers", type=INTEGER, metavar="N",
              help="--mixed: at most N layers kept in float for accuracy [default: 8].")
@trust_model_code_option
@click.pass_context
def optimize(ctx: click.Context, model: str | None, output: str | None, passes: str | None,
             input_shapes: tuple[str, ...], report: str | None, rules: str, check: bool, print_after_all: bool,
             int8: bool, calib: str, calib_size: int, per_channel: bool, pow2_scales: bool, method: str, target: str,
             exclude_nodes: str, eval_data: str | None, eval_size: int | None, max_drop: float | None,
             measure_runs: int | None, mixed: bool, min_sqnr: float | None, max_float_layers: int | None) -> None:
    """Fuse Conv-BN(-ReLU), clean up, verify, optionally quantize to int8, and write the model."""
    import warnings
    from pathlib import Path

    from segcost.fileio.writes import json_text
    from segcost.pipeline import optimize_model
    from segcost.reports.passes import growth_warnings, int8_failures, optimize_report, render_optimize

    mixed_options = _mixed_options(mixed, min_sqnr, max_float_layers)
    _check_int8_numbers(calib_size, eval_size, max_drop, {"--calib": calib, "--eval": eval_data})
    if output is None:
        suffix = ".int8.onnx" if int8 else ".optimized.onnx"
        output = str(Path(model).with_suffix(suffix)) if model else "deeplabv3lite" + suffix
    accuracy_path = str(Path(output).with_suffix(".accuracy.json")) if int8 else None
    plan = check_outputs({"-o": output, "--report": report, "the accuracy report": accuracy_path},
                          {"MODEL": model, "--calib": calib, "--eval": eval_data})
    with warnings.catch_warnings():  # torch exporters' FutureWarnings are not for segcost's user
        warnings.simplefilter("ignore", FutureWarning)
        graph, _ = load_cli_graph(model, input_shapes, keep_symbolic_batch=True)
    plan.recheck()   # against the model's external data too; a clash names the worse problem first
    report_format = report_kind(report, "--report")
    for name, declared in graph.info.exported_input_shapes.items():
        shape = graph.shape(name)
        if declared and shape and not isinstance(declared[0], int) and isinstance(shape[0], int):
            click.echo(f"segcost: note: input {name!r}: batch dim {declared[0]!r} could not be kept symbolic (shape "
                       f"inference cannot follow it through this graph); the written model takes batch {shape[0]}",
                       err=True)
    options = None
    if int8:
        from segcost.quant.quantize import QuantizeOptions

        options = QuantizeOptions(calibration=calib, calib_size=calib_size, per_channel=per_channel,
                                  pow2_scales=pow2_scales, method=method, target=target,
                                  exclude_nodes=tuple(filter(None, exclude_nodes.split(","))))
    result = optimize_model(graph, passes.split(",") if passes is not None else None, rules=rules, check=check,
                            after_each=_print_after if print_after_all else None, int8=options, eval_data=eval_data,
                            progress=_calibration_progress, eval_size=eval_size,
                            measure_runs=measure_runs if int8 else None, mixed=mixed_options)
    assert result.model is not None, "optimize_model always sets the model to write"
    plan.write(output, result.model.SerializeToString())
    click.echo(render_optimize(result), nl=False)
    click.echo(f"wrote {output}")
    for note in _fixed_size_notes(graph):
        click.echo(note, err=True)
    for note in result.notes:
        click.echo(f"segcost: note: {note}", err=True)
    for warning in growth_warnings(result):   # also under the before/after table above
        click.echo(f"segcost: warning: {warning}", err=True)
    payload = optimize_report(result, model, output)
    if result.accuracy is not None and accuracy_path is not None:
        plan.write(accuracy_path, json_text(payload["int8"]))
        click.echo(f"wrote {accuracy_path}")
    if report:
        if report_format == "html":   # the same report as a page, with the int8 SQNR chart
            from segcost.reports.html import render_optimize_html

            plan.write(report, render_optimize_html(result, model or "built-in DeepLabV3Lite"))
        else:
            plan.write(report, json_text(payload))
    failures = int8_failures(result) if result.accuracy is not None else []
    for failure in failures:   # also leading the int8 report above; the model is written all the same
        click.echo(f"segcost: {failure}", err=True)
    drop = result.accuracy.drop() if max_drop is not None and result.accuracy is not None else None
    if max_drop is not None and result.accuracy is not None and drop is None:   # a gate that cannot be checked fails
        click.echo(f"segcost: --max-drop {max_drop} cannot be checked: {result.accuracy.unmeasured_reason()}",
                   err=True)
        ctx.exit(1)
    if max_drop is not None and drop is not None and drop > max_drop:
        click.echo(f"int8 accuracy drop {drop:.2f} percentage points exceeds --max-drop {max_drop}", err=True)
        ctx.exit(1)
    if failures:
        ctx.exit(1)


def _mixed_options(mixed: bool, min_sqnr: float | None, max_float_layers: int | None):
    """The MixedOptions of --mixed (None without it); InputError for bad values (misused options: NEEDS)."""
    from segcost.quant.mixed import MixedOptions

    if not mixed:
        return None
    options = MixedOptions()
    options.min_sqnr_db = options.min_sqnr_db if min_sqnr is None else min_sqnr
    options.max_float_layers = options.max_float_layers if max_float_layers is None else max_float_layers
    options.validate()
    return options


def _check_int8_numbers(calib_size: int, eval_size: int | None, max_drop: float | None,
                        data: dict[str, str | None]) -> None:
    """InputError for a sample count over the bound (segcost.quant.calibration.MAX_SAMPLES), a --max-drop that
    is not a finite number >= 0 (NaN and inf disabled the gate, a negative value always failed), or an empty
    --calib/--eval (`data`; '' had read the working folder, --eval '' only after calibration), before any work."""
    import math

    from segcost.errors import InputError
    from segcost.fileio.paths import check_path_text
    from segcost.quant.calibration import check_sample_count

    for option, value in data.items():
        if value is not None:
            check_path_text(value, option)

    check_sample_count(calib_size, "--calib-size")
    if eval_size is not None:
        check_sample_count(eval_size, "--eval-size")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise InputError(f"--max-drop {max_drop} must be a finite number of percentage points >= 0")


def _fixed_size_notes(graph) -> list[str]:
    """A note per input whose symbolic non-batch dims --input-shape fixed: the written model only runs at that size.

    Shape computations (Shape → Gather → Reshape chains) are folded to constants at the given
    size, so the written model's inputs are declared at it; a batch dim is kept symbolic where it can be.
    """
    notes = []
    for name, declared in graph.info.exported_input_shapes.items():
        shape = graph.shape(name)
        if not declared or not shape or len(declared) != len(shape):
            continue
        fixed = [(axis, dim) for axis, (dim, size) in enumerate(zip(declared, shape))
                 if axis > 0 and not (isinstance(dim, int) and dim > 0) and isinstance(size, int)]
        if fixed:
            dims = ", ".join(f"{dim if isinstance(dim, str) and dim else f'axis {axis}'}={shape[axis]}"
                             for axis, dim in fixed)   # an unnamed dynamic dim by its axis
            notes.append(f"segcost: note: input {name!r}: the written model is fixed at {dims} (its shape "
                         f"computations are folded at the --input-shape size); optimize again for other sizes")
    return notes


def _print_after(record, graph) -> None:
    counts: dict[str, int] = {}
    for key in graph.dag:
        op_type = graph.node(key).op_type
        counts[op_type] = counts.get(op_type, 0) + 1
    click.echo(f"after {record.name} (round {record.iteration}): {record.nodes_after} nodes "
               f"{dict(sorted(counts.items()))}", err=True)


def _calibration_progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    click.echo(f"\rcalibrating [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", err=True,
               nl=done == total)
    if done == total:   # what follows takes a while too: say what it is
        click.echo("quantizing, then measuring int8 accuracy against float on the evaluation data ...", err=True)


COMMANDS = [optimize]

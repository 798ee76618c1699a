"""The `segcost` command line: parse, call the library, render, exit.

Exit codes: 0 success, 1 a budget or check failed, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import os
import sys

import click

from segcost.commands.inputs import is_torch_spec, load_cli_graph
from segcost.commands.options import trust_model_code_option
from segcost.errors import InputError, SegcostError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segcost")
def cli() -> None:
    """Exact per-layer cost of segmentation networks for embedded accelerators."""


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW",
              help="Static shape for a model input (repeatable); NAME may be omitted for one-input models.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md", "html"]), default="table",
              show_default=True, help="Output format (html: self-contained report with charts).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE (atomically).")
@click.option("--top", type=click.IntRange(min=1), help="Table: only the N layers with the most MACs.")
@click.option("--group-by", metavar="KEY", help="Subtotals instead of layers: op_type, kind, prefix or prefix:DEPTH "
              "(layer-name parts, e.g. encoder/decoder); they add up to the totals exactly.")
@click.option("--by-op", is_flag=True, help="Same as --group-by op_type.")
@click.option("--count", "counted", metavar="CATS", default="none", show_default=True,
              help="Also count these categories' elementary ops as MACs (other tools count some of them): "
                   "bias,bn,activation,pooling,resize,elementwise, all or none; totals.macs stays conv/gemm.")
@click.option("--strict", is_flag=True, help="Exit 2 when any op is unsupported or any loop has no static trip "
              "count (names them).")
@click.option("--target", help="Add the estimated cost on a target (tda4vm, am62a, cpu or a profile .toml).")
@click.option("--symbolic", is_flag=True, help="MACs as an exact formula of the model's symbolic input dims "
              "(found by analyzing it at a grid of sizes and checked beyond it).")
@click.option("--multiple", default=32, show_default=True, type=click.IntRange(min=1),
              help="With --symbolic: spatial dims are probed (and the formula holds) on multiples of this.")
@trust_model_code_option
@click.option("--factory-arg", "factory_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument of a module:factory model (repeatable), VALUE a Python literal, "
                   "e.g. weights=None (no download).")
def analyze(model: str | None, input_shapes: tuple[str, ...], fmt: str, output: str | None, top: int | None,
            group_by: str | None, by_op: bool, counted: str, strict: bool, target: str | None, symbolic: bool,
            multiple: int, factory_args: tuple[str, ...]) -> None:
    """Per-layer MACs, FLOPs, params and bytes of MODEL (default: a built-in DeepLabV3Lite).

    MODEL is an .onnx file, or with segcost[torch] a TorchScript/ExportedProgram file
    (.pt/.pth/.pt2) or a `package.module:factory` spec (give --input-shape 1x3xHxW and
    --factory-arg KEY=VALUE for its keyword arguments).
    """
    from segcost.analyzer.conventions import parse_counted

    if group_by is not None:
        from segcost.analyzer.grouping import parse_group_by

        parse_group_by(group_by)   # a bad key is an error before the model is loaded
    categories = parse_counted(counted)
    _refuse_ignored_options(fmt, top, group_by or ("op_type" if by_op else None), categories, strict, target, symbolic)
    _check_outputs({"-o": output}, {"MODEL": model, "--target": target})
    if symbolic:
        from segcost.commands.symbolic import symbolic_report

        if model is None or is_torch_spec(model):
            raise InputError("--symbolic needs an .onnx file with symbolic input dims")
        _emit(symbolic_report(model, input_shapes, fmt, multiple), output, protected=(model,))
        return
    graph, _ = load_cli_graph(model, input_shapes, factory_args)
    _report_analysis(graph, model, fmt, output, top, group_by or ("op_type" if by_op else None), strict, target,
                     categories)


def _refuse_ignored_options(fmt: str, top: int | None, group_by: str | None, categories: list[str], strict: bool,
                            target: str | None, symbolic: bool) -> None:
    """An option the chosen report would not use is an error, not silently dropped."""
    ignored = []
    if symbolic:
        ignored = [name for name, given in (("--top", top), ("--group-by/--by-op", group_by),
                                            ("--count", categories), ("--strict", strict), ("--target", target))
                   if given]
        if ignored:
            raise InputError(f"--symbolic reports one formula; it does not combine with {', '.join(ignored)}")
        return
    if fmt == "html":   # its stage charts take --group-by prefix[:DEPTH]; nothing else groups
        ignored = [name for name, given in (("--group-by/--by-op (other than prefix[:DEPTH])",
                                             group_by and not group_by.startswith("prefix")),
                                            ("--count", categories)) if given]
    elif fmt == "csv":
        ignored = [name for name, given in (("--count (CSV rows carry no totals)", categories),
                                            ("--target (use --format json)", target)) if given]
    if group_by and top is not None:
        ignored.append("--top (with --group-by)")
    if ignored:
        raise InputError(f"--format {fmt} does not use {', '.join(ignored)}")


def _report_analysis(graph, model: str | None, fmt: str, output: str | None, top: int | None, group_by: str | None,
                     strict: bool, target: str | None, counted: list[str]) -> None:
    from segcost.analyzer import analyze as analyze_graph
    from segcost.reports.analysis import render

    result = analyze_graph(graph)
    result.counted = counted
    if strict and result.coverage.unsupported:
        raise InputError("unsupported ops (--strict): " + ", ".join(result.coverage.unsupported))
    if strict and result.coverage.unbounded:
        raise InputError("loops without a static trip count (--strict): " + ", ".join(result.coverage.unbounded))
    timeline = None
    if fmt == "html":   # before the target estimate, which fuses the graph in place
        from segcost.analyzer.timeline import activation_timeline

        timeline = activation_timeline(graph)
    findings = None
    if fmt == "html":
        from segcost.passes import VerifyGroupedConvPass

        findings = VerifyGroupedConvPass()(graph).findings
    if target:
        from segcost.optimize import estimate_on_target

        estimate = estimate_on_target(graph, target)   # one path with `cost` and `check --max-latency-ms`
    else:
        estimate = None
    if fmt == "html":
        from segcost.analyzer.grouping import parse_group_by
        from segcost.commands.html_report import html_extras
        from segcost.reports.html import render_html

        extras = html_extras(result, timeline, estimate, target, parse_group_by(group_by)[1] if group_by else 1)
        _emit(render_html(result, findings, target=estimate, top=top or 40, extras=extras), output,
              protected=(model,))
        return
    if estimate is not None:
        from segcost.reports.target import render_cost

        if fmt == "json":
            import json

            document = result.to_dict()
            if group_by:
                from segcost.reports.analysis import groups_dict

                document["groups"] = groups_dict(result, group_by)
            document["target"] = estimate.to_dict()
            _emit(json.dumps(document, indent=2) + "\n", output, protected=(model,))
        else:
            text = render(result, fmt, top=top, group_by=group_by)
            _emit(text + "\n" + render_cost(estimate, "md" if fmt == "md" else "table", top or 10,
                                            graph.info.path or "model", layers=top), output, protected=(model,))
        return
    if fmt == "json":
        from segcost.reports.analysis import groups_dict, render_json_chunks

        if group_by:   # group reports are small: the whole document at once is simplest
            import json

            document = result.to_dict()
            document["groups"] = groups_dict(result, group_by)
            _emit(json.dumps(document, indent=2) + "\n", output, protected=(model,))
        else:
            _emit(render_json_chunks(result), output, protected=(model,))
        return
    _emit(render(result, fmt, top=top, group_by=group_by), output, protected=(model,))


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Optimized ONNX file (default: MODEL.optimized.onnx / MODEL.int8.onnx beside MODEL).")
@click.option("--passes", help="Comma-separated passes to run (default: the whole pipeline).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Write a report of passes, costs and findings: JSON, or HTML (with int8 SQNR) for .html.")
@click.option("--rules", default="current", show_default=True, help="Target rule set for the verifier.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run original and optimized models in onnxruntime and compare outputs.")
@click.option("--print-after-all", is_flag=True, help="Print every pass's summary line and op counts as it runs.")
@click.option("--int8", is_flag=True, help="Quantize to an int8 QDQ graph after fusion.")
@click.option("--calib", default="synthetic", show_default=True, metavar="DIR|NPY|NPZ|synthetic",
              help="Calibration data: a folder of images/.npy, a .npy/.npz array, or generated shapes.")
@click.option("--calib-size", default=16, show_default=True, type=click.IntRange(min=1), help="Calibration samples.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scale granularity.")
@click.option("--pow2-scales", is_flag=True, help="Round every scale up to a power of two (first-gen TIDL).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="Calibration method.")
@click.option("--target", type=click.Choice(["cpu", "tda4vm"]), default="cpu", show_default=True,
              help="cpu: fastest format in onnxruntime (u8 activations); tda4vm: symmetric int8, zero points 0.")
@click.option("--exclude-nodes", default="", metavar="A,B", help="Nodes to keep in float.")
@click.option("--eval", "eval_data", metavar="DIR|NPZ|synthetic",
              help="Data for the accuracy report (default: the calibration data; synthetic: its held-out split).")
@click.option("--eval-size", type=click.IntRange(min=1),
              help="Samples for the accuracy report (default: --calib-size).")
@click.option("--max-drop", type=float, metavar="X",
              help="Exit 1 when int8 loses more than X percentage points of mIoU (or X % of pixels change class "
                   "without labels; 100 when an int8 output is all zeros).")
@click.option("--measure", "measure_runs", type=click.IntRange(min=1), metavar="N",
              help="Also measure fp32 vs int8 in onnxruntime CPU (1 thread, median CPU time of N runs).")
@trust_model_code_option
@click.pass_context
def optimize(ctx: click.Context, model: str | None, output: str | None, passes: str | None,
             input_shapes: tuple[str, ...], report: str | None, rules: str, check: bool, print_after_all: bool,
             int8: bool, calib: str, calib_size: int, per_channel: bool, pow2_scales: bool, method: str, target: str,
             exclude_nodes: str, eval_data: str | None, eval_size: int | None, max_drop: float | None,
             measure_runs: int | None) -> None:
    """Fuse Conv-BN(-ReLU), clean up, verify, optionally quantize to int8, and write the model."""
    import json
    import warnings
    from pathlib import Path

    from segcost.optimize import optimize_model
    from segcost.reports.passes import optimize_report, render_optimize

    if output is None:
        suffix = ".int8.onnx" if int8 else ".optimized.onnx"
        output = str(Path(model).with_suffix(suffix)) if model else "deeplabv3lite" + suffix
    accuracy_path = str(Path(output).with_suffix(".accuracy.json")) if int8 else None
    plan = _check_outputs({"-o": output, "--report": report, "the accuracy report": accuracy_path},
                          {"MODEL": model, "--calib": calib, "--eval": eval_data})
    with warnings.catch_warnings():  # torch exporters' FutureWarnings are not for segcost's user
        warnings.simplefilter("ignore", FutureWarning)
        graph, _ = load_cli_graph(model, input_shapes)
    options = None
    if int8:
        from segcost.quant.quantize import QuantizeOptions

        options = QuantizeOptions(calibration=calib, calib_size=calib_size, per_channel=per_channel,
                                  pow2_scales=pow2_scales, method=method, target=target,
                                  exclude_nodes=tuple(filter(None, exclude_nodes.split(","))))
    result = optimize_model(graph, passes.split(",") if passes else None, rules=rules, check=check,
                            after_each=_print_after if print_after_all else None, int8=options, eval_data=eval_data,
                            progress=_calibration_progress, eval_size=eval_size,
                            measure_runs=measure_runs if int8 else None)
    assert result.model is not None, "optimize_model always sets the model to write"
    plan.write(output, result.model.SerializeToString())
    click.echo(render_optimize(result), nl=False)
    click.echo(f"wrote {output}")
    payload = optimize_report(result, model, output)
    if result.accuracy is not None and accuracy_path is not None:
        plan.write(accuracy_path, json.dumps(payload["int8"], indent=2) + "\n")
        click.echo(f"wrote {accuracy_path}")
    if report:
        if report.endswith((".html", ".htm")):   # the same report as a page, with the int8 SQNR chart
            from segcost.reports.html import render_optimize_html

            plan.write(report, render_optimize_html(result, model or "built-in DeepLabV3Lite"))
        else:
            plan.write(report, json.dumps(payload, indent=2) + "\n")
    if max_drop is not None and result.accuracy is not None and result.accuracy.drop() > max_drop:
        click.echo(f"int8 accuracy drop {result.accuracy.drop():.2f} percentage points exceeds --max-drop {max_drop}",
                   err=True)
        ctx.exit(1)


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


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--rules", default="current", show_default=True,
              help="Target rule set: current (= tvm-tidl), legacy (= tidl-09.02), or either by name.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@trust_model_code_option
@click.pass_context
def verify(ctx: click.Context, model: str | None, input_shapes: tuple[str, ...], rules: str, fmt: str) -> None:
    """Check depthwise/grouped consistency, the Lite rule and target support; exit 1 on findings."""
    from segcost.passes import VerifyGroupedConvPass
    from segcost.reports.passes import render_findings

    graph, _ = load_cli_graph(model, input_shapes)
    findings = VerifyGroupedConvPass(rules=rules)(graph).findings
    click.echo(render_findings(findings, fmt), nl=False)
    ctx.exit(1 if findings else 0)


@cli.command("ops")
def list_ops() -> None:
    """List the op types segcost has cost rules for, with each rule's formula."""
    from segcost.analyzer.rules import find_rule, registered_ops

    rows = [(f"{domain}::{op_type}" if domain else op_type, find_rule(domain, op_type))
            for domain, op_type in registered_ops() if domain != "ai.onnx"]
    width = max(len(name) for name, _ in rows)
    for name, rule in rows:
        doc = ((rule.__doc__ if rule is not None else "") or "").strip().splitlines()[0]
        click.echo(f"{name:{width}s} {doc}")


@cli.group()
def zoo() -> None:
    """The seed model zoo: list, export and reproduce the benchmark table (needs segcost[torch])."""


@zoo.command("list")
def zoo_list() -> None:
    """Zoo architectures with their default input size and classes."""
    from tabulate import tabulate

    from segcost.zoo.registry import all_models

    rows = [[model.name, model.family, f"{model.input_size[1]}x{model.input_size[0]}", model.num_classes,
             model.encoder_group or ""] for model in all_models().values()]
    click.echo(tabulate(rows, headers=["model", "family", "input (WxH)", "classes", "Lite group"]))


@zoo.command("export")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--input-size", metavar="WxH", help="Input width x height (default: the model's).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classes (default: the model's).")
@click.option("--exporter", type=click.Choice(["legacy", "dynamo"]), default="legacy", show_default=True)
@click.option("--keep-batchnorm", is_flag=True, help="Keep BatchNormalization nodes (for `segcost optimize`).")
def zoo_export(name: str, output: str, input_size: str | None, num_classes: int | None, exporter: str,
               keep_batchnorm: bool) -> None:
    """Build zoo model NAME (random weights) and export it to ONNX."""
    from segcost.zoo.export import export_zoo_model

    _check_outputs({"-o": output}, {})
    export_zoo_model(name, output, input_size, num_classes, exporter, keep_batchnorm)
    click.echo(f"wrote {output}", err=True)


@zoo.command("table")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the table to FILE.")
@click.option("--family", help="Only rows of this family (e.g. edgeai-torchvision).")
@click.option("--no-cache", is_flag=True, help="Recompute every row.")
def zoo_table(fmt: str, output: str | None, family: str | None, no_cache: bool) -> None:
    """The seed benchmark table beside segcost's computed GMACs (exported to ONNX and analyzed)."""
    from segcost.frontends.torch import require_torch
    from segcost.reports.zoo import render_zoo_table
    from segcost.zoo.table import MacCache, compute_table, default_cache_dir, deviation_notes, seed_rows

    require_torch()
    _check_outputs({"-o": output}, {})
    rows = [row for row in seed_rows() if family is None or row.family == family]
    if not rows:
        raise InputError(f"no seed rows of family {family!r}")
    cache = MacCache(None if no_cache else default_cache_dir())
    table = compute_table(rows, cache, progress=lambda line: click.echo(line, err=True))
    _emit(render_zoo_table(table, fmt, deviation_notes()), output)


def _check_outputs(outputs: dict, inputs: dict):
    """Every output of a command checked against every input before any work (segcost.fileio.OutputPlan)."""
    from segcost.fileio import OutputPlan

    return OutputPlan.check(outputs, inputs)


def _emit(text: str, output: str | None, protected: tuple = ()) -> None:
    if output:
        from segcost.fileio import write_atomic

        write_atomic(output, text, protected=protected)
        click.echo(f"wrote {output}", err=True)
    else:
        for chunk in [text] if isinstance(text, str) else text:
            click.echo(chunk, nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and an exit code."""
    import gc

    from segcost import interrupt

    if argv is None:
        interrupt.install()   # Ctrl-C stops even a long onnxruntime run: one line, exit 130
    # A run is short-lived and builds large acyclic structures (100k-node graphs): the cyclic
    # collector only re-scans them (a third of the load time at that size), so it is off.
    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        _run(argv)
    except KeyboardInterrupt:  # outside click's own handling (e.g. while reporting an error)
        interrupt.report_and_exit()
    finally:
        if argv is None:
            # The process ends here: frozen objects are left out of the interpreter's final
            # collection, which would otherwise walk every node of a large graph (0.8 s at 100k).
            gc.freeze()
        elif collector_was_on:
            gc.enable()   # called in-process (tests, scripts): leave the collector as it was


def _run(argv: list[str] | None) -> None:
    """Run the command line; exits with the command's code or one error line and 1/2/130."""
    from segcost.commands.quiet import quiet_third_party

    try:
        with quiet_third_party():
            code = cli.main(args=argv, prog_name="segcost", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:   # `segcost zoo`: the group's help, as click shows it
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.ClickException as error:
        # Usage errors (unknown option, bad value, missing argument) like every other error: one line, exit 2.
        ctx = getattr(error, "ctx", None)   # UsageError has one, other ClickExceptions do not
        where = f"{ctx.command_path.removeprefix('segcost').strip()}: " \
            if ctx is not None and ctx.parent is not None else ""
        click.echo(f"segcost: error: {where}{error.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("segcost: interrupted", err=True)   # Ctrl-C (click turns KeyboardInterrupt into Abort)
        sys.exit(130)
    except SegcostError as error:
        click.echo(f"segcost: error: {error}", err=True)
        sys.exit(error.exit_code)
    except (MemoryError, RecursionError) as error:
        click.echo(f"segcost: error: model too large or too deeply nested ({type(error).__name__})", err=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - last resort: never a traceback for bad input
        if os.environ.get("SEGCOST_DEBUG"):
            raise
        message = str(error).strip().splitlines()
        click.echo(f"segcost: error: {type(error).__name__}: {message[-1] if message else ''} "
                   "(set SEGCOST_DEBUG=1 for a traceback)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _add_module_commands() -> None:
    from segcost.commands import add_commands

    add_commands(cli)


_add_module_commands()

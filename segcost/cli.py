"""The `segcost` command line: parse, call the library, render, exit.

Exit codes: 0 success, 1 a budget or check failed, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import os
import sys

import click

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
@click.option("--strict", is_flag=True, help="Exit 2 when any op is unsupported (names them).")
@click.option("--target", help="Add the estimated cost on a target (tda4vm, am62a, cpu or a profile .toml).")
@click.option("--symbolic", is_flag=True, help="MACs as an exact formula of the model's symbolic input dims "
              "(found by analyzing it at a grid of sizes and checked beyond it).")
@click.option("--multiple", default=32, show_default=True, type=click.IntRange(min=1),
              help="With --symbolic: spatial dims are probed (and the formula holds) on multiples of this.")
def analyze(model: str | None, input_shapes: tuple[str, ...], fmt: str, output: str | None, top: int | None,
            group_by: str | None, by_op: bool, counted: str, strict: bool, target: str | None, symbolic: bool,
            multiple: int) -> None:
    """Per-layer MACs, FLOPs, params and bytes of MODEL (default: a built-in DeepLabV3Lite).

    MODEL is an .onnx file, or with segcost[torch] a TorchScript/ExportedProgram file
    (.pt/.pth/.pt2) or a `package.module:factory` spec (give --input-shape 1x3xHxW).
    """
    from segcost.analyzer.conventions import parse_counted

    if group_by is not None:
        from segcost.analyzer.grouping import parse_group_by

        parse_group_by(group_by)   # a bad key is an error before the model is loaded
    categories = parse_counted(counted)
    _refuse_ignored_options(fmt, top, group_by or ("op_type" if by_op else None), categories, strict, target, symbolic)
    if symbolic:
        from segcost.commands.symbolic import symbolic_report

        if model is None or _is_torch_spec(model):
            raise InputError("--symbolic needs an .onnx file with symbolic input dims")
        _emit(symbolic_report(model, input_shapes, fmt, multiple), output, protected=(model,))
        return
    graph, _ = _load_graph(model, input_shapes)
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
    if fmt == "html":
        ignored = [name for name, given in (("--group-by/--by-op", group_by), ("--count", categories)) if given]
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
    findings = None
    if fmt == "html" or target:
        from segcost.passes import VerifyGroupedConvPass

        findings = VerifyGroupedConvPass()(graph).findings
    if target:
        from segcost.optimize import estimate_on_target

        estimate = estimate_on_target(graph, target, findings)
    else:
        estimate = None
    if fmt == "html":
        from segcost.reports.html import render_html

        _emit(render_html(result, findings, target=estimate, top=top or 40), output, protected=(model,))
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
                                            graph.info.path or "model"), output, protected=(model,))
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


def _load_graph(model: str | None, input_shapes: tuple[str, ...]):
    from segcost.frontends import onnx as onnx_frontend

    shapes = onnx_frontend.parse_input_shapes(input_shapes)
    if model is None:
        from segcost.samples import DEFAULT_SAMPLE, deeplabv3lite

        proto = deeplabv3lite()
        return onnx_frontend.load_model(proto, shapes, label=DEFAULT_SAMPLE), proto
    if _is_torch_spec(model):
        from segcost.frontends.torch import load_torch_spec

        return load_torch_spec(model, shapes), None
    graph = onnx_frontend.load(model, shapes)
    return graph, None


def _is_torch_spec(model: str) -> bool:
    """A PyTorch model: a .pt/.pth/.pt2 file or `package.module:factory` (never an existing .onnx)."""
    from pathlib import Path

    if model.endswith((".pt", ".pth", ".pt2")):
        return True
    return ":" in model and not Path(model).exists() and not model.endswith(".onnx")


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Optimized ONNX file (default: MODEL.optimized.onnx / MODEL.int8.onnx beside MODEL).")
@click.option("--passes", help="Comma-separated passes to run (default: the whole pipeline).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a JSON report of passes, costs and findings.")
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
@click.option("--eval-size", type=click.IntRange(min=1), help="Samples for the accuracy report (default: --calib-size).")
@click.option("--max-drop", type=float, metavar="X",
              help="Exit 1 when int8 loses more than X mIoU points (or X % of pixels change class without labels).")
@click.pass_context
def optimize(ctx: click.Context, model: str | None, output: str | None, passes: str | None,
             input_shapes: tuple[str, ...], report: str | None, rules: str, check: bool, print_after_all: bool,
             int8: bool, calib: str, calib_size: int, per_channel: bool, pow2_scales: bool, method: str, target: str,
             exclude_nodes: str, eval_data: str | None, eval_size: int | None, max_drop: float | None) -> None:
    """Fuse Conv-BN(-ReLU), clean up, verify, optionally quantize to int8, and write the model."""
    import json
    from pathlib import Path

    from segcost.fileio import write_atomic
    from segcost.optimize import optimize_model
    from segcost.reports.passes import optimize_report, render_optimize

    graph, _ = _load_graph(model, input_shapes)
    if output is None:
        suffix = ".int8.onnx" if int8 else ".optimized.onnx"
        output = str(Path(model).with_suffix(suffix)) if model else "deeplabv3lite" + suffix
    options = None
    if int8:
        from segcost.quant.quantize import QuantizeOptions

        options = QuantizeOptions(calibration=calib, calib_size=calib_size, per_channel=per_channel,
                                  pow2_scales=pow2_scales, method=method, target=target,
                                  exclude_nodes=tuple(filter(None, exclude_nodes.split(","))))
    result = optimize_model(graph, passes.split(",") if passes else None, rules=rules, check=check,
                            after_each=_print_after if print_after_all else None, int8=options, eval_data=eval_data,
                            progress=_calibration_progress, eval_size=eval_size)
    write_atomic(output, result.model.SerializeToString(), protected=(model,))
    click.echo(render_optimize(result), nl=False)
    click.echo(f"wrote {output}")
    payload = optimize_report(result, model, output)
    if result.accuracy is not None:
        accuracy_path = str(Path(output).with_suffix(".accuracy.json"))
        write_atomic(accuracy_path, json.dumps(payload["int8"], indent=2) + "\n", protected=(model,))
        click.echo(f"wrote {accuracy_path}")
    if report:
        write_atomic(report, json.dumps(payload, indent=2) + "\n", protected=(model,))
    if max_drop is not None and result.accuracy is not None and result.accuracy.drop() > max_drop:
        click.echo(f"int8 accuracy drop {result.accuracy.drop():.2f} exceeds --max-drop {max_drop}", err=True)
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


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--rules", default="current", show_default=True, help="Target rule set: current (= tvm-tidl), legacy (= tidl-09.02), or either by name.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Fold constants and fuse first, as `segcost cost` and the deployment toolchain do.")
@click.pass_context
def verify(ctx: click.Context, model: str | None, input_shapes: tuple[str, ...], rules: str, fmt: str,
           fuse: bool) -> None:
    """Check depthwise/grouped consistency, the Lite rule and target support; exit 1 on findings."""
    from segcost.commands.target import _fused_graph
    from segcost.passes import VerifyGroupedConvPass
    from segcost.reports.passes import render_findings

    graph = _fused_graph(model, input_shapes, fuse)
    findings = VerifyGroupedConvPass(rules=rules)(graph).findings
    click.echo(render_findings(findings, fmt), nl=False)
    ctx.exit(1 if findings else 0)


@cli.command("ops")
def list_ops() -> None:
    """List the op types segcost has cost rules for, with each rule's formula."""
    from segcost.analyzer.registry import find_rule, registered_ops

    for domain, op_type in registered_ops():
        if domain == "ai.onnx":
            continue
        rule = find_rule(domain, op_type)
        doc = (rule.__doc__ or "").strip().splitlines()[0]
        click.echo(f"{(domain + '::') if domain else ''}{op_type:24s} {doc}")


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
    from segcost.zoo.table import MacCache, compute_table, default_cache_dir, seed_rows

    require_torch()
    rows = [row for row in seed_rows() if family is None or row.family == family]
    if not rows:
        raise InputError(f"no seed rows of family {family!r}")
    cache = MacCache(None if no_cache else default_cache_dir())
    table = compute_table(rows, cache, progress=lambda line: click.echo(line, err=True))
    _emit(render_zoo_table(table, fmt), output)


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

    # A run is short-lived and builds large acyclic structures (100k-node graphs): the cyclic
    # collector only re-scans them (a third of the load time at that size), so it is off.
    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        _run(argv)
    finally:
        if argv is None:
            # The process ends here: frozen objects are left out of the interpreter's final
            # collection, which would otherwise walk every node of a large graph (0.8 s at 100k).
            gc.freeze()
        elif collector_was_on:
            gc.enable()   # called in-process (tests, scripts): leave the collector as it was


def _run(argv: list[str] | None) -> None:
    """Run the command line; exits with the command's code or one error line and 1/2/130."""
    try:
        code = cli.main(args=argv, prog_name="segcost", standalone_mode=False)
    except click.exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("segcost: aborted", err=True)
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

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
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md"]), default="table",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE (atomically).")
@click.option("--top", type=click.IntRange(min=1), help="Table: only the N layers with the most MACs.")
@click.option("--by-op", is_flag=True, help="Subtotals per op type instead of per layer.")
@click.option("--strict", is_flag=True, help="Exit 2 when any op is unsupported (names them).")
def analyze(model: str | None, input_shapes: tuple[str, ...], fmt: str, output: str | None, top: int | None,
            by_op: bool, strict: bool) -> None:
    """Per-layer MACs, FLOPs, params and bytes of MODEL.onnx (default: a built-in DeepLabV3Lite)."""
    from segcost.analyzer import analyze as analyze_graph
    from segcost.frontends import onnx as onnx_frontend
    from segcost.reports.analysis import render

    shapes = onnx_frontend.parse_input_shapes(input_shapes)
    if model is None:
        from segcost.samples import DEFAULT_SAMPLE, deeplabv3lite

        graph = onnx_frontend.load_model(deeplabv3lite(), shapes, label=DEFAULT_SAMPLE)
    else:
        graph = onnx_frontend.load(model, shapes)
    result = analyze_graph(graph)
    if strict and result.coverage.unsupported:
        raise InputError("unsupported ops (--strict): " + ", ".join(result.coverage.unsupported))
    _emit(render(result, fmt, top=top, by_op=by_op), output, protected=(model,))


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


def _emit(text: str, output: str | None, protected: tuple = ()) -> None:
    if output:
        from segcost.fileio import write_atomic

        write_atomic(output, text, protected=protected)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and an exit code."""
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

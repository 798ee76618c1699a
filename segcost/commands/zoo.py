"""`segcost zoo list | export | table`: the seed zoo's models and its reproduction table.

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click

from segcost.commands.options import OptionNeedsCommand, count_type
from segcost.commands.output import check_outputs, emit
from segcost.errors import InputError


@click.group()
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


@zoo.command("export", cls=OptionNeedsCommand, needs={"--keep-batchnorm": "--exporter legacy"})
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--input-size", metavar="WxH", help="Input width x height (default: the model's).")
@click.option("--num-classes", type=count_type(1), help="Classes (default: the model's).")
@click.option("--exporter", type=click.Choice(["legacy", "dynamo"]), default="legacy", show_default=True)
@click.option("--keep-batchnorm", is_flag=True, help="Keep BatchNormalization nodes (for `segcost optimize`).")
def zoo_export(name: str, output: str, input_size: str | None, num_classes: int | None, exporter: str,
               keep_batchnorm: bool) -> None:
    """Build zoo model NAME (random weights) and export it to ONNX."""
    from segcost.zoo.export import export_zoo_model

    check_outputs({"-o": output}, {})
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
    check_outputs({"-o": output}, {})
    rows = [row for row in seed_rows() if family is None or row.family == family]
    if not rows:
        raise InputError(f"no seed rows of family {family!r}")
    cache = MacCache(None if no_cache else default_cache_dir())
    table = compute_table(rows, cache, progress=lambda line: click.echo(line, err=True))
    emit(render_zoo_table(table, fmt, deviation_notes()), output)


COMMANDS = [zoo]

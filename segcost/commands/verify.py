"""`segcost verify`: depthwise/grouped consistency, the Lite rule and target support (exit 1 on findings).

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click

from segcost.commands.options import trust_model_code_option


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3xHxW", help="Static input shape.")
@click.option("--rules", default="current", show_default=True,
              help="Target rule set: current (= tidl-11.00), legacy (= tidl-09.02), or any by name (tvm-tidl).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@trust_model_code_option
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Fold constants and fuse first, as `segcost cost` and the deployment toolchain do.")
@click.pass_context
def verify(ctx: click.Context, model: str | None, input_shapes: tuple[str, ...], rules: str, fmt: str,
           fuse: bool) -> None:
    """Check depthwise/grouped consistency, the Lite rule and target support; exit 1 on findings."""
    from segcost.commands.inputs import load_cli_graph
    from segcost.pipeline import verifier_findings
    from segcost.reports.passes import render_findings

    graph, _ = load_cli_graph(model, input_shapes)
    findings = verifier_findings(graph, rules, fuse)   # the same path as `check --verify`
    click.echo(render_findings(findings, fmt), nl=False)
    ctx.exit(1 if findings else 0)


COMMANDS = [verify]

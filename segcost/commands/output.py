"""Writing a command's report: every output checked against every input first (segcost.fileio)."""

from __future__ import annotations

import click


def check_outputs(outputs: dict, inputs: dict):
    """Every output of a command checked against every input before any work (segcost.fileio.plan.OutputPlan)."""
    from segcost.fileio.plan import OutputPlan

    return OutputPlan.check(outputs, inputs)


def emit(text: str, output: str | None, protected: tuple = ()) -> None:
    if output:
        from segcost.fileio.writes import write_atomic

        write_atomic(output, text, protected=protected)
        click.echo(f"wrote {output}", err=True)
    else:
        for chunk in [text] if isinstance(text, str) else text:
            click.echo(chunk, nl=False)

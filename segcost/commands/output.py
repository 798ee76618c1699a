"""Writing a command's report: every output checked against every input first (segcost.fileio)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import click

from segcost.errors import InputError


def check_outputs(outputs: dict, inputs: dict):
    """Every output of a command checked against every input before any work (segcost.fileio.plan.OutputPlan)."""
    from segcost.fileio.plan import OutputPlan

    return OutputPlan.check(outputs, inputs)


REPORT_SUFFIXES = {".json": "json", ".html": "html", ".htm": "html"}


def report_kind(path: str | None, label: str, kinds: dict[str, str] = REPORT_SUFFIXES) -> str | None:
    """The format a report option writes, from its suffix (any case: r.HTML is HTML); None for no path.

    Raises InputError for any other suffix: r.md or r.txt used to get JSON without a word.
    """
    if path is None:
        return None
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in kinds:
        raise InputError(f"{label} {path}: the report's format comes from its suffix: "
                         f"{', '.join(sorted(kinds))} (got {suffix or 'none'!r})")
    return kinds[suffix]


def outlive(*objects: object) -> None:
    """Keep `objects` to the end of the process, and leave them out of its clean-up.

    A command's large results (a 100k-node graph and its analysis: millions of small objects)
    would be freed one by one when the command returns, just before the process ends (~50 ms
    CPU at 100k nodes). Here they join a reference cycle, which only the cyclic collector
    frees: the CLI runs with it off and freezes every object before the interpreter's final
    collection (segcost.cli.main), so the cycle is never walked or freed, and the system
    takes the memory back at exit. Called in-process (tests, scripts) with the collector on,
    the cycle is collected as any other garbage.
    """
    held: list[object] = [*objects]
    held.append(held)


def emit(text: str | Iterable[str], output: str | None, protected: tuple = ()) -> None:
    if output:
        from segcost.fileio.writes import write_atomic

        write_atomic(output, text, protected=protected)
        click.echo(f"wrote {output}", err=True)
    else:
        for chunk in [text] if isinstance(text, str) else text:
            click.echo(chunk, nl=False)

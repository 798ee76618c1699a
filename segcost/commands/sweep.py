"""`segcost sweep`: run a design-space sweep locally or on a Ray cluster, optionally with its Pareto front."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

import click

from segcost.commands.options import (
    TRUST_FLAG,
    OptionNeedsCommand,
    count_type,
    trust_model_code_option,
    trusts_model_code,
)

NEEDS = {"--address": "--backend ray", "--pareto-cost": "--pareto or --pareto-html"}
"""Which sweep options need which (without it the option would be ignored)."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler or `kill`) stops the sweep like Ctrl-C: finished points are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("sweep", cls=OptionNeedsCommand, needs=NEEDS)
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Result table: FILE.csv (FILE.jsonl, and FILE.parquet with pyarrow, are written beside it). "
                   "Default: the spec's name with .csv in the current directory.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool on this machine; ray: Ray tasks (pip install 'segcost[ray]').")
@click.option("--address", help="Ray cluster to join ('auto' or host:port); without it the ray backend starts a "
              "local Ray instance with --workers CPUs.")
@click.option("--workers", type=count_type(1),
              help="Parallel workers (default: this machine's CPUs; with --address: the cluster's CPUs).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Finished points by content hash (default: the output's name with .cache).")
@click.option("--no-cache", is_flag=True, help="Recompute every point (results are still stored in the cache).")
@click.option("--retry-errors", is_flag=True, help="Recompute points whose cached result is an error row.")
@click.option("--max-points", type=count_type(0),
              help="Compute at most N points in this run; re-run to continue with the rest.")
@click.option("--pareto", is_flag=True, help="Print the Pareto front (cost vs published mIoU of seed-table models).")
@click.option("--pareto-cost", type=click.Choice(["gmacs", "latency"]), default="gmacs", show_default=True,
              help="Cost axis of the front; latency gives one front per target.")
@click.option("--pareto-html", type=click.Path(dir_okay=False),
              help="Write the Pareto fronts as a self-contained HTML page (inline SVG) to FILE.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@trust_model_code_option
def sweep(spec: str, output: str | None, backend: str, address: str | None, workers: int | None,
          cache_dir: str | None, no_cache: bool, retry_errors: bool, max_points: int | None, pareto: bool,
          pareto_cost: str, pareto_html: str | None, quiet: bool) -> None:
    """Export and analyze every point of the sweep SPEC (TOML) and write one result table.

    Points are models × input sizes × width multipliers × classes × precisions × targets;
    an interrupted sweep resumes where it stopped (finished points are cached by content
    hash). A point that fails becomes an error row; the sweep goes on. See
    examples/sweep.toml for the spec format.
    """
    import gc

    from segcost.errors import InputError
    from segcost.fileio.plan import OutputPlan
    from segcost.sweep.driver import SweepInterrupted, SweepOptions, run_sweep
    from segcost.sweep.spec import load_spec
    from segcost.sweep.store import table_paths

    gc.enable()  # the CLI turns the collector off for one-shot analyses; a sweep runs for long
    sweep_spec = load_spec(spec)
    factories = [entry.model for entry in sweep_spec.models if entry.is_factory]
    if factories and not trusts_model_code():
        raise InputError(f"{spec}: model {factories[0]!r} is a package.module:factory spec, which imports and runs "
                         f"Python code; pass {TRUST_FLAG} if you trust it")
    if (pareto or pareto_html) and pareto_cost == "latency" and "latency" not in sweep_spec.measures:
        raise InputError(f"{spec}: --pareto-cost latency needs \"latency\" in the spec's measures")
    output = output or f"{Path(spec).stem}.csv"
    plan = OutputPlan.check({**{f"-o ({kind})": path for kind, path in table_paths(output).items()},
                             "--pareto-html": pareto_html},
                            {"SPEC": spec, "a target profile": [target for target in sweep_spec.targets if target]})
    options = SweepOptions(backend=backend, address=address, workers=workers,
                           cache_dir=Path(cache_dir) if cache_dir else None, use_cache=not no_cache,
                           retry_errors=retry_errors, max_points=max_points)
    try:
        with _sigterm_as_interrupt():
            summary = run_sweep(sweep_spec, output, options, progress_stream=None if quiet else sys.stderr)
    except SweepInterrupted as interrupted:
        click.echo(f"segcost: {interrupted}", err=True)
        raise click.exceptions.Exit(interrupted.exit_code) from None
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(summary.describe(), err=True)
    click.echo("wrote " + ", ".join(str(path) for path in summary.outputs), err=True)
    if pareto or pareto_html:
        from segcost.sweep.pareto import pareto_fronts
        from segcost.sweep.report import render_pareto_html, render_pareto_text

        fronts = pareto_fronts(summary.rows, pareto_cost)
        if pareto:
            click.echo(render_pareto_text(fronts), nl=False)
        if pareto_html:
            plan.write(pareto_html, render_pareto_html(fronts, Path(spec).name, summary.notes))
            click.echo(f"wrote {pareto_html}", err=True)


COMMANDS = [sweep]

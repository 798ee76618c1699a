"""The `segcost` command line: the click group, and errors mapped to exit codes.

Every command is a module of segcost.commands (added by `add_commands`); this module only
assembles them. Exit codes: 0 success, 1 a budget or check failed, 2 bad input (one line on
stderr), 130 interrupted.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping

import click

from segcost.errors import SegcostError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segcost")
def cli() -> None:
    """Exact per-layer cost of segmentation networks for embedded accelerators."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and an exit code."""
    import gc

    from segcost import interrupt

    if argv is None:
        one_blas_thread(os.environ)
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


def one_blas_thread(environ: MutableMapping[str, str]) -> None:
    """Cap numpy's OpenBLAS at one thread for this process unless the user chose a count.

    segcost does no BLAS-sized linear algebra itself (model arithmetic runs in onnxruntime,
    with its own thread settings; numpy does elementwise work and a few tiny solves). OpenBLAS
    starts a thread per core when numpy is imported, and their start-up spin is CPU time the
    run pays for nothing: `import numpy` 0.09 -> 0.05 s CPU on this project's 2-core machine,
    `segcost analyze` on a small model 0.19 -> 0.14 s (scipy-openblas 0.3.31). Must run before
    numpy is imported (segcost.cli imports neither numpy nor onnx; tests/test_lean_paths.py).
    """
    environ.setdefault("OPENBLAS_NUM_THREADS", "1")


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
        if _is_ort_allocation_failure(error):   # a kernel's scratch that segcost.targets.workspace does not model
            click.echo(f"segcost: error: onnxruntime could not allocate memory for the run "
                       f"({_ort_allocation_detail(str(error))}); the model needs more memory than this machine "
                       f"gives it", err=True)
            sys.exit(2)
        # Bad input is refused where it is read, with a reason (e.g. segcost.fileio.numbers); an exception
        # that gets here is a check segcost lacks: say so, not "ValueError: ..." as if it were the reason.
        click.echo(f"segcost: error: internal error, please report it ({type(error).__name__}: "
                   f"{message[-1] if message else ''}; set SEGCOST_DEBUG=1 for a traceback)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _is_ort_allocation_failure(error: Exception) -> bool:
    """An onnxruntime error (its pybind module, not imported here) saying an allocation failed."""
    return type(error).__module__.startswith("onnxruntime") and "Failed to allocate memory" in str(error)


def _ort_allocation_detail(text: str) -> str:
    """'requested N bytes' from onnxruntime's 'Failed to allocate memory for requested buffer of size N'."""
    found = re.search(r"requested buffer of size (\d+)", text)
    return f"requested {int(found.group(1)):,} bytes" if found else "an allocation failed"


def _add_module_commands() -> None:
    from segcost.commands import add_commands

    add_commands(cli)


_add_module_commands()

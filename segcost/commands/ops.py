"""`segcost ops`: every op with a cost rule, and its formula.

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click


@click.command("ops")
def list_ops() -> None:
    """List the op types segcost has cost rules for, with each rule's formula."""
    from segcost.analyzer.rules import find_rule, registered_ops

    rows = [(f"{domain}::{op_type}" if domain else op_type, find_rule(domain, op_type))
            for domain, op_type in registered_ops() if domain != "ai.onnx"]
    width = max(len(name) for name, _ in rows)
    for name, rule in rows:
        doc = ((rule.__doc__ if rule is not None else "") or "").strip().splitlines()[0]
        click.echo(f"{name:{width}s} {doc}")


COMMANDS = [list_ops]

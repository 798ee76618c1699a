"""`segcost ops`: every op with a cost rule, and its formula.

The command parses its options, calls the library and renders the result objects (segcost.reports).
"""

from __future__ import annotations

import click


@click.command("ops")
def list_ops() -> None:
    """List the op types segcost has cost rules for, with the --count category of their flops and each rule's
    formula ("-": none; a MAC layer's bias adds are "bias", its other parts as its formula says)."""
    from segcost.analyzer.conventions import CATEGORIES, op_category
    from segcost.analyzer.rules import find_rule, registered_ops

    rows = [(f"{domain}::{op_type}" if domain else op_type, op_category(domain, op_type) or "-",
             find_rule(domain, op_type)) for domain, op_type in registered_ops() if domain != "ai.onnx"]
    width = max(len(name) for name, _, _ in rows)
    category_width = max(map(len, CATEGORIES))
    for name, category, rule in rows:
        doc = ((rule.__doc__ if rule is not None else "") or "").strip().splitlines()[0]
        click.echo(f"{name:{width}s} {category:{category_width}s} {doc}")


COMMANDS = [list_ops]

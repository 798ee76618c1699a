"""Cost rules: importing this package registers every rule module; look rules up here.

The registry (segcost.analyzer.registry) holds the decorator and the table and imports no
rule module, so rule modules import it without a cycle; this package imports them all and
then answers lookups.
"""

from segcost.analyzer.registry import Rule, registered_keys, registered_rule
from segcost.analyzer.rules import (  # noqa: F401 - importing registers the rules
    attention,
    contrib,
    conv,
    data_movement,
    einsum,
    elementwise,
    matmul,
    normalization,
    regions,
    spatial,
)


def find_rule(domain: str, op_type: str) -> Rule | None:
    """The cost rule of (domain, op_type), or None when no rule exists (the op is then unsupported)."""
    return registered_rule(domain, op_type)


def registered_ops() -> list[tuple[str, str]]:
    """(domain, op_type) of every op with a cost rule, sorted (`segcost ops`)."""
    return registered_keys()

"""Cost rules; importing this package registers every rule module."""

from segcost.analyzer.rules import conv, data_movement, elementwise, matmul, spatial  # noqa: F401

"""Cost rules; importing this package registers every rule module."""

from segcost.analyzer.rules import (  # noqa: F401
    attention, conv, data_movement, einsum, elementwise, matmul, normalization, spatial,
)

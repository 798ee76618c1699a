"""Error types that the CLI turns into one line on stderr and an exit code.

Every failure caused by what the user gave (file, shape, option) is an `InputError`
(exit 2). Budget failures are not errors; the `check` command returns exit 1 itself.
"""


class SegcostError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 2


class InputError(SegcostError):
    """The model file, its external data, or a command-line value is unusable."""


class GraphError(InputError):
    """The graph is structurally invalid (cycle, dangling tensor, duplicate output)."""


class ShapeError(InputError):
    """A shape needed for an exact count cannot be resolved (names the tensor and dim)."""

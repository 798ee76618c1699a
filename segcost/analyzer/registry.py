"""Registry of per-op cost rules, keyed by (domain, op_type).

A rule is a small function ``rule(op: OpView) -> OpCost`` whose one-line docstring states
its formula. Rules receive shapes, never tensor data, and return exact Python ints.
Registering the same op twice is an error (as in torch's flop_counter), so a rule can never
be silently replaced.
"""

from __future__ import annotations

from math import prod
from typing import Any, Callable, NamedTuple

from segcost.errors import ShapeError
from segcost.ir import Node, Shape

COUNTED = "counted"
ZERO_BY_CONVENTION = "zero_by_convention"
UNSUPPORTED = "unsupported"
SHAPE_UNKNOWN = "shape_unknown"

DEFAULT_DOMAINS = ("", "ai.onnx")


# OpView and OpCost are immutable NamedTuples rather than frozen dataclasses: one of each is
# made per node, and a frozen dataclass's __init__ (object.__setattr__ per field) was a tenth
# of the analysis time of a 100k-node graph.
class OpView(NamedTuple):
    """What a cost rule sees of one node: attributes, names, shapes and dtypes."""

    key: str
    node: Node
    input_shapes: tuple[Shape | None, ...]
    output_shapes: tuple[Shape | None, ...]
    constant_inputs: tuple[bool, ...] = ()

    @property
    def op_type(self) -> str:
        return self.node.op_type

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def has_input(self, index: int) -> bool:
        return index < len(self.node.inputs) and bool(self.node.inputs[index])

    def input_shape(self, index: int) -> tuple[int, ...]:
        """Concrete shape of input `index`; ShapeError names the tensor and dim otherwise."""
        if not self.has_input(index):
            raise ShapeError(f"node {self.key!r} ({self.op_type}): required input #{index} is missing")
        return _concrete(self.input_shapes[index], self.node.inputs[index], self)

    def output_shape(self, index: int = 0) -> tuple[int, ...] | None:
        """Concrete shape of output `index`, or None when inference could not give one."""
        if index >= len(self.output_shapes) or self.output_shapes[index] is None:
            return None
        shape = self.output_shapes[index]
        return shape if all(isinstance(dim, int) and dim >= 0 for dim in shape) else None

    def output_elements(self, index: int = 0) -> int | None:
        shape = self.output_shape(index)
        return None if shape is None else prod(shape)


# Rules run only once every graph input is static (analyze checks first), so an open shape here
# comes from an op whose output segcost.shapes cannot compute — not from missing input sizes.
_NOT_COMPUTABLE = ("segcost cannot compute it from the static input shapes (an op upstream has no shape "
                   "inference, e.g. a custom op); declare that op's output shape in the file's value_info")


def _concrete(shape: Shape | None, tensor: str, op: OpView) -> tuple[int, ...]:
    if shape is None:
        raise ShapeError(f"{_where(op, tensor)}: shape unknown: {_NOT_COMPUTABLE}")
    for axis, dim in enumerate(shape):
        if not isinstance(dim, int) or dim < 0:
            label = dim if dim is not None else "?"
            raise ShapeError(f"{_where(op, tensor)}: dimension {axis} is {label!r}, not a number: {_NOT_COMPUTABLE}")
    return shape  # type: ignore[return-value]


def _where(op: OpView, tensor: str) -> str:
    return f"node {op.key!r} ({op.op_type}) input {tensor!r}"


class OpCost(NamedTuple):
    """Result of one rule. `flops` are the non-MAC elementary operations (2·macs is added later)."""

    macs: int = 0
    flops: int = 0
    status: str = COUNTED
    kind: str = "other"
    group: int | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None  # set by rules that derive it themselves
    notes: tuple[str, ...] = ()


Rule = Callable[[OpView], OpCost]
_RULES: dict[tuple[str, str], Rule] = {}


def cost_rule(*op_types: str, domains: tuple[str, ...] = DEFAULT_DOMAINS) -> Callable[[Rule], Rule]:
    """Register `rule` for each op type (and domain). A duplicate registration raises."""

    def register(rule: Rule) -> Rule:
        for op_type in op_types:
            for domain in domains:
                if (domain, op_type) in _RULES:
                    raise ValueError(f"cost rule for {domain or 'ai.onnx'}::{op_type} registered twice")
                _RULES[(domain, op_type)] = rule
        return rule

    return register


def find_rule(domain: str, op_type: str) -> Rule | None:
    _load_rules()
    return _RULES.get((domain, op_type))


def registered_ops() -> list[tuple[str, str]]:
    _load_rules()
    return sorted(_RULES)


_rules_loaded = False


def _load_rules() -> None:
    # Importing the rule modules registers them; done lazily so that importing the
    # registry (e.g. from a rule module) has no import cycle. The flag spares the import
    # machinery on every lookup (a tenth of a second per 100k nodes).
    global _rules_loaded
    if not _rules_loaded:
        from segcost.analyzer import rules  # noqa: F401

        _rules_loaded = True

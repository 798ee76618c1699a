"""Registry of per-op cost rules, keyed by (domain, op_type).

A rule is a small function ``rule(op: OpView) -> OpCost`` whose one-line docstring states
its formula. Rules receive shapes, never tensor data, and return exact Python ints; an
operand that some opsets give as an attribute and others as an input (Clip's bounds,
Reduce axes, Resize scales) is read with ``op.operand(name)``, which goes through
`segcost.ir.opforms`, never from ``op.attr``. Registering the same op twice is an error
(as in torch's flop_counter), so a rule can never be silently replaced.

Degenerate attributes (strides or dilations 0, a group that does not divide the channels,
a negative Resize scale) are input errors: for the op types `segcost.ir.opchecks` knows, the
registered rule first runs `check_node`, so every rule of those ops is guarded in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from math import prod
from typing import Any, NamedTuple

from segcost.errors import ShapeError
from segcost.ir import Graph, Node, Shape, is_static_shape
from segcost.ir.opchecks import CHECKED_OP_TYPES, check_node
from segcost.ir.opforms import Operand, opset_of, read_operand
from segcost.shapes import symbolic_inputs
from segcost.shapes.branches import BRANCH_TAKEN, undecided_nested
from segcost.shapes.export_size import size_change_advice

COUNTED = "counted"
ZERO_BY_CONVENTION = "zero_by_convention"
UNSUPPORTED = "unsupported"
SHAPE_UNKNOWN = "shape_unknown"

DEFAULT_DOMAINS = ("", "ai.onnx")


# OpView and OpCost are immutable NamedTuples rather than frozen dataclasses: one of each is
# made per node, and a frozen dataclass's __init__ (object.__setattr__ per field) was a tenth
# of the analysis time of a 100k-node graph.
class OpView(NamedTuple):
    """What a cost rule sees of one node: attributes, operands, names, shapes and dtypes.

    `graph` is the IR the node belongs to; `operand` reads constant operands through it.
    """

    key: str
    node: Node
    input_shapes: tuple[Shape | None, ...]
    output_shapes: tuple[Shape | None, ...]
    constant_inputs: tuple[bool, ...] = ()
    graph: Graph | None = None

    @property
    def op_type(self) -> str:
        return self.node.op_type

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def operand(self, name: str) -> Operand:
        """Operand `name` in the form the model's opset uses (`segcost.ir.opforms.read_operand`).

        Raises:
            InputError: a form the opset does not have; ValueError when the view has no graph.
        """
        if self.graph is None:
            raise ValueError(f"node {self.key!r}: an OpView built without its graph cannot read operands")
        return read_operand(self.graph, self.key, name)

    @property
    def opset(self) -> int:
        """Opset version of the node's domain (0 when the view has no graph or the domain is not imported)."""
        return opset_of(self.graph, self.node.domain) if self.graph is not None else 0

    @property
    def where(self) -> str:
        """The text "node 'KEY' (OpType)" that error messages start with."""
        return f"node {self.key!r} ({self.op_type})"

    def has_input(self, index: int) -> bool:
        return index < len(self.node.inputs) and bool(self.node.inputs[index])

    def input_shape(self, index: int) -> tuple[int, ...]:
        """Concrete shape of input `index`; ShapeError names the tensor and dim otherwise."""
        if not self.has_input(index):
            raise ShapeError(f"node {self.key!r} ({self.op_type}): required input #{index} is missing")
        return _concrete(self.input_shapes[index], self.node.inputs[index], self)

    def output_shape(self, index: int = 0) -> tuple[int, ...] | None:
        """Concrete shape of output `index`, or None when inference could not give one."""
        shape = self.output_shapes[index] if index < len(self.output_shapes) else None
        return shape if is_static_shape(shape) and min(shape, default=0) >= 0 else None

    def output_elements(self, index: int = 0) -> int | None:
        shape = self.output_shape(index)
        return None if shape is None else prod(shape)


# Rules run only once every graph input is static (analyze checks first), so an open shape here
# comes from an op whose output segcost.shapes cannot compute — not from missing input sizes.
_NOT_COMPUTABLE = ("segcost cannot compute it from the static input shapes (an op upstream has no shape "
                   "inference, e.g. a custom op); declare that op's output shape in the file's value_info")


def baked_size_advice(op: OpView) -> str:
    """"; the model was exported for ...: ..." for a shape error at `op` after --input-shape changed a size the
    file fixes, naming a size fixed at export upstream of its inputs only when one is found
    (shapes.export_size.size_change_advice), else ""."""
    return size_change_advice(op.graph, op.node.inputs)


def _not_computable(op: OpView) -> str:
    """Why a shape is open: a symbolic model input (commands that do not check inputs first: verify, cost);
    with --input-shape away from the export's sizes, that (baked_size_advice); otherwise an op without shape
    inference."""
    symbolic = symbolic_inputs(op.graph) if op.graph is not None else []
    if symbolic:
        name, axis, symbol = symbolic[0]
        shape = op.graph.shape(name) if op.graph is not None else None
        example = "x".join(str(dim) if isinstance(dim, int) and dim > 0 else "1" for dim in shape or ())
        example = example or "1x3xHxW"
        return (f"the model's input {name!r} has symbolic dimension {symbol!r} at axis {axis}; pass "
                f"--input-shape {name}={example} with your sizes")
    advice = baked_size_advice(op)
    return f"shape inference stopped upstream at the given input shape{advice}" if advice else _NOT_COMPUTABLE


def _stopped_at(graph: Graph | None, tensor: str) -> str:
    """"; shape inference stopped at node K (Op), whose inputs are ...", the first node upstream of `tensor`
    whose inputs all have static shapes but whose output has none (what made the shape open), or "";
    after --input-shape changed a size the file fixes, with what that means (size_change_advice at that node)."""
    if graph is None:
        return ""
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        key = graph.producer(stack.pop())
        if key is None or key in seen:
            continue
        seen.add(key)
        node = graph.node(key)
        open_inputs = [name for name in node.inputs if name and not is_static_shape(graph.shape(name))
                       and graph.producer(name) is not None]
        if open_inputs:
            stack.extend(open_inputs)
            continue
        inputs = ", ".join(f"{name} {list(graph.shape(name) or ())}" if graph.shape(name) is not None else f"{name} ?"
                           for name in node.inputs if name)
        why = (f"a {node.domain} op, which has no shape inference here: declare its output shape in value_info"
               if node.domain not in ("", "ai.onnx") else _if_why(node) if node.op_type == "If" else
               "its inputs do not fit the op's shape rules (check the input sizes) "
               "or a value it reads is not a constant")
        return (f"; shape inference stopped at node {key!r} ({node.op_type}; inputs {inputs}): {why}"
                f"{size_change_advice(graph, node.inputs)}")
    return ""


def _if_why(node: Node) -> str:
    """Why an If's output has no static shape: its branches give different ones and its condition is not known."""
    taken = node.meta.get(BRANCH_TAKEN)
    if taken:   # shapes.branches decided it; what stops inference is inside the branch
        nested = "; ".join(f"the If computing {output!r} on {condition!r}"
                           for output, condition in undecided_nested(node))
        inside = (f"{nested}, whose condition is not known from the input shapes" if nested else
                  "a node (a Loop, say) whose output shape segcost cannot follow")
        return (f"its condition is known at these input shapes ({taken} runs), but that branch holds {inside}; "
                "declare the If's output shape in value_info, or export the model with the branch decided")
    tensors = node.meta.get("subgraph_tensors") or {}
    shapes = []
    for attribute in ("then_branch", "else_branch"):
        branch = node.attrs.get(attribute)
        outputs = [value.name for value in branch.output] if branch is not None else []
        found = [tensors[name].shape if name in tensors else None for name in outputs]
        shapes.append(f"{attribute} " + ", ".join(
            "[" + ", ".join(str(dim) if isinstance(dim, int) else "?" for dim in shape) + "]" if shape is not None
            else "?" for shape in found))
    condition = node.inputs[0] if node.inputs else "?"
    return (f"its branches give different shapes ({'; '.join(shapes)}) and its condition {condition!r} is computed "
            "at run time, so which branch runs is not known from the input shapes: declare the If's output shape "
            "in value_info, or export the model with the branch decided")


def _opened(op: OpView, tensor: str) -> str:
    """_stopped_at's note when it explains an open shape better than _not_computable (static inputs)."""
    stopped = _stopped_at(op.graph, tensor)
    return stopped if stopped and op.graph is not None and not symbolic_inputs(op.graph) else ""


def _concrete(shape: Shape | None, tensor: str, op: OpView) -> tuple[int, ...]:
    if shape is None:
        stopped = _opened(op, tensor)
        if stopped:
            raise ShapeError(f"{_where(op, tensor)}: shape unknown{stopped}")
        raise ShapeError(f"{_where(op, tensor)}: shape unknown: {_not_computable(op)}")
    for axis, dim in enumerate(shape):
        if not isinstance(dim, int) or dim < 0:
            label = dim if dim is not None else "?"
            stopped = _opened(op, tensor)
            raise ShapeError(f"{_where(op, tensor)}: dimension {axis} is {label!r}, not a number"
                             f"{stopped or ': ' + _not_computable(op)}")
    return shape  # type: ignore[return-value]


def _where(op: OpView, tensor: str) -> str:
    return f"node {op.key!r} ({op.op_type}) input {tensor!r}"


class OpCost(NamedTuple):
    """Result of one rule. `flops` are the non-MAC elementary operations (2·macs is added later).

    A rule that gives MACs says which part of its `flops` is what (analyzer.conventions counts them by
    category): `bias_flops` its bias adds (a Conv's or Gemm's bias, an attention's projection bias), and
    `category_flops` the rest, as (category, flops) pairs of conventions.CATEGORIES — the elementary ops of
    the standalone op they stand for (a fused attention's softmax "activation", its scale and mask adds
    "elementwise"; a DeformConv's bilinear sampling "resize"; SkipLayerNormalization's skip add
    "elementwise"). What they leave is in the category of the rule's op type (conventions.op_category):
    a rule of an op in a category gives only the parts of other categories, or none.
    """

    macs: int = 0
    flops: int = 0
    status: str = COUNTED
    kind: str = "other"
    group: int | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None  # set by rules that derive it themselves
    notes: tuple[str, ...] = ()
    bias_flops: int = 0
    category_flops: tuple[tuple[str, int], ...] = ()


Rule = Callable[[OpView], OpCost]
_RULES: dict[tuple[str, str], Rule] = {}
_PURE: set[tuple[str, str]] = set()


def cost_rule(*op_types: str, domains: tuple[str, ...] = DEFAULT_DOMAINS,
              pure: bool = False) -> Callable[[Rule], Rule]:
    """Register `rule` for each op type (and domain). A duplicate registration raises.

    `pure`: the rule's result depends only on the node's op type, attributes, input and output
    shapes, which inputs are given and which are constant (never on constant values, names
    or other graph state, except in the text of an error it raises). The analysis then
    computes it once per distinct such signature (see is_pure_rule).
    """

    def register(rule: Rule) -> Rule:
        for op_type in op_types:
            for domain in domains:
                if (domain, op_type) in _RULES:
                    raise ValueError(f"cost rule for {domain or 'ai.onnx'}::{op_type} registered twice")
                _RULES[(domain, op_type)] = _checked(rule) if op_type in CHECKED_OP_TYPES else rule
                if pure and (op_type not in CHECKED_OP_TYPES or op_type in PURE_CHECKED_OP_TYPES):
                    _PURE.add((domain, op_type))
        return rule

    return register


# Op types whose opchecks.check_node reads only attributes and shapes (not constant operands,
# as Resize's and TopK's checks do), so the checked rule stays pure when the rule is.
PURE_CHECKED_OP_TYPES = frozenset({"Conv", "ConvInteger", "QLinearConv", "FusedConv", "ConvTranspose", "MaxPool",
                                   "AveragePool", "LpPool", "GroupNormalization"})


def is_pure_rule(domain: str, op_type: str) -> bool:
    """Whether the rule of (domain, op_type) was registered `pure` (see cost_rule)."""
    return (domain, op_type) in _PURE


def _checked(rule: Rule) -> Rule:
    """`rule` preceded by the degenerate-attribute checks of segcost.ir.opchecks (same docstring)."""

    @wraps(rule)
    def checked_rule(op: OpView) -> OpCost:
        if op.graph is not None:
            check_node(op.graph, op.key)
        return rule(op)

    return checked_rule


def registered_rule(domain: str, op_type: str) -> Rule | None:
    """The rule registered for (domain, op_type) so far; segcost.analyzer.rules.find_rule, which
    imports every rule module first, is what callers want."""
    return _RULES.get((domain, op_type))


def registered_keys() -> list[tuple[str, str]]:
    """(domain, op_type) of every rule registered so far (see registered_rule)."""
    return sorted(_RULES)

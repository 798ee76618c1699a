"""Declared shapes (what the file says) against computed ones (what inference derives).

A model file may carry `value_info` and graph-output shapes written by an old exporter or
left behind by a hand edit (the model re-exported at another size, an input dim changed).
segcost computes every shape it can from the graph inputs; a declared shape is used only
where computation leaves a tensor open, and every disagreement is recorded, never resolved
in favour of the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from segcost.ir import Graph, Shape, TensorInfo


@dataclass(frozen=True)
class ShapeConflict:
    """A tensor whose declared shape disagrees with the computed one (the computed one is used).

    Attributes:
        tensor: tensor name.
        declared: the shape in the file (value_info or graph output), dims as written.
        computed: the shape shape inference derived from the graph inputs.
    """

    tensor: str
    declared: Shape
    computed: Shape

    def message(self) -> str:
        return (f"tensor {self.tensor!r}: the file declares shape {_text(self.declared)}, computed "
                f"{_text(self.computed)}; the computed shape is used")


def _text(shape: Shape) -> str:
    return "[" + ", ".join(str(dim) if dim is not None else "?" for dim in shape) + "]"


def disagree(declared: Shape | None, computed: Shape | None) -> bool:
    """True when both shapes are known and differ in rank or in a dimension both give as a number.

    A symbolic or missing dim (None, a name, or the 0/-1 some exporters write for "unknown")
    agrees with anything.
    """
    if declared is None or computed is None:
        return False
    if len(declared) != len(computed):
        return True
    return any(isinstance(a, int) and isinstance(b, int) and a > 0 and b >= 0 and a != b
               for a, b in zip(declared, computed))


def fill_open(graph: Graph, declared: dict[str, TensorInfo]) -> None:
    """Give tensors that computation left open the shape the file declares (when it is static)."""
    for name, info in declared.items():
        if name in graph.initializers or not info.is_static:
            continue
        known = graph.tensors.get(name)
        if known is None or not known.is_static:
            graph.tensors[name] = TensorInfo(name, (known.dtype if known else 0) or info.dtype, info.shape)


def record_conflicts(graph: Graph, declared: dict[str, TensorInfo]) -> list[ShapeConflict]:
    """Add a ShapeConflict to `graph.info.shape_conflicts` for each declared shape the computation contradicts.

    Graph inputs are not compared (their shapes are the computation's starting point). Returns
    the conflicts found in this call; a tensor already recorded is not recorded twice.
    """
    recorded = {conflict.tensor for conflict in graph.info.shape_conflicts}
    inputs = set(graph.inputs)
    found = []
    for name, info in declared.items():
        if name in inputs or name in recorded or name in graph.initializers:
            continue
        computed = graph.tensors.get(name)
        if computed is not None and info.shape is not None and computed.shape is not None \
                and disagree(info.shape, computed.shape):
            found.append(ShapeConflict(name, info.shape, computed.shape))
    graph.info.shape_conflicts.extend(found)
    return found

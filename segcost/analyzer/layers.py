"""An analysis' per-layer results, stored column-wise; LayerCost objects are made only when asked for.

A 100k-node graph has 100k layers, but only a handful of distinct rule outcomes (a
`LayerSignature`: op type, kind, kernel, shapes, MACs, FLOPs, status ...). The walk
(analyzer.analyze) records per layer only what differs between layers of one signature —
name, inputs, outputs, params, weight bytes, activation bytes — and the index of its
signature. One LayerCost (a dataclass holding seven fresh lists) per layer, and the totals,
subtotals and reports reading them back one by one, were ~0.45 s CPU of `segcost analyze
--format json` on a 100k-node chain (of ~1.3 s for the analysis and the JSON); the JSON,
table and CSV reports, the totals and the subtotals need none of them: they read `column()`
and `signatures`.

`LayerTable` is a list of LayerCost for every caller: indexing, iterating, `len`, slicing,
`==` with a list, and list mutation all work, and the first access that needs an object
makes all of them at once (`materialized` is then True). From then on the objects are the
data — a caller may change them, and `column()` and the reports read the changed values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple, overload

# LayerCost fields that vary between layers of one signature, in the table's column order
ROW_FIELDS = ("name", "inputs", "outputs", "params", "weight_bytes", "activation_bytes")


@dataclass
class LayerCost:
    """One layer (node) of an analysis: its shapes and exact counts (the JSON report's `layers` rows)."""

    name: str
    op_type: str
    kind: str
    group: int | None
    kernel: list[int] | None
    stride: list[int] | None
    inputs: list[str]
    outputs: list[str]
    input_shapes: list[list[int | str | None] | None]
    output_shape: list[int] | None
    macs: int
    flops: int
    bias_flops: int
    params: int
    weight_bytes: int
    activation_bytes: int
    status: str
    domain: str = ""


class LayerSignature(NamedTuple):
    """The LayerCost fields shared by every layer of one rule outcome (all immutable: tuples, not lists)."""

    op_type: str
    kind: str
    group: int | None
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    input_shapes: tuple[tuple[int | str | None, ...] | None, ...]
    output_shape: tuple[int, ...] | None
    macs: int
    flops: int
    bias_flops: int
    status: str
    domain: str


SIGNATURE_FIELDS = LayerSignature._fields


def make_layer(signature: LayerSignature, name: str, inputs: Iterable[str], outputs: Iterable[str], params: int,
               weight_bytes: int, activation_bytes: int) -> LayerCost:
    """The LayerCost of one row: the signature's values, with a fresh list for each list field."""
    op_type, kind, group, kernel, stride, input_shapes, output_shape = signature[:7]
    macs, flops, bias_flops, status, domain = signature[7:]
    return LayerCost(  # positional, in the field order: a keyword call costs more per layer
        name, op_type, kind, group, None if kernel is None else list(kernel), None if stride is None else list(stride),
        list(inputs), list(outputs), [None if shape is None else list(shape) for shape in input_shapes],
        None if output_shape is None else list(output_shape), macs, flops, bias_flops, params, weight_bytes,
        activation_bytes, status, domain)


class LayerTable(MutableSequence[LayerCost]):
    """Per-layer results of one analysis in columns, read as a list of LayerCost (see the module docstring).

    Attributes:
        names, inputs, outputs, params, weight_bytes, activation_bytes: one entry per layer
            (inputs/outputs as tuples of tensor names; bytes and params exact ints).
        signature_index: per layer, the index of its LayerSignature in `signatures`.
        signatures: the distinct LayerSignatures.
    These are filled by the walk and not read once `materialized`.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.inputs: list[tuple[str, ...]] = []
        self.outputs: list[tuple[str, ...]] = []
        self.params: list[int] = []
        self.weight_bytes: list[int] = []
        self.activation_bytes: list[int] = []
        self.signature_index: list[int] = []
        self.signatures: list[LayerSignature] = []
        self._layers: list[LayerCost] | None = None
        self._spread: dict[str, list] = {}   # column() of signature fields, kept while no object exists

    @property
    def materialized(self) -> bool:
        """Whether the LayerCost objects exist (then they, not the columns, are the data)."""
        return self._layers is not None

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Per layer (name, inputs, outputs, params, weight_bytes, activation_bytes, signature index).

        Only before `materialized`.
        """
        return zip(self.names, self.inputs, self.outputs, self.params, self.weight_bytes, self.activation_bytes,
                   self.signature_index)

    def column(self, field: str) -> list:
        """The value of LayerCost field `field` for every layer, in order (lists read as tuples before
        `materialized`). Raises AttributeError for a name that is no LayerCost field."""
        if self._layers is not None:
            return list(map(attrgetter(field), self._layers))
        if field in ROW_FIELDS:
            return list(getattr(self, "names" if field == "name" else field))
        spread = self._spread.get(field)
        if spread is None:   # a signature field, spread over the layers once (a copy is cheap)
            if field not in SIGNATURE_FIELDS:
                raise AttributeError(f"LayerCost has no field {field!r}")
            position = SIGNATURE_FIELDS.index(field)
            values = [signature[position] for signature in self.signatures]
            spread = self._spread[field] = list(map(values.__getitem__, self.signature_index))
        return list(spread)

    def _materialize(self) -> list[LayerCost]:
        layers = self._layers
        if layers is None:
            signatures = self.signatures
            layers = self._layers = [make_layer(signatures[index], name, inputs, outputs, params, weight_bytes,
                                                activation_bytes)
                                     for name, inputs, outputs, params, weight_bytes, activation_bytes, index
                                     in self.rows()]
            # the objects are the data from now on: drop the columns
            self.names, self.inputs, self.outputs, self.params = [], [], [], []
            self.weight_bytes, self.activation_bytes, self.signature_index = [], [], []
            self._spread = {}
        return layers

    # -- the list interface -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._layers) if self._layers is not None else len(self.names)

    @overload
    def __getitem__(self, index: int) -> LayerCost: ...

    @overload
    def __getitem__(self, index: slice) -> list[LayerCost]: ...

    def __getitem__(self, index):
        return self._materialize()[index]

    def __setitem__(self, index, value) -> None:
        self._materialize()[index] = value

    def __delitem__(self, index) -> None:
        del self._materialize()[index]

    def insert(self, index: int, value: LayerCost) -> None:
        self._materialize().insert(index, value)

    def __iter__(self) -> Iterator[LayerCost]:
        return iter(self._materialize())

    def __reversed__(self) -> Iterator[LayerCost]:
        return reversed(self._materialize())

    def sort(self, *, key=None, reverse: bool = False) -> None:
        self._materialize().sort(key=key, reverse=reverse)

    def copy(self) -> list[LayerCost]:
        return list(self._materialize())

    def __add__(self, other: Iterable[LayerCost]) -> list[LayerCost]:
        return [*self._materialize(), *other]

    def __radd__(self, other: Iterable[LayerCost]) -> list[LayerCost]:
        return [*other, *self._materialize()]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LayerTable):
            return self._materialize() == other._materialize()
        if isinstance(other, list):
            return self._materialize() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] # mutable, as a list

    def __repr__(self) -> str:
        return repr(self._materialize())


def layer_column(layers: Iterable[LayerCost], field: str) -> list:
    """LayerCost field `field` of every layer: `LayerTable.column`, or read from each object of another iterable."""
    if isinstance(layers, LayerTable):
        return layers.column(field)
    return list(map(attrgetter(field), layers))

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

`LayerTable` is a list of LayerCost for every caller (a `list` subclass): indexing, iterating,
`len`, slicing, `==`, `+`, `*`, copy, `dataclasses.asdict` and list mutation all work as on the
list it replaced, and the first access that needs an object makes all of them at once
(`materialized` is then True). From then on the objects are the
data — a caller may change them, and `column()` and the reports read the changed values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

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
    bias_flops: int                       # the bias adds of a MAC layer (also flops_by_category["bias"])
    flops_by_category: dict[str, int]     # flops − 2·macs by --count category (analyzer.conventions), none 0
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
    flops_by_category: tuple[tuple[str, int], ...]   # (category, flops) pairs: LayerCost's dict, immutable
    status: str
    domain: str


SIGNATURE_FIELDS = LayerSignature._fields


def make_layer(signature: LayerSignature, name: str, inputs: Iterable[str], outputs: Iterable[str], params: int,
               weight_bytes: int, activation_bytes: int) -> LayerCost:
    """The LayerCost of one row: the signature's values, with a fresh list for each list field."""
    op_type, kind, group, kernel, stride, input_shapes, output_shape = signature[:7]
    macs, flops, bias_flops, by_category, status, domain = signature[7:]
    return LayerCost(  # positional, in the field order: a keyword call costs more per layer
        name, op_type, kind, group, None if kernel is None else list(kernel), None if stride is None else list(stride),
        list(inputs), list(outputs), [None if shape is None else list(shape) for shape in input_shapes],
        None if output_shape is None else list(output_shape), macs, flops, bias_flops, dict(by_category), params,
        weight_bytes, activation_bytes, status, domain)


class LayerTable(list):
    """Per-layer results of one analysis in columns, read as a list of LayerCost (see the module docstring).

    A `list` subclass, so that what works on the list it replaced works on it too:
    `isinstance(x, list)`, `dataclasses.asdict` (which rebuilds list subclasses as
    ``type(x)(items)``: `LayerTable(items)` is a plain list, so asdict gives a list of dicts),
    `copy.copy`/`copy.deepcopy` (a new table, never the same storage), `+`, `*`, comparisons.
    The list storage is empty until `materialized`; every list method makes the objects first,
    except `len`, `column` and `rows` (checked: the json module's encoder with `default=vars` and
    `numpy.array(table, dtype=object)` of a lazy table see every layer).

    Attributes:
        names, inputs, outputs, params, weight_bytes, activation_bytes: one entry per layer
            (inputs/outputs as tuples of tensor names; bytes and params exact ints).
        signature_index: per layer, the index of its LayerSignature in `signatures`.
        signatures: the distinct LayerSignatures.
    These are filled by the walk and not read once `materialized`.
    """

    def __new__(cls, items: Iterable[LayerCost] | None = None):
        if items is not None:   # what dataclasses.asdict and copy rebuild: the plain list it was before
            return list(items)
        return super().__new__(cls)

    def __init__(self, items: None = None) -> None:
        super().__init__()
        self.names: list[str] = []
        self.inputs: list[tuple[str, ...]] = []
        self.outputs: list[tuple[str, ...]] = []
        self.params: list[int] = []
        self.weight_bytes: list[int] = []
        self.activation_bytes: list[int] = []
        self.signature_index: list[int] = []
        self.signatures: list[LayerSignature] = []
        self._materialized = False
        self._spread: dict[str, list] = {}   # column() of signature fields, kept while no object exists

    @property
    def materialized(self) -> bool:
        """Whether the LayerCost objects exist (then they, not the columns, are the data)."""
        return self._materialized

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Per layer (name, inputs, outputs, params, weight_bytes, activation_bytes, signature index).

        Only before `materialized`.
        """
        return zip(self.names, self.inputs, self.outputs, self.params, self.weight_bytes, self.activation_bytes,
                   self.signature_index)

    def column(self, field: str) -> list:
        """The value of LayerCost field `field` for every layer, in order (lists read as tuples before
        `materialized`; flops_by_category as a fresh dict per layer). Raises AttributeError for a name that is
        no LayerCost field."""
        if self._materialized:
            return list(map(attrgetter(field), list.__iter__(self)))
        if field in ROW_FIELDS:
            return list(getattr(self, "names" if field == "name" else field))
        spread = self._spread.get(field)
        if spread is None:   # a signature field, spread over the layers once (a copy is cheap)
            if field not in SIGNATURE_FIELDS:
                raise AttributeError(f"LayerCost has no field {field!r}")
            position = SIGNATURE_FIELDS.index(field)
            values = [signature[position] for signature in self.signatures]
            spread = self._spread[field] = list(map(values.__getitem__, self.signature_index))
        if field == "flops_by_category":   # a dict, as the objects hold it: one each, a caller may change it
            return list(map(dict, spread))
        return list(spread)

    def _materialize(self) -> LayerTable:
        if not self._materialized:
            signatures = self.signatures
            list.extend(self, [make_layer(signatures[index], name, inputs, outputs, params, weight_bytes,
                                          activation_bytes)
                               for name, inputs, outputs, params, weight_bytes, activation_bytes, index
                               in self.rows()])
            self._materialized = True
            # the objects are the data from now on: drop the columns
            self.names, self.inputs, self.outputs, self.params = [], [], [], []
            self.weight_bytes, self.activation_bytes, self.signature_index = [], [], []
            self._spread = {}
        return self

    def __len__(self) -> int:
        return list.__len__(self) if self._materialized else len(self.names)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __copy__(self) -> LayerTable:
        """A new table of the same layers (before `materialized`: of the same columns, still lazy)."""
        copied = LayerTable()
        if self._materialized:
            list.extend(copied, list.__iter__(self))
            copied._materialized = True
        else:   # the columns hold tuples, ints and NamedTuples: new lists of them share nothing mutable
            for name in (*ROW_FIELDS[1:], "names", "signature_index", "signatures"):
                setattr(copied, name, list(getattr(self, name)))
        return copied

    def __deepcopy__(self, memo: dict) -> LayerTable:
        copied = self.__copy__()
        if copied._materialized:
            items = [deepcopy(layer, memo) for layer in list.__iter__(copied)]
            list.clear(copied)
            list.extend(copied, items)
        return copied

    def __reduce_ex__(self, protocol):   # pickle: the columns while lazy, else the objects
        return _rebuild, (self.__copy__().__dict__ if not self._materialized else None,
                          None if not self._materialized else list(list.__iter__(self)))

    def __eq__(self, other: object) -> bool:
        return list.__eq__(self._materialize(), _ready(other))

    def __ne__(self, other: object) -> bool:
        return list.__ne__(self._materialize(), _ready(other))

    def __add__(self, other):
        return [*self._materialize(), *other] if isinstance(other, list) else NotImplemented

    def __radd__(self, other):
        return [*other, *self._materialize()] if isinstance(other, list) else NotImplemented

    def __iadd__(self, other):
        list.extend(self._materialize(), other)
        return self

    __hash__ = None   # mutable, as a list

    def __repr__(self) -> str:
        return list.__repr__(self._materialize())


def _ready(other: object) -> object:
    """`other`, with its objects made when it is a lazy LayerTable (list methods read the storage)."""
    return other._materialize() if isinstance(other, LayerTable) else other


def _rebuild(state: dict | None, layers: list[LayerCost] | None) -> LayerTable:
    table = LayerTable()
    if layers is not None:
        list.extend(table, layers)
        table._materialized = True
    elif state is not None:
        table.__dict__.update(state)
    return table


def _making_objects_first(name: str):
    """list.`name`, after the table made its objects (the storage a list method reads)."""
    method = getattr(list, name)

    def wrapper(self, *args, **kwargs):
        return method(self._materialize(), *args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = method.__doc__
    return wrapper


for _name in ("__getitem__", "__setitem__", "__delitem__", "__iter__", "__reversed__", "__contains__", "__mul__",
              "__rmul__", "__imul__", "__lt__", "__le__", "__gt__", "__ge__", "append", "extend", "insert", "pop",
              "remove", "index", "count", "clear", "copy", "reverse", "sort"):
    setattr(LayerTable, _name, _making_objects_first(_name))
del _name


def layer_column(layers: Iterable[LayerCost], field: str) -> list:
    """LayerCost field `field` of every layer: `LayerTable.column`, or read from each object of another iterable."""
    if isinstance(layers, LayerTable):
        return layers.column(field)
    return list(map(attrgetter(field), layers))

"""Per-tensor tables the analysis walk reads several times per node: shapes, byte sizes, kinds."""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from segcost.ir import Graph, Shape, is_static_shape, tensor_nbytes


class _Sizes(dict):
    """{tensor: bytes}, each entry found when first read: elements × the size of its dtype for a tensor of
    static shape (graph.tensors' shape and dtype, else its initializer's), 0 for any other tensor.

    Found when read, not for every tensor up front: the walk reads few sizes of a large graph (a node
    of a known kinds key takes its layer's sizes from the first such node), and 133k entries put in a
    dict at 100k nodes were ~40 ms. An entry set explicitly (a forwarded weight's 0) is kept.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self._tensors, self._initializers = graph.tensors, graph.initializers

    def __missing__(self, tensor: str) -> int:
        info, init = self._tensors.get(tensor), self._initializers.get(tensor)
        if info is None:
            size = init.nbytes if init is not None else 0
        else:
            shape = info.shape if info.shape is not None and tensor else None
            if shape is None and init is not None and tensor:
                shape = init.shape   # "" names an omitted input: never a shape
            dtype = info.dtype or (init.dtype if init is not None else 0)
            size = tensor_nbytes(dtype, prod(shape)) if is_static_shape(shape) else 0
        self[tensor] = size
        return size


def tensor_tables(graph: Graph, kinds: bool = False
                  ) -> tuple[Callable[[str], Shape | None], _Sizes, dict[str, int]]:
    """(shape_of: graph.shape(tensor), None for a tensor without one; {tensor: bytes}: elements × the size of
    graph.dtype for a tensor of static shape, 0 for others, each found when first read (_Sizes); kinds).

    With `kinds`, the third table maps every initializer, every tensor of graph.tensors, and ""
    (an omitted tensor), to a number standing for its (shape, dtype, being an initializer): tensors
    of one number have equal shapes, sizes and constness. It is empty without `kinds`, and when a
    tensor is both an initializer and in graph.tensors (not so for a loaded graph: shapes.infer keeps
    them apart). With the kinds, shape_of looks a tensor up when called (the walk then asks for few
    shapes: a {tensor: shape} table was ~25 ms at 133k tensors); without, it reads such a table.
    """
    initializers, tensors = graph.initializers, graph.tensors

    def shape_of(tensor: str) -> Shape | None:
        info = tensors.get(tensor)
        if info is not None and info.shape is not None and tensor:
            return info.shape
        init = initializers.get(tensor)
        # "" names an omitted optional input: never a shape, even if a file declares one
        return init.shape if init is not None and tensor else None

    sizes = _Sizes(graph)
    # tensors share a few (shape, dtype) pairs: each kind is found once
    computed: dict[tuple[Shape | None, int], int] = {}
    initializer_of = initializers.get
    kind: dict[str, int] = {}
    if kinds and graph.tensors.keys().isdisjoint(initializers):   # else an initializer's shape may be overridden
        # initializers number 0, 1, ... by (shape, dtype); other tensors -2, -3, ...; "" is -1
        numbers: dict[tuple[Shape, int], int] = {}
        kind = {name: numbers.setdefault((weight.shape, weight.dtype), len(numbers))
                for name, weight in initializers.items()}
        kind[""] = -1
    else:
        kinds = False
    if not kinds:   # the walk reads shapes node by node: a table
        shapes: dict[str, Shape] = {name: init.shape for name, init in initializers.items() if name}
        shapes.update((name, info.shape) for name, info in tensors.items() if info.shape is not None and name)
        return shapes.get, sizes, kind
    for name, info in tensors.items():
        shape, dtype = info.shape, info.dtype
        if shape is None or not name:
            shape = shape_of(name)   # an initializer's ("": None)
        if not dtype:
            init = initializer_of(name)
            dtype = init.dtype if init is not None else 0
        number = computed.get((shape, dtype))
        if number is None:
            number = computed[shape, dtype] = -2 - len(computed)
        if name:
            kind[name] = number
    return shape_of, sizes, kind

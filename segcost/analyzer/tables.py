"""Per-tensor tables the analysis walk reads several times per node: shapes, byte sizes, kinds."""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from segcost.ir import Graph, Shape, is_static_shape, tensor_nbytes


class _Sizes(dict):
    """{tensor: bytes} that reads 0 for a tensor not in it (of unknown shape)."""

    def __missing__(self, tensor: str) -> int:
        return 0


def tensor_tables(graph: Graph, kinds: bool = False
                  ) -> tuple[Callable[[str], Shape | None], _Sizes, dict[str, int]]:
    """(shape_of: graph.shape(tensor), None for a tensor without one; {tensor: bytes} for every tensor of
    static shape: elements × the size of graph.dtype; others read 0), in one pass over the tensors.

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

    sizes = _Sizes({name: init.nbytes for name, init in initializers.items()})  # int dims by construction
    # tensors share a few (shape, dtype) pairs: each size (None: the shape is not static) and kind is found once
    computed: dict[tuple[Shape | None, int], tuple[int | None, int]] = {}
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
    shapes: dict[str, Shape] | None = None
    if not kinds:   # the walk reads shapes node by node: a table
        shapes = {name: init.shape for name, init in initializers.items() if name}
    for name, info in tensors.items():
        shape, dtype = info.shape, info.dtype
        if shape is None or not name:
            shape = shape_of(name)   # an initializer's ("": None)
        elif shapes is not None:
            shapes[name] = shape
        if not dtype:
            init = initializer_of(name)
            dtype = init.dtype if init is not None else 0
        found = computed.get((shape, dtype))
        if found is None:
            found = computed[shape, dtype] = (tensor_nbytes(dtype, prod(shape)) if is_static_shape(shape) else None,
                                              -2 - len(computed))
        size, number = found
        if size is None:
            sizes.pop(name, None)
        else:
            sizes[name] = size
        if kinds and name:
            kind[name] = number
    return shape_of if shapes is None else shapes.get, sizes, kind

"""Seeded random inputs for running a graph in onnxruntime (the numeric checks and measurements).

Used by `optimize`'s numeric check, the target measurements and sweeps; it sits in the IR
layer so that none of them imports another for it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from segcost.errors import InputError
from segcost.ir.graph import Graph, is_static_shape

MAX_CHECK_ELEMENTS = 1 << 28  # a 1 GiB float32 input; beyond that the check would not fit in memory

__all__ = ["MAX_CHECK_ELEMENTS", "random_feeds"]


def random_feeds(model: onnx.ModelProto, graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for running `graph`'s model in onnxruntime: standard normal floats, zeros otherwise.

    Shapes are the graph inputs' (a symbolic batch dim runs at 1). A dim that is a number but
    not positive is symbolic too: paddle2onnx writes a dynamic batch as `dim_value: -1`, and
    ONNX only defines dim_value ≥ 0 (0 is an empty tensor no check learns from). `model` is the
    ModelProto that will run (kept for the callers' symmetry; the shapes come from `graph`).

    Raises:
        InputError: an input without a static shape (a non-batch dim symbolic or ≤ 0), or over
            MAX_CHECK_ELEMENTS elements.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        shape = graph.shape(name)
        if shape and not _positive(shape[0]):
            shape = (1, *shape[1:])  # a symbolic batch: checked at batch 1
        if not is_static_shape(shape) or not all(map(_positive, shape)):
            raise InputError(f"input {name!r} needs a static shape for the numerical check")
        if int(np.prod(shape, dtype=object)) > MAX_CHECK_ELEMENTS:
            raise InputError(f"input {name!r} {list(shape)} is too large for the numerical check; "
                             "use --no-check to skip it")
        dtype = helper.tensor_dtype_to_np_dtype(graph.dtype(name))
        values = rng.standard_normal(shape)
        feeds[name] = values.astype(dtype) if np.issubdtype(dtype, np.floating) else np.zeros(shape, dtype)
    return feeds


def _positive(dim) -> bool:
    return isinstance(dim, int) and dim > 0

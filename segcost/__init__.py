"""segcost: exact per-layer cost of segmentation networks for embedded accelerators.

The Python API (segcost.api; README "Python API"):

    import segcost
    result = segcost.analyze("model.onnx", (1, 3, 512, 512))
    print(result.totals.macs)

`analyze`, `optimize`, `quantize`, `cost`, `check` and their result classes are loaded on first
use (module `__getattr__`, PEP 562), so that `import segcost` — and with it `segcost --version`
and every `--help` — imports neither onnx, onnxruntime, numpy nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segcost.errors import GraphError, InputError, SegcostError, ShapeError

__version__ = "0.1.0"

_API = frozenset({"Analysis", "Check", "Cost", "Optimized", "analyze", "check", "cost", "optimize", "quantize"})

__all__ = ["Analysis", "Check", "Cost", "GraphError", "InputError", "Optimized", "SegcostError", "ShapeError",
           "__version__", "analyze", "check", "cost", "optimize", "quantize"]

if TYPE_CHECKING:   # what type checkers and IDEs see; at run time the names come from __getattr__
    from segcost.api import (
        Analysis,
        Check,
        Cost,
        Optimized,
        analyze,
        check,
        cost,
        optimize,
        quantize,
    )


def __getattr__(name: str):
    if name in _API:
        from segcost import api

        return getattr(api, name)
    raise AttributeError(f"module 'segcost' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)

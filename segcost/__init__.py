"""segcost: exact per-layer cost of segmentation networks for embedded accelerators.

The Python API (segcost.api; README "Python API"):

    import segcost
    result = segcost.analyze("model.onnx", (1, 3, 512, 512))
    print(result.totals.macs)

`analyze`, `optimize`, `quantize`, `cost`, `check` and their result classes are loaded on first
use (module `__getattr__`, PEP 562), so that `import segcost` — and with it `segcost --version`
and every `--help` — imports neither onnx, onnxruntime, numpy nor torch.

`segcost.optimize` and `segcost.check` are also the names of submodules (the optimize pipeline,
the budget checker). Python binds a submodule to its package's attribute when it is imported,
so the package instead makes those two submodules callable: `segcost.check(...)` calls
`segcost.api.check` whether or not the submodule was imported first, and
`from segcost.check.budgets import ...` keeps working.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from segcost.errors import GraphError, InputError, SegcostError, ShapeError

__version__ = "0.1.0"

_API = frozenset({"Analysis", "Check", "Cost", "Optimized", "analyze", "check", "cost", "optimize", "quantize"})
_SUBMODULE_NAMES = frozenset({"check", "optimize"})   # API functions that share a name with a submodule

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


class _CallableModule(types.ModuleType):
    """A submodule named like an API function: calling the module calls segcost.api.<name>."""

    def __call__(self, *args, **kwargs):
        from segcost import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """segcost itself: the import system's `setattr(segcost, "check", <submodule>)` makes that module callable."""

    def __setattr__(self, name: str, value) -> None:
        if name in _SUBMODULE_NAMES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _SUBMODULE_NAMES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")   # binds the (callable) submodule here
    if name in _API:
        from segcost import api

        return getattr(api, name)
    raise AttributeError(f"module 'segcost' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)

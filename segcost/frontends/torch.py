"""PyTorch → ONNX export (the optional `torch` extra) and loading of user model specs.

Nothing here is imported by `segcost analyze MODEL.onnx`; torch is imported inside the
functions so that a missing extra is a clear InputError, not an ImportError at start-up.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segcost.errors import InputError
from segcost.frontends import onnx as onnx_frontend

DEFAULT_OPSET = 17


def require_torch():
    try:
        import torch
    except ImportError:
        raise InputError("this needs PyTorch: pip install 'segcost[torch]'") from None
    return torch


def is_program(model: Any) -> bool:
    """True for a torch.export.ExportedProgram (what a .pt2 file holds), without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.export.ExportedProgram)


def export_plan(model: Any, exporter: str = "legacy", opset: int = DEFAULT_OPSET) -> tuple[str, int]:
    """(exporter, opset) `export` uses for `model`: an ExportedProgram (a .pt2 file) always goes through the
    torch.export-based ("dynamo") exporter, which writes opset 18 or later; an nn.Module through `exporter`.

    Raises:
        InputError: an exporter other than "legacy" or "dynamo".
    """
    if exporter not in ("legacy", "dynamo"):
        raise InputError(f"unknown exporter {exporter!r} (legacy or dynamo)")
    if is_program(model):
        exporter = "dynamo"
    return exporter, max(opset, 18) if exporter == "dynamo" else opset


def export(model: Any, input_shape: tuple[int, ...], path: str | os.PathLike, exporter: str = "legacy",
           opset: int = DEFAULT_OPSET, constant_folding: bool = True, keep_batchnorm: bool = False,
           input_name: str = "input", output_name: str = "out") -> Path:
    """Export `model` (in eval mode) for a zero input of `input_shape` to ONNX at `path`.

    exporter: "legacy" (TorchScript-based, one file) or "dynamo" (torch.export-based; large
    weights go to `path`.data). keep_batchnorm=True exports in training mode with constant
    folding off, so BatchNormalization nodes stay in the graph for segcost's fusion pass;
    the module's train/eval flags and state_dict are restored afterwards.

    An ExportedProgram (a .pt2 file) is already traced: the exporter ignores the example input,
    and the file keeps the program's input dims (its traced sizes, or torch.export's symbols
    such as ``s16`` for dims declared dynamic). `input_shape` is checked against what the
    program accepts (see program_shape_problem); the caller sets it on the file's inputs
    (load_module_graph does).

    Raises:
        InputError: an unknown exporter, an `input_shape` the program does not accept, or an export failure.
    """
    torch = require_torch()
    exporter, opset = export_plan(model, exporter, opset)
    path = Path(path)
    program = is_program(model)
    if program:
        # It has no modules to put in eval mode (its graph was captured in one mode), and no example
        # input reaches its export: torch.onnx takes the program's own input dims.
        problem = program_shape_problem(model, input_shape)
        if problem:
            raise InputError(problem)
    example = () if program else (torch.zeros(*input_shape),)
    was_training = {} if program else {name: module.training for name, module in model.named_modules()}
    if not program:
        model.eval()
    kwargs: dict[str, Any] = {"input_names": [input_name], "output_names": [output_name]}
    if keep_batchnorm:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
        kwargs["do_constant_folding"] = False
    try:
        with torch.no_grad():
            if exporter == "dynamo":
                if keep_batchnorm:
                    raise InputError("keep_batchnorm needs the legacy exporter")
                torch.onnx.export(model, example, str(path), dynamo=True, external_data=True,
                                  opset_version=opset, verbose=False, **kwargs)
            else:
                torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset,
                                  do_constant_folding=kwargs.pop("do_constant_folding", constant_folding), **kwargs)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many types; the user needs one line
        message = str(error).strip().splitlines()
        raise InputError(f"export failed: {type(error).__name__}: {message[0] if message else ''}") from None
    finally:
        for name, module in ([] if program else model.named_modules()):
            module.training = was_training.get(name, module.training)
    return path


def program_shape_problem(program: Any, input_shape: tuple[int, ...]) -> str:
    """Why the ExportedProgram `program` does not accept an input of `input_shape` (one line), or "".

    torch.export specialises every dim not declared in ``dynamic_shapes`` to its traced size and
    records, for the declared ones, an expression of its symbols (``s16``, or ``8*s17`` for a
    derived Dim) and each symbol's range (``program.range_constraints``, e.g. ``s16: [32, 1024]``);
    the program, and so its ONNX export, holds only there (torch.export docs, "Dynamic shapes").
    Each input dim is matched to its expression: a fixed dim must be equal, a symbol takes the
    given size (solved with sympy, torch's own symbolic engine), a symbol used twice must take
    one value, and every constrained expression must lie in its range.
    """
    import sympy  # type: ignore[import-untyped]  # torch's own dependency (its ShapeEnv is built on it)

    torch = require_torch()
    dims = _program_input_dims(torch, program)
    if isinstance(dims, str):
        return dims
    traced = "x".join(str(dim) for dim in dims)
    given = "x".join(map(str, input_shape))
    if len(dims) != len(input_shape):
        return (f"the ExportedProgram's input has rank {len(dims)} ({traced}), --input-shape {given} has "
                f"{len(input_shape)}")
    fixed = [axis for axis, (dim, size) in enumerate(zip(dims, input_shape))
             if isinstance(dim, int) and dim != size]
    if fixed:
        fits = "x".join(str(dim) if isinstance(dim, int) else str(size) for dim, size in zip(dims, input_shape))
        axes = f"axis {fixed[0]}" if len(fixed) == 1 else f"axes {', '.join(map(str, fixed))}"
        return (f"the ExportedProgram was traced for input {traced} and torch.export fixed {axes} to that size "
                f"(dims not in dynamic_shapes are specialised); --input-shape {given} differs: give {fits}, "
                f"or export the program with dynamic_shapes for {axes}")
    values: dict[Any, int] = {}
    pending = [(axis, sympy.sympify(dim), size) for axis, (dim, size) in enumerate(zip(dims, input_shape))
               if not isinstance(dim, int)]
    for axis, expr, size in sorted(pending, key=lambda item: len(item[1].free_symbols)):
        unknown = sorted(expr.free_symbols - values.keys(), key=str)
        if len(unknown) == 1:
            roots = [root for root in sympy.solve(sympy.Eq(expr.subs(values), size), unknown[0])
                     if root.is_integer]
            if not roots:
                return (f"the ExportedProgram's input axis {axis} is {expr} (torch.export's dynamic dim): "
                        f"no integer {unknown[0]} gives {size} (--input-shape {given}; traced as {traced})")
            values[unknown[0]] = int(roots[0])
        if expr.free_symbols <= values.keys() and int(expr.subs(values)) != size:
            return (f"the ExportedProgram's input axis {axis} is {expr}, which the other axes make "
                    f"{int(expr.subs(values))}, --input-shape {given} gives {size} (traced as {traced})")
    for key, bounds in getattr(program, "range_constraints", {}).items():
        expr = sympy.sympify(key)
        if not expr.free_symbols or not expr.free_symbols <= values.keys():
            continue
        value = int(expr.subs(values))
        if bool(value < bounds.lower) or bool(value > bounds.upper):
            using = [str(axis) for axis, dim, _ in pending if dim.free_symbols & expr.free_symbols]
            where = f"input axis {using[0]}" if len(using) == 1 else f"input axes {', '.join(using)}"
            span = f">= {bounds.lower}" if bool(bounds.upper > 2**63) else f"in [{bounds.lower}, {bounds.upper}]"
            why = "; a dynamic dim is assumed not to be 0 or 1" if value < 2 else ""
            return (f"the ExportedProgram accepts {expr} ({where}) {span} only (torch.export range constraints"
                    f"{why}); --input-shape {given} makes it {value}")
    return ""


def _program_input_dims(torch, program: Any) -> list[Any] | str:
    """The dims of the program's one tensor input: ints, and sympy expressions for dynamic dims; or why not."""
    user = torch.export.graph_signature.InputKind.USER_INPUT
    names = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind == user]
    values = [node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder" and node.name in names]
    if len(values) != 1 or not isinstance(values[0], torch.Tensor):
        return f"the ExportedProgram takes {len(names)} inputs; segcost exports a program with one tensor input"
    return [dim.node.expr if isinstance(dim, torch.SymInt) else int(dim) for dim in values[0].shape]


TRUST_FLAG = "--trust-model-code"


def refuse_untrusted(spec: str) -> None:
    """InputError unless the user said the model's code may run (every PyTorch input runs code).

    A .pt2 ExportedProgram is unpickled (pickle runs arbitrary Python), a TorchScript
    .pt/.pth file runs its scripted code when exported (TorchScript reaches ops such as
    ``aten::from_file``), and ``package.module:factory`` imports and calls user Python.
    """
    kind = ("a .pt2 ExportedProgram is unpickled, which can run any code" if spec.endswith(".pt2") else
            "a TorchScript file runs its scripted code" if spec.endswith((".pt", ".pth")) else
            "a package.module:factory spec imports and runs Python code")
    raise InputError(f"{spec}: {kind}; pass {TRUST_FLAG} if you trust it (ONNX files never need it)")


def parse_factory_args(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options → factory keyword arguments; VALUE is a Python literal (``None``, ``21``,
    ``(1, 2)``, ``'text'``) read with ast.literal_eval, which evaluates no code; anything else is a string.

    Raises:
        InputError: an item without ``=`` or with a KEY that is not an identifier.
    """
    arguments: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"--factory-arg {item!r}: expected KEY=VALUE, e.g. weights_backbone=None")
        try:
            arguments[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            arguments[key] = text.strip()   # e.g. weights=DEFAULT: torchvision takes weight names as strings
    return arguments


def load_module(spec: str, factory_args: dict[str, Any] | None = None, trust_code: bool = False) -> Any:
    """`package.module:factory` (called with `factory_args` as keyword arguments) or a TorchScript .pt/.pth /
    ExportedProgram .pt2 file.

    Raises:
        InputError: unless `trust_code` (the CLI's --trust-model-code): loading any of these runs
            code from the model (see refuse_untrusted); a missing file, a state_dict saved with
            torch.save (weights without the architecture: build it with a factory instead), an
            import or factory failure.
    """
    if not trust_code:
        refuse_untrusted(spec)
    torch = require_torch()
    if factory_args and spec.endswith((".pt", ".pth", ".pt2")):
        raise InputError("--factory-arg applies to a package.module:factory model, not to a file")
    if spec.endswith((".pt", ".pth", ".pt2")):
        if not Path(spec).is_file():
            raise InputError(f"{spec}: no such file")
        try:
            if spec.endswith(".pt2"):
                return torch.export.load(spec)   # exported as the program itself (see export)
            return torch.jit.load(spec, map_location="cpu")
        except Exception as error:  # noqa: BLE001
            if _is_state_dict(torch, spec):
                raise InputError(f"{spec}: a state_dict (weights only, no architecture); give the model as "
                                 "package.module:factory, e.g. torchvision.models.segmentation:fcn_resnet50 "
                                 "--factory-arg weights=None, and load these weights inside your factory") from None
            raise InputError(f"{spec}: not a TorchScript/ExportedProgram file ({type(error).__name__})") from None
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise InputError(f"{spec!r}: expected package.module:factory or a .pt/.pth/.pt2 file")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's own modules are importable
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise InputError(f"{spec!r}: cannot import ({error})") from None
    try:
        return factory(**(factory_args or {}))
    except Exception as error:  # noqa: BLE001
        raise InputError(f"{spec!r}: factory failed ({type(error).__name__}: {error})") from None


def _is_state_dict(torch, path: str) -> bool:
    """True when `path` is a torch.save'd mapping of tensors; read with weights_only=True (no code runs)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not loadable as plain weights either
        return False
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]   # a training checkpoint
    return isinstance(loaded, Mapping) and any(isinstance(value, torch.Tensor) for value in loaded.values())


def export_to_temp(model: Any, input_shape: tuple[int, ...], **options) -> tuple[Path, tempfile.TemporaryDirectory]:
    """Export into a fresh temporary directory; the caller keeps the directory object alive."""
    directory = tempfile.TemporaryDirectory(prefix="segcost-")
    return export(model, input_shape, Path(directory.name) / "model.onnx", **options), directory


def load_torch_spec(spec: str, input_shapes: dict[str, tuple[int, ...]], factory_args: dict[str, Any] | None = None,
                    progress: Callable[[str], None] | None = None, trust_code: bool = False):
    """Export a PyTorch model spec (module:factory or a .pt/.pth/.pt2 file) and load it into the IR.

    Raises InputError unless `trust_code`: loading it runs the model's code.
    """
    if not trust_code:
        refuse_untrusted(spec)
    if len(input_shapes) != 1:
        raise InputError("a PyTorch model needs exactly one --input-shape, e.g. --input-shape 1x3x512x512")
    (input_shape,) = input_shapes.values()
    return load_module_graph(load_module(spec, factory_args, trust_code), input_shape, label=spec, progress=progress)


def load_module_graph(module: Any, input_shape: tuple[int, ...], label: str,
                      progress: Callable[[str], None] | None = None):
    """Export `module` to a temporary ONNX file and load it into the IR.

    The temporary directory lives as long as the graph (weights are read lazily from it).
    `progress` is told (one line each) when the export starts and how long it took.
    """
    exporter, opset = export_plan(module)
    if progress is not None:
        size = "x".join(map(str, input_shape))
        progress(f"exporting {label} to ONNX {'to analyze at' if is_program(module) else 'at'} {size} "
                 f"(torch.onnx {exporter} exporter, opset {opset})")
    started = time.perf_counter()
    path, directory = export_to_temp(module, input_shape)
    if progress is not None:
        progress(f"exported in {time.perf_counter() - started:.1f} s")
    # A module is traced at `input_shape`; a program's file keeps its own dims (traced sizes, or symbols for
    # dynamic ones), so the shape is set on it as on any .onnx file's inputs (shapes.infer.apply_input_shapes).
    graph = onnx_frontend.load(path, {"": input_shape} if is_program(module) else None)
    graph.info.path = label
    graph.info.resources.append(directory)
    return graph

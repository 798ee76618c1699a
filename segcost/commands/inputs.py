"""What the CLI and the Python API accept as a model, turned into the IR the commands work on.

A model is a path (``.onnx``, a TorchScript file, or a ``package.module:factory`` spec), an
in-memory ``onnx.ModelProto``, a ``torch.nn.Module`` (with the torch extra) or None for the
built-in DeepLabV3Lite — the same sources the CLI reads, through the same frontends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segcost.errors import InputError
from segcost.fileio.numbers import INT64_MAX, parse_input_shapes

Shape = Sequence[int]
ShapeArg = None | str | Shape | Mapping[str, Shape] | Sequence[str] | Any


def parse_shapes(input_shape: ShapeArg) -> dict[str, tuple[int, ...]]:
    """``(1, 3, 512, 512)``, ``{"input": (1, 3, 512, 512)}``, ``"input=1x3x512x512"``, a list of such strings,
    or a torch tensor (its shape) → ``{name: dims}`` ("" is the only input of a one-input model).

    Raises:
        InputError: a dimension that is not a positive integer, or a value of another type.
    """
    if input_shape is None:
        return {}
    if isinstance(input_shape, str):
        return parse_input_shapes([input_shape])
    if hasattr(input_shape, "shape") and not isinstance(input_shape, (tuple, list)):
        input_shape = tuple(input_shape.shape)   # an example tensor or array
    if isinstance(input_shape, Mapping):
        return {str(name): _dims(dims, str(name)) for name, dims in input_shape.items()}
    if isinstance(input_shape, Sequence) and input_shape and all(isinstance(item, str) for item in input_shape):
        return parse_input_shapes([str(item) for item in input_shape])
    return {"": _dims(input_shape, "input")}


def _dims(dims: Any, name: str) -> tuple[int, ...]:
    if hasattr(dims, "shape") and not isinstance(dims, (tuple, list)):
        dims = tuple(dims.shape)
    if isinstance(dims, str):
        return next(iter(parse_shapes(dims).values()))
    try:
        values = tuple(dims)
    except TypeError:
        raise InputError(f"input_shape for {name!r}: expected a tuple of ints such as (1, 3, 512, 512), "
                         f"got {type(dims).__name__}") from None
    if not values or any(isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= INT64_MAX
                         for dim in values):
        raise InputError(f"input_shape for {name!r}: every dimension must be a positive int, at most {INT64_MAX:,} "
                         f"(ONNX dims are int64), got {list(values)}")
    return values


def is_torch_module(model: Any) -> bool:
    """True for a torch.nn.Module, without importing torch (it is imported only if the caller already has)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def load_graph(model: Any, input_shape: ShapeArg = None, factory_args: dict[str, Any] | None = None,
               progress: Callable[[str], None] | None = None, trust_code: bool = False,
               keep_symbolic_batch: bool = False):
    """The verified IR of `model` with inferred shapes, plus the path the model came from (or None).

    `keep_symbolic_batch` (for commands that write a model: optimize): an ONNX input's
    symbolic batch dim stays symbolic when `input_shape` sets the others (H, W).

    `factory_args` are keyword arguments for a ``package.module:factory`` model; `progress` gets a
    line when a PyTorch model is built and exported (that takes seconds to minutes). A model
    path that runs code when loaded (.pt2/.pt/.pth, module:factory) needs `trust_code`
    (the CLI's --trust-model-code).

    Raises:
        InputError (and its subclasses GraphError, ShapeError): what the CLI exits 2 for.
    """
    import onnx

    from segcost.frontends import onnx as onnx_frontend

    shapes = parse_shapes(input_shape)
    if factory_args and not (isinstance(model, str) and is_torch_spec(model)):
        raise InputError("factory arguments (--factory-arg) apply to a package.module:factory model only")
    if model is None:
        from segcost.samples import deeplabv3lite

        graph = onnx_frontend.load_model(deeplabv3lite(), shapes)
        graph.info.path = builtin_label(graph.shape(graph.inputs[0]))
        return graph, None
    if isinstance(model, onnx.ModelProto):
        return onnx_frontend.load_model(model, shapes, label=model.graph.name or "ModelProto",
                                        keep_symbolic_batch=keep_symbolic_batch), None
    if is_torch_module(model):
        return _module_graph(model, shapes, progress), None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if is_torch_spec(path):
            from segcost.frontends.torch import load_torch_spec

            return load_torch_spec(path, shapes, factory_args, progress, trust_code=trust_code), path
        return onnx_frontend.load(path, shapes, keep_symbolic_batch), path
    raise InputError(f"model: expected a path, an onnx.ModelProto or a torch.nn.Module, got {type(model).__name__}")


def builtin_label(shape) -> str:
    """The built-in model's title with the input shape actually analyzed (it can be overridden)."""
    from segcost.samples import DEFAULT_SAMPLE

    head, _, _ = DEFAULT_SAMPLE.rpartition(", ")    # "... (built-in, 21 classes, 1x3x512x512)"
    return f"{head}, {'x'.join(str(dim) for dim in shape)})"


def _module_graph(module: Any, shapes: dict[str, tuple[int, ...]], progress: Callable[[str], None] | None):
    from segcost.frontends.torch import load_module_graph

    if len(shapes) != 1:
        raise InputError("a torch.nn.Module needs input_shape (e.g. (1, 3, 512, 512)) or an example tensor")
    (dims,) = shapes.values()
    return load_module_graph(module, dims, label=type(module).__name__, progress=progress)


def is_torch_spec(model: str) -> bool:
    """A PyTorch model: a .pt/.pth/.pt2 file or `package.module:factory` (never an existing .onnx)."""
    from pathlib import Path

    if model.endswith((".pt", ".pth", ".pt2")):
        return True
    return ":" in model and not Path(model).exists() and not model.endswith(".onnx")


def load_cli_graph(model: str | None, input_shapes: tuple[str, ...], factory_args: tuple[str, ...] = (),
                   keep_symbolic_batch: bool = False):
    """`load_graph` for a command: ``NAME=1x3xHxW`` option strings, ``KEY=VALUE`` factory arguments,
    progress lines on stderr and the command's --trust-model-code. Returns (graph, None).

    Raises:
        InputError: as load_graph, or a malformed option string.
    """
    from segcost.commands.options import trusts_model_code

    arguments = None
    if factory_args:
        from segcost.frontends.torch import parse_factory_args

        arguments = parse_factory_args(factory_args)
    graph, _ = load_graph(model, parse_input_shapes(input_shapes), arguments, progress_line,
                          trust_code=trusts_model_code(), keep_symbolic_batch=keep_symbolic_batch)
    return graph, None


def fused_graph(model: str | None, input_shapes: tuple[str, ...], fuse: bool, target=None):
    """Load MODEL (default: the built-in DeepLabV3Lite) and run the fusion pipeline, as deployment toolchains do
    (with `target`, a profile name or TargetProfile, also what its runtime rewrites itself: pipeline.target_pipeline).

    Raises InputError on a bad model, shape or degenerate attribute (checked before any pass runs).
    """
    from segcost.ir.opchecks import check_graph
    from segcost.pipeline import target_pipeline

    graph, _ = load_cli_graph(model, input_shapes)
    check_graph(graph)   # degenerate attributes are input errors here too, before any pass runs
    return target_pipeline(graph, target) if fuse else graph


def progress_line(line: str) -> None:
    """One progress line on stderr (export and calibration steps that take seconds to minutes)."""
    import click

    click.echo(f"segcost: {line}", err=True)

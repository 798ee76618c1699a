"""A sweep point's torch module: a zoo model at the point's classes and width, or a user's factory's result,
checked to carry the class count and width the point's row will name.

A factory that takes keywords through **kwargs may accept num_classes= or width_mult= and ignore them
(segmentation_models_pytorch's models take `classes=` and pass unknown keywords to their encoder): such a
point is an error row, not a row labelled with a size its model does not have (check_classes, build_module).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from segcost.errors import InputError
from segcost.frontends.torch import parse_factory_args
from segcost.sweep.points import Point, builder_parts


def describe_error(error: BaseException) -> str:
    """One line: InputErrors are already written for people; others get their type name."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, InputError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def build_module(point: Point) -> Any:
    """The point's torch module: a zoo model at the point's classes/width, or the factory's result."""
    from segcost.frontends.torch import require_torch
    from segcost.zoo.registry import get

    require_torch()
    if not point.is_factory:
        model = get(point.model)
        assert point.num_classes is not None, "expand() gives a zoo point the model's own classes for 'default'"
        if point.width_parameter:
            function, keywords = builder_parts(model)
            return function(point.num_classes, **{**keywords, point.width_parameter: point.width_mult})
        return model.build(point.num_classes)
    if point.search_path and point.search_path not in sys.path:
        sys.path.insert(0, point.search_path)
    module_name, _, factory_name = point.model.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise InputError(f"{point.model}: cannot import ({error})") from None
    arguments = parse_factory_args(point.factory_args)   # spec.py refused num_classes/width_mult among them
    if point.num_classes is not None:
        arguments["num_classes"] = point.num_classes
    if point.width_mult is None:
        return _call_factory(point, factory, arguments)
    module = _call_factory(point, factory, {**arguments, "width_mult": point.width_mult})
    # A factory that takes width_mult only through **kwargs may drop it (smp's models pass unknown keywords to
    # their encoder, which ignores them): the row would carry a width its model does not have. Built once more
    # without it, the same parameter shapes tell. (At 1.0, the usual default, equal shapes are expected.)
    if point.width_mult != 1.0 and _swallows(factory, "width_mult") \
            and _parameter_shapes(module) == _parameter_shapes(_call_factory(point, factory, arguments)):
        raise InputError(f"{point.model}: the factory accepted width_mult={point.width_mult:g} but built the same "
                         "parameters as without it (taken by **kwargs and not used?); drop the point's widths or "
                         "use a factory whose width parameter is width_mult")
    return module


def _call_factory(point: Point, factory: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    try:
        return factory(**arguments)
    except Exception as error:  # noqa: BLE001 - the user's code
        raise InputError(f"{point.model}: factory failed ({describe_error(error)})") from None


def _swallows(factory: Callable[..., Any], keyword: str) -> bool:
    """True when `factory` takes `keyword` only through **kwargs (so it may ignore it); False when it names it, or
    when its signature cannot be read."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return keyword not in parameters and any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())


def _parameter_shapes(module: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each of a torch module's parameters, in order; [] for a non-module."""
    named = getattr(module, "named_parameters", None)
    return [(name, tuple(value.shape)) for name, value in named()] if callable(named) else []


def check_classes(point: Point, graph: Any) -> None:
    """Refuse a factory point whose exported model has no output with `point.num_classes` channels (axis 1).

    A factory that takes **kwargs can accept num_classes= and ignore it (segmentation_models_pytorch's
    models take `classes=`): the row would carry the requested class count for a model that has another.
    Raises InputError naming the outputs' channels.
    """
    channels = [shape[1] for shape in (graph.shape(name) for name in graph.outputs)
                if shape is not None and len(shape) >= 2]
    if point.num_classes not in channels:
        found = ", ".join(str(channel) for channel in channels) or "unknown"
        raise InputError(f"{point.model}: num_classes={point.num_classes} was passed but the exported model's "
                         f"outputs have {found} channels at axis 1 (does the factory name its class count "
                         "otherwise, e.g. segmentation_models_pytorch's classes=? give it in factory_args and drop "
                         "the num_classes axis)")

"""The zoo's model registry: a name → how to build the PyTorch module, without importing torch.

Model families live in sub-packages (`segcost.zoo.edgeai`, `segcost.zoo.reference`,
`segcost.zoo.tv`), each exposing ``ZOO_MODELS: list[ZooModel]``. A `ZooModel.build`
is called only when a model is actually built, so listing the zoo needs no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segcost.errors import InputError

FAMILY_PACKAGES = ("segcost.zoo.edgeai", "segcost.zoo.tv", "segcost.zoo.reference")


@dataclass(frozen=True)
class ZooModel:
    """One buildable architecture.

    Attributes:
        name: the seed table's model name, e.g. "MobileNetV2S16+DeepLabV3Lite".
        family: the seed table's family column ("edgeai-torchvision", "torchvision", ...).
        build: num_classes → torch.nn.Module in eval mode whose forward(x) returns one tensor
            (the segmentation logits at input resolution unless the architecture says otherwise).
        input_size: default (height, width).
        num_classes: default number of classes.
        encoder_group: "depthwise" or the group width (int) the Lite rule propagates, or None.
        notes: anything a user of the table must know (e.g. a deliberate deviation).
    """

    name: str
    family: str
    build: Callable[[int], Any]
    input_size: tuple[int, int]
    num_classes: int = 21
    encoder_group: str | int | None = None
    notes: str = ""


def family_modules() -> list[Any]:
    """The imported family packages (each with ZOO_MODELS and optionally EXPECTED_DEVIATIONS)."""
    modules = []
    for package in FAMILY_PACKAGES:
        try:
            modules.append(importlib.import_module(package))
        except ModuleNotFoundError as error:
            if error.name != package:
                raise  # a family that exists but is broken must not vanish silently
    return modules


def all_models() -> dict[str, ZooModel]:
    models: dict[str, ZooModel] = {}
    for module in family_modules():
        for model in module.ZOO_MODELS:
            if model.name in models:
                raise ValueError(f"zoo model {model.name!r} registered twice")
            models[model.name] = model
    return models


def get(name: str) -> ZooModel:
    models = all_models()
    if name not in models:
        close = [known for known in models if name.lower() in known.lower()]
        hint = f"; did you mean {', '.join(close[:3])}?" if close else "; see `segcost zoo list`"
        raise InputError(f"no zoo model {name!r}{hint}")
    return models[name]

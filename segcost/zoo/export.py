"""`segcost zoo export`: build a zoo model and write its ONNX file (and .data) atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from segcost.errors import InputError
from segcost.fileio.writes import install


def parse_size(text: str) -> tuple[int, int]:
    """'768x384' (width x height) → (384, 768); '520' → (520, 520)."""
    width, _, height = text.lower().partition("x")
    try:
        size = (int(height or width), int(width))
    except ValueError:
        raise InputError(f"--input-size {text!r}: expected WIDTHxHEIGHT, e.g. 768x384") from None
    if min(size) <= 0:
        raise InputError(f"--input-size {text!r}: sizes must be positive")
    return size


def export_zoo_model(name: str, output: str | os.PathLike, input_size: str | None = None,
                     num_classes: int | None = None, exporter: str = "legacy", keep_batchnorm: bool = False) -> Path:
    from segcost.frontends.torch import export, require_torch
    from segcost.zoo.registry import get

    require_torch()
    model = get(name)
    height, width = parse_size(input_size) if input_size else model.input_size
    target = Path(output)
    if not target.parent.is_dir():
        raise InputError(f"{target}: directory {target.parent} does not exist")
    module = model.build(num_classes or model.num_classes)
    # Export under the final file name in a temp dir beside the target, so the external
    # data file's recorded location stays right after the move.
    with tempfile.TemporaryDirectory(prefix=".segcost-export-", dir=target.parent) as directory:
        staged = export(module, (1, 3, height, width), Path(directory) / target.name, exporter=exporter,
                        keep_batchnorm=keep_batchnorm)
        for extra in sorted(Path(directory).iterdir()):
            if extra != staged:
                shutil.move(str(extra), target.parent / extra.name)
        install(staged, target)   # through a symlink or into a device, never replacing either
    return target

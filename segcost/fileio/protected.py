"""The files a command reads, which none of its outputs may be.

An output is refused when it is the same file as an input (same device and inode, so through
symlinks and hard links): the inputs a command names, and every file the model loader has
opened in this process (the model and its external data, `note_held_input`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import PathLike


def _status(path: PathLike) -> os.stat_result | None:
    """os.stat (symlinks followed) of an existing path; None when it is missing or not a path."""
    try:
        return os.stat(os.fspath(path))
    except (OSError, ValueError, TypeError):
        return None


def file_identity(path: PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file or directory; None when it is missing or not a path."""
    status = _status(path)
    if status is None or stat.S_ISCHR(status.st_mode):
        return None   # /dev/null as an "input" and an output is not a clash
    return status.st_dev, status.st_ino


def labelled_paths(inputs: Mapping[str, Any] | Iterable[Any]) -> list[tuple[str, str]]:
    """(label, path) pairs from {label: path | [paths] | None} or a plain iterable of paths."""
    items = inputs.items() if isinstance(inputs, Mapping) else (("input", value) for value in inputs)
    pairs = []
    for label, value in items:
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        pairs += [(label, os.fspath(item)) for item in values if item is not None and item != ""]
    return pairs


# (device, inode) -> (label, mtime_ns, size) of every file the model loader has opened as an input in
# this process: the model file and its external-data files (segcost.ir.datafile.HeldFile). A command
# names its inputs before it loads the model, so the data files a model points to are only known
# here. They stay protected after they are closed (a command may write after releasing the graph);
# mtime and size tell a file read here from a new file that reuses a deleted file's inode.
_READ_INPUTS: dict[tuple[int, int], tuple[str, int, int]] = {}


def note_held_input(fd: int, label: str) -> None:
    """Remember an input file opened by descriptor (a model or its external data): no output may replace it."""
    status = os.fstat(fd)
    if stat.S_ISREG(status.st_mode):
        _READ_INPUTS[status.st_dev, status.st_ino] = (label, status.st_mtime_ns, status.st_size)


def forget_read_inputs() -> None:
    """Start a new command: files earlier commands of this process read are no longer its inputs
    (OutputPlan.check and the Python API's writers call it before loading their model)."""
    _READ_INPUTS.clear()


def _read_input_at(output: PathLike) -> str | None:
    """The label of the input file read by this process that `output` is (symlinks followed), or None."""
    status = _status(output)
    if status is None:
        return None
    seen = _READ_INPUTS.get((status.st_dev, status.st_ino))
    if seen is None or (seen[1], seen[2]) != (status.st_mtime_ns, status.st_size):
        return None
    return seen[0]


def refuse_same_file(output: PathLike, inputs: Mapping[str, Any] | Iterable[Any], label: str = "output") -> None:
    """InputError when `output` is the same file as one of `inputs` or as a file the model loader has read
    (its external data; `note_held_input`), by device + inode with symlinks followed."""
    mine = file_identity(output)
    if mine is None:
        return
    read = _read_input_at(output)
    if read is not None:
        raise InputError(f"{os.fspath(output)} ({label}) is the same file as {read}, which the model reads; "
                         "refusing to overwrite an input")
    for input_label, source in labelled_paths(inputs):
        if file_identity(source) == mine:
            named = f"the input {source}" if input_label == "input" else f"{input_label} {source}"
            raise InputError(f"{os.fspath(output)} ({label}) is the same file as {named}; "
                             "refusing to overwrite an input")

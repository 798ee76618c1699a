"""The one reader of the small text files segcost reads besides models.

`read_text_file` (and `read_toml_file`, `read_json_file` on top of it) reads configs, budgets
files, baselines, target profiles and sweep specs. It opens without blocking, checks the
opened descriptor is a regular file no larger than a cap, and reads at most that many bytes,
so a FIFO, `/dev/zero` or a symlink to either is refused at once.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tomllib
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import PathLike, check_path_text, file_kind

MAX_CONFIG_BYTES = 1 << 20      # budgets files, pyproject.toml, target profiles, sweep specs: 1 MiB
MAX_BASELINE_BYTES = 64 << 20   # baselines list every layer: 64 MiB is ~400k layers


def read_text_file(path: PathLike, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a small regular file (config, baseline, profile, sweep spec).

    Args:
        path: the file (a symlink to a regular file is fine).
        what: what the file is, for messages ("budgets file", "baseline").
        max_bytes: size cap in bytes.

    Raises:
        InputError: naming the file, when it is missing, not a regular file (FIFO, device,
            directory: checked on the opened descriptor, so nothing blocks or streams
            forever), larger than `max_bytes`, or not UTF-8.
    """
    text_path = check_path_text(path, what)
    try:
        # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
        handle = os.open(text_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(f"{text_path}: cannot read: no such {what}") from None
    except OSError as error:
        raise InputError(f"{text_path}: cannot read {what} ({error.strerror or error})") from None
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            raise InputError(f"{text_path}: {what} must be a regular file, not {file_kind(status.st_mode)}")
        if status.st_size > max_bytes:
            raise InputError(f"{text_path}: {what} is {status.st_size:,} bytes; the limit is {max_bytes:,}")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(handle, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise InputError(f"{text_path}: {what} grew beyond the limit of {max_bytes:,} bytes while being read")
    except OSError as error:
        raise InputError(f"{text_path}: cannot read {what} ({error.strerror or error})") from None
    finally:
        os.close(handle)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{text_path}: {what} is not UTF-8 text (byte {error.start})") from None


def read_toml_file(path: PathLike, what: str) -> dict[str, Any]:
    """The TOML document of a config-like file (see `read_text_file`); syntax errors name the file."""
    return parse_toml(read_text_file(path, what), os.fspath(path), what)


def parse_toml(text: str, where: str, what: str) -> dict[str, Any]:
    """`text` as a TOML document.

    Raises:
        InputError: starting with `where` (a path, or a built-in file's name) and naming `what`,
            for a syntax error or nesting deeper than the parser can take.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{where}: invalid TOML ({what} is not valid TOML: {error})") from None
    except RecursionError:
        raise InputError(f"{where}: {what} is nested too deeply") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def read_json_file(path: PathLike, what: str, max_bytes: int = MAX_BASELINE_BYTES) -> Any:
    """The JSON document of a file (see `read_text_file`); NaN, Infinity and out-of-range floats are errors."""
    text = read_text_file(path, what, max_bytes)
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{os.fspath(path)}: {what} is nested too deeply") from None
    except ValueError as error:   # JSONDecodeError, and ints past Python's digit limit
        raise InputError(f"{os.fspath(path)}: {what} is not valid JSON ({error})") from None

"""Numbers in text segcost parses itself: ASCII digits only, range-checked where they are read.

Python's int() and float() accept far more than a number as a person types it in an option or a
spec: any Unicode decimal digit (`"６４"`, `"٤"`), underscores between digits (`"4_0"`) and
surrounding whitespace (`" 4"`). onnxruntime and other tools refuse those, so segcost reading
`x=1x3x６４x６４` as 64 would describe a model no other tool accepts. And a value past int64
(an ONNX dim is an int64) would fail later inside protobuf, far from the option that caused it.
So every count and shape segcost parses from text goes through `parse_count`, every decimal
through `parse_decimal`, and `--input-shape` (the CLI, budgets files, the API) through
`parse_input_shapes`, which also refuses an input named twice instead of letting the last win.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from segcost.errors import InputError

INT64_MAX = (1 << 63) - 1     # ONNX dims and counts are int64
_COUNT = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
SHAPE_EXAMPLE = "NAME=DxDxD..., e.g. input=1x3x512x512"

__all__ = ["INT64_MAX", "count_in_range", "is_count_text", "parse_count", "parse_decimal", "parse_input_shapes"]


def is_count_text(text: str) -> bool:
    """True when `text` is a whole number in ASCII digits 0-9 (no sign, space, underscore or other digits)."""
    return _COUNT.fullmatch(text) is not None


def parse_count(text: str, what: str, low: int = 0, high: int = INT64_MAX) -> int:
    """The integer `text` spells in ASCII digits, in [low, high].

    `what` starts the message ("--input-shape 'x=1x3x64x64'"). Raises InputError otherwise.
    """
    if not is_count_text(text):
        raise InputError(f"{what}: {text!r} is not a whole number written in ASCII digits 0-9")
    if not count_in_range(text, low, high):
        raise InputError(f"{what}: {text} is out of range; expected {low} to {high:,}")
    return int(text)


def count_in_range(text: str, low: int, high: int) -> bool:
    """`text` is ASCII digits spelling an integer in [low, high] (the length test keeps int() short)."""
    return is_count_text(text) and len(text.lstrip("0")) <= len(str(high)) and low <= int(text) <= high


def parse_decimal(text: str, what: str) -> float:
    """The finite number `text` spells with ASCII digits (sign, point and exponent allowed: "-1.5e3").

    Raises InputError for other text (Unicode digits, underscores, spaces, "nan", "inf") or a
    value that overflows a float.
    """
    if _DECIMAL.fullmatch(text) is None:
        raise InputError(f"{what}: {text!r} is not a number written in ASCII digits (such as 2 or 1.5)")
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{what}: {text} is too large")
    return value


def parse_input_shapes(specs: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """``name=1x3x512x512`` strings (or just ``1x3x512x512`` for a single-input model) → ``{name: dims}``.

    Dims are separated by ``x`` or ``,``; each is ASCII digits in [1, INT64_MAX]. An unnamed
    spec has the name "". Raises InputError naming the spec: a malformed or out-of-range dim, or
    an input given twice (the last would silently win otherwise).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, _, dims_text = spec.rpartition("=")
        parts = dims_text.lower().replace(",", "x").split("x")
        if not dims_text or not all(parts):
            raise InputError(f"--input-shape {spec!r}: expected {SHAPE_EXAMPLE}")
        bad = next((part for part in parts if not count_in_range(part, 1, INT64_MAX)), None)
        if bad is not None:
            raise InputError(f"--input-shape {spec!r}: every dimension must be a whole number from 1 to "
                             f"{INT64_MAX:,} in ASCII digits 0-9, got {bad!r}")
        dims = tuple(int(part) for part in parts)
        if name in shapes:
            which = f"input {name!r}" if name else "the model's input"
            raise InputError(f"--input-shape given twice for {which} ({'x'.join(map(str, shapes[name]))} and "
                             f"{'x'.join(map(str, dims))}); give each input once")
        shapes[name] = dims
    return shapes

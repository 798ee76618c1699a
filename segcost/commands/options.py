"""Options shared by several commands, and the number types of every option (ASCII digits only)."""

from __future__ import annotations

import re

import click

from segcost.errors import InputError
from segcost.fileio.numbers import INT64_MAX, count_in_range, parse_decimal

_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)

TRUST_FLAG = "--trust-model-code"
_META_KEY = "segcost.trust_model_code"


def _remember_trust(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_META_KEY] = True   # ctx.meta is shared with the group's context: read by trusts_model_code()


def trust_model_code_option(function):
    """``--trust-model-code``: let MODEL be an input that runs code when loaded (PyTorch inputs)."""
    return click.option(TRUST_FLAG, is_flag=True, expose_value=False, callback=_remember_trust,
                        help="Allow MODEL to be a PyTorch input, which runs its code: a .pt2 file is unpickled, "
                             "a .pt/.pth TorchScript file runs its scripted code, a package.module:factory spec "
                             "imports and calls Python. ONNX files are data and never need this.")(function)


def trusts_model_code() -> bool:
    """True when the running command was given --trust-model-code."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_META_KEY))


class AsciiNumber(click.ParamType):
    """An int or float option in ASCII digits only (segcost.fileio.numbers), in place of click's int/float.

    click converts with int()/float(), which take "٤", "６４", "4_0" and " 4". `minimum` (ints)
    refuses smaller values, as click.IntRange(min=...) did; with None an int may carry a "-"
    (the command checks its range and says why).
    """

    def __init__(self, kind: type = int, minimum: int | None = None) -> None:
        self.kind, self.minimum = kind, minimum
        self.name = "integer" if kind is int else "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value   # a default
        text = str(value)
        if self.kind is float:
            if _NON_FINITE.fullmatch(text):
                return float(text)   # the command refuses it with its own reason ("must be a finite number")
            try:
                return parse_decimal(text, "value")
            except InputError:
                self.fail(f"{text!r} is not a number written in ASCII digits (such as 2 or 1.5)", param, ctx)
        digits = text[1:] if self.minimum is None and text.startswith("-") else text
        if not count_in_range(digits, 0 if self.minimum is None else self.minimum, INT64_MAX):   # |value| <= INT64_MAX
            bound = f" >= {self.minimum}" if self.minimum is not None else ""
            self.fail(f"{text!r} is not a whole number{bound} written in ASCII digits 0-9", param, ctx)
        return int(text)


def count_type(minimum: int) -> AsciiNumber:
    """A whole-number option of at least `minimum`, ASCII digits only."""
    return AsciiNumber(int, minimum)


INTEGER = AsciiNumber(int)
DECIMAL = AsciiNumber(float)

"""Options shared by several commands, and the number types of every option (ASCII digits only)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import click
from click.core import ParameterSource

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


@dataclass(frozen=True)
class _Condition:
    """One alternative of a requirement: option `param` set, or equal to `value`; `negated`: not so.

    Set: a flag that is on, a repeatable option given at least once, any other option given a value —
    an empty one too (`--baseline ''` is given, and refused by what reads it, not "needs --baseline").
    """

    param: str
    text: str   # as the user types it: "--int8", "--backend ray"
    value: str | None = None
    negated: bool = False

    def holds(self, params: Mapping[str, object]) -> bool:
        current = params.get(self.param)
        # identity, not `in (None, False, ())`: 0 == False, and a given 0 (or 0.0) is a value like any other
        met = not (current is None or current is False or current == ()) if self.value is None \
            else current == self.value
        return met != self.negated


class OptionNeedsCommand(click.Command):
    """A click command with a declarative table of which options need which, checked before the command runs.

    ``needs`` maps an option, as the user types it ("--max-drop"), to what it needs to have any
    effect: ``"--int8"`` (that option set), ``"--backend ray"`` (that option at that value),
    ``"--pareto or --pareto-html"`` (any one of them), ``"no --reference"`` (that option not
    set); a tuple of such requirements needs all of them. An option the command would silently
    ignore is an error (InputError, exit 2) naming what it needs, raised before any work.
    Only options given on the command line count (click's ``Context.get_parameter_source``),
    so a default never triggers an error. Every option the table names must exist: a typo
    raises ValueError when the command is built. Declare with
    ``@click.command(cls=OptionNeedsCommand, needs={...})``. (click has no option constraints;
    cloup's ``@constraint(If(...), ...)`` has, but segcost's core dependencies are fixed.)
    """

    def __init__(self, *args, needs: Mapping[str, str | tuple[str, ...]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        by_flag = {flag: param.name for param in self.params if isinstance(param, click.Option)
                   for flag in (*param.opts, *param.secondary_opts)}
        self.needs = [(option, self._param(by_flag, option), self._requirement(by_flag, requirement))
                      for option, requirements in (needs or {}).items()
                      for requirement in ((requirements,) if isinstance(requirements, str) else requirements)]

    def _param(self, by_flag: Mapping[str, str | None], flag: str) -> str:
        name = by_flag.get(flag.split("/")[0])
        if name is None:
            raise ValueError(f"command {self.name!r}: option needs table names {flag!r}, which it does not have")
        return name

    def _requirement(self, by_flag: Mapping[str, str | None], text: str) -> list[_Condition]:
        conditions = []
        for alternative in text.split(" or "):
            negated = alternative.startswith("no ")
            flag, _, value = alternative.removeprefix("no ").partition(" ")
            conditions.append(_Condition(self._param(by_flag, flag), flag + (f" {value}" if value else ""),
                                         value or None, negated))
        return conditions

    def invoke(self, ctx: click.Context):
        check_option_needs(ctx, self.needs)
        return super().invoke(ctx)


def check_option_needs(ctx: click.Context, needs: list[tuple[str, str, list[_Condition]]]) -> None:
    """InputError naming every option given on the command line whose requirement (OptionNeedsCommand) is unmet."""
    problems = []
    for option, param, conditions in needs:
        if ctx.get_parameter_source(param) is not ParameterSource.COMMANDLINE:
            continue
        if any(condition.holds(ctx.params) for condition in conditions):
            continue
        if conditions[0].negated:
            problems.append(f"{option} does not combine with {conditions[0].text}")
        else:
            problems.append(f"{option} needs {' or '.join(condition.text for condition in conditions)}")
    if problems:
        raise InputError("; ".join(problems))

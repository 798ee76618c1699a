"""Budget files: `segcost.toml`, or `[tool.segcost]` in `pyproject.toml`.

One ``[[models]]`` table per model (paths relative to the file); every limit is optional:

    [[models]]
    path = "models/deeplabv3lite.onnx"   # or zoo = "MobileNetV2S16+DeepLabV3Lite"
    input_shape = "input=1x3x384x768"
    max_gmacs = 3.6
    max_params_m = 7.0
    max_layer_gmacs = 0.4
    target = "tda4vm"
    max_latency_ms = 12.0
    max_unsupported_ops = 0
    verify = true                        # verifier findings fail the check
    allow_partial = false                # true: MAC/latency budgets may pass on a count that is
                                         # only a lower bound (unsupported ops, one-trip loops)
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from segcost.errors import InputError
from segcost.fileio.paths import check_path_text
from segcost.fileio.reads import read_toml_file

BUILTIN_SOURCE = "builtin:"   # the built-in DeepLabV3Lite, what every command analyzes without MODEL
LIMIT_KEYS = ("max_gmacs", "max_params_m", "max_layer_gmacs", "max_latency_ms", "max_unsupported_ops")
KNOWN_KEYS = {"name", "path", "zoo", "input_shape", "target", "verify", "rules", "allow_partial", *LIMIT_KEYS}


@dataclass
class ModelBudget:
    """Limits for one model; `source` is a file path or ``zoo:NAME``."""

    name: str
    source: str
    input_shapes: list[str] = field(default_factory=list)
    max_gmacs: float | None = None
    max_params_m: float | None = None
    max_layer_gmacs: float | None = None
    max_latency_ms: float | None = None
    max_unsupported_ops: int | None = None
    target: str | None = None
    verify: bool = False
    allow_partial: bool = False   # MAC/latency budgets may pass on a partial count (budget.coverage)
    rules: str = "current"
    config_file: str | None = None  # where the budget was written, for CI annotations

    @property
    def zoo_name(self) -> str | None:
        return self.source[4:] if self.source.startswith("zoo:") else None


def find_config(explicit: str | None, directory: Path | None = None) -> Path | None:
    """--config FILE, else ./segcost.toml, else ./pyproject.toml when it has [tool.segcost].

    An explicit file that is not a regular file is refused by the reader (`load_budgets`);
    an implicit ./segcost.toml is used whatever it is, so a FIFO or device there is refused too.
    """
    if explicit is not None:   # --config '' is refused (empty path), not read as "look for ./segcost.toml"
        return Path(check_path_text(explicit, "--config"))
    directory = directory or Path.cwd()
    if os.path.lexists(directory / "segcost.toml"):
        return directory / "segcost.toml"
    pyproject = directory / "pyproject.toml"
    if os.path.lexists(pyproject) and "segcost" in _tool_table(read_toml_file(pyproject, "pyproject.toml"), pyproject):
        return pyproject
    return None


def _tool_table(document: dict, path: Path) -> dict:
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise InputError(f"{path}: tool must be a table ([tool.segcost]), got {tool!r}")
    return tool


def _section(path: Path) -> dict:
    """The budgets table: the whole segcost.toml, or [tool.segcost] of pyproject.toml."""
    document = read_toml_file(path, "budgets file")
    if path.name != "pyproject.toml":
        return document
    section = _tool_table(document, path).get("segcost", {})
    if not isinstance(section, dict):
        raise InputError(f"{path}: tool.segcost must be a table ([tool.segcost]), got {section!r}")
    return section


def _string(entry: dict, key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InputError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def validate_limit(key: str, value, where: str):
    """`value` if it is a usable limit: a finite, non-negative number (an int for max_unsupported_ops).

    One rule for budgets files, the CLI's --max-* options and the Python API. Raises InputError naming `where`.
    """
    integral = key == "max_unsupported_ops"
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)) \
            or not math.isfinite(value) or math.copysign(1.0, value) < 0:   # -0.0 too: it printed "-0.000"
        kind = "a non-negative integer" if integral else "a non-negative finite number"
        raise InputError(f"{where} must be {kind}, got {value!r}")
    return value


def given_limits(where: Callable[[str], str], *, max_gmacs=None, max_params_m=None, max_layer_gmacs=None,
                 max_unsupported_ops=None, max_latency_ms=None) -> dict[str, float | int]:
    """The limits that were given (not None), each checked by validate_limit, keyed by LIMIT_KEYS name.

    One helper for the CLI's --max-* options and the Python API's max_* arguments; `where(key)` names the
    option or argument in the error. Raises InputError on a negative, NaN or wrongly typed limit.
    """
    limits = {"max_gmacs": max_gmacs, "max_params_m": max_params_m, "max_layer_gmacs": max_layer_gmacs,
              "max_unsupported_ops": max_unsupported_ops, "max_latency_ms": max_latency_ms}
    return {key: validate_limit(key, value, where(key)) for key, value in limits.items() if value is not None}


def _inside_folder(config: Path, relative: str, where: str) -> Path:
    """`relative` joined to the budgets file's folder; InputError when it is absolute or leads out of the
    folder (through "..", or a symlink): the project reads nothing outside the folder of what it was given,
    and a budgets file from a pull request must not make CI open /etc/passwd or another checkout's files."""
    folder = config.parent
    candidate = folder / relative
    if Path(relative).is_absolute() or not candidate.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"{where} {relative!r} is outside the budgets file's folder ({folder.resolve()}); "
                         f"models must lie inside it (put the budgets file in a folder above them)")
    return candidate


def load_budgets(path: Path) -> list[ModelBudget]:
    """The [[models]] budgets of a segcost.toml or pyproject.toml; every problem names the file and key.

    Raises:
        InputError: the file is not a small regular UTF-8 TOML file (fileio.reads.read_toml_file), a key
            is unknown, or a value has the wrong type or range.
    """
    section = _section(path)
    unknown_tables = sorted(set(section) - {"models"})
    if unknown_tables:   # a [[model]] typo used to leave only "no [[models]] budgets"
        close = difflib.get_close_matches(unknown_tables[0], ["models"], n=1)
        raise InputError(f"{path}: unknown key {unknown_tables[0]!r}"
                         + (" (did you mean [[models]]?)" if close else " (the budgets go in [[models]] tables)"))
    entries = section.get("models", [])
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: no [[models]] budgets")
    budgets = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path}: models #{index}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a table")
        unknown = sorted(set(entry) - KNOWN_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
        if ("path" in entry) == ("zoo" in entry):
            raise InputError(f"{where}: give exactly one of path = ... or zoo = ...")
        limits = {key: validate_limit(key, entry[key], f"{where}: {key}") for key in LIMIT_KEYS if key in entry}
        zoo, model_path = _string(entry, "zoo", where), _string(entry, "path", where)
        if zoo is not None:
            source, label = f"zoo:{zoo}", zoo
        else:
            label = check_path_text(model_path or "", f"{where}: path")
            source = str(_inside_folder(path, label, f"{where}: path"))
        budget = ModelBudget(name=_string(entry, "name", where) or label, source=source, config_file=str(path))
        shapes = entry.get("input_shape", [])
        if isinstance(shapes, str):
            shapes = [shapes]
        if not isinstance(shapes, list) or not all(isinstance(shape, str) for shape in shapes):
            raise InputError(f"{where}: input_shape must be a string such as \"input=1x3x512x512\" or a list of "
                             f"them, got {entry['input_shape']!r}")
        budget.input_shapes = shapes
        for key, value in limits.items():
            setattr(budget, key, value)
        budget.target = _string(entry, "target", where)
        if budget.target is not None:
            check_path_text(budget.target, f"{where}: target")
        verify = entry.get("verify", False)
        if not isinstance(verify, bool):
            raise InputError(f"{where}: verify must be true or false, got {verify!r}")
        budget.verify = verify
        allow_partial = entry.get("allow_partial", False)
        if not isinstance(allow_partial, bool):
            raise InputError(f"{where}: allow_partial must be true or false, got {allow_partial!r}")
        budget.allow_partial = allow_partial
        rules = _string(entry, "rules", where)   # "" refused there, as --rules '' is: not the default
        budget.rules = "current" if rules is None else rules
        if budget.max_latency_ms is not None and not budget.target:
            raise InputError(f"{where}: max_latency_ms needs target = \"tda4vm\" (or another profile)")
        # what `check` refuses as options it would ignore (commands.check NEEDS), refused here too
        if budget.target is not None and budget.max_latency_ms is None:
            raise InputError(f"{where}: target is used only with max_latency_ms (a latency budget); add one or "
                             "remove target")
        if "rules" in entry and not budget.verify:
            raise InputError(f"{where}: rules selects the verifier's rule table; it needs verify = true")
        budgets.append(budget)
    return budgets

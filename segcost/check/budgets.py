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
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from segcost.errors import InputError

BUILTIN_SOURCE = "builtin:"   # the built-in DeepLabV3Lite, what every command analyzes without MODEL
LIMIT_KEYS = ("max_gmacs", "max_params_m", "max_layer_gmacs", "max_latency_ms", "max_unsupported_ops")
KNOWN_KEYS = {"name", "path", "zoo", "input_shape", "target", "verify", "rules", *LIMIT_KEYS}


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
    rules: str = "current"
    config_file: str | None = None  # where the budget was written, for CI annotations

    @property
    def zoo_name(self) -> str | None:
        return self.source[4:] if self.source.startswith("zoo:") else None


def find_config(explicit: str | None, directory: Path | None = None) -> Path | None:
    """--config FILE, else ./segcost.toml, else ./pyproject.toml when it has [tool.segcost]."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"{explicit}: no such budgets file")
        return path
    directory = directory or Path.cwd()
    if (directory / "segcost.toml").is_file():
        return directory / "segcost.toml"
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file() and "segcost" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    return None


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: invalid TOML ({error})") from None


def validate_limit(key: str, value, where: str):
    """`value` if it is a usable limit: a finite, non-negative number (an int for max_unsupported_ops).

    One rule for budgets files, the CLI's --max-* options and the Python API. Raises InputError naming `where`.
    """
    integral = key == "max_unsupported_ops"
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)) \
            or not math.isfinite(value) or value < 0:
        kind = "a non-negative integer" if integral else "a non-negative finite number"
        raise InputError(f"{where} must be {kind}, got {value!r}")
    return value


def load_budgets(path: Path) -> list[ModelBudget]:
    document = _read_toml(path)
    section = document.get("tool", {}).get("segcost", {}) if path.name == "pyproject.toml" else document
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
        source = f"zoo:{entry['zoo']}" if "zoo" in entry else str(path.parent / str(entry["path"]))
        budget = ModelBudget(name=str(entry.get("name") or entry.get("zoo") or entry["path"]), source=source,
                             config_file=str(path))
        shapes = entry.get("input_shape", [])
        budget.input_shapes = [shapes] if isinstance(shapes, str) else list(shapes)
        for key in LIMIT_KEYS:
            if key in entry:
                setattr(budget, key, validate_limit(key, entry[key], f"{where}: {key}"))
        budget.target = entry.get("target")
        budget.verify = bool(entry.get("verify", False))
        budget.rules = str(entry.get("rules", "current"))
        if budget.max_latency_ms is not None and not budget.target:
            raise InputError(f"{where}: max_latency_ms needs target = \"tda4vm\" (or another profile)")
        budgets.append(budget)
    return budgets

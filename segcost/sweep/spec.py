"""The sweep spec: a TOML file naming the axes to sweep and the measures to collect.

```toml
measures = ["macs", "params", "latency", "findings"]     # + "ort_latency" (optional)

[axes]
models = [
    "MobileNetV2+FPNLite",                                 # a zoo name (`segcost zoo list`)
    { model = "mypkg.nets:build", num_classes = ["default"] },   # module:factory, own axes
    { model = "torchvision.models.segmentation:lraspp_mobilenet_v3_large", input_sizes = ["512"],
      factory_args = ["weights=None", "weights_backbone=None"] },     # its keyword arguments
]
input_sizes = ["768x384", "512x512"]     # WIDTHxHEIGHT like the seed table, 520 = square, "default"
width_multipliers = [1.0, 1.4]           # only for models whose family has one (see points.py)
num_classes = [19, 32]                   # or "default" (the zoo model's / factory's own)
targets = ["tda4vm", "am62a"]            # target profiles for "latency" (or profile .toml paths)
precisions = ["fp32", "int8"]

[settings]                               # all optional
rules = "current"                        # verifier rule set for "findings"
calib_size = 8                           # int8 calibration samples (synthetic)
ort_runs = 10                            # "ort_latency": measured runs (median), warm-up runs, threads
ort_warmup = 2
ort_threads = 1
point_timeout_s = 1800                   # a point still running after this is stopped (an error row)
```

An entry of `models` may be an inline table that overrides `input_sizes`, `num_classes` and
`width_multipliers` for that model; a module:factory entry's `factory_args` are its keyword
arguments, "KEY=VALUE" strings read as `analyze --factory-arg` reads them
(frontends.torch.parse_factory_args: VALUE a Python literal, else a string), except
num_classes and width_mult, which are the axes'. Every problem is an InputError naming the file and key.
Parsing imports neither torch nor the zoo's model code. The file is read by
segcost.fileio.reads.read_toml_file (a regular file of at most 1 MiB), and the number of points is
computed from the axes before anything is expanded: more than MAX_POINTS is an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import check_path_text
from segcost.fileio.reads import read_toml_file
from segcost.frontends.torch import parse_factory_args

MEASURES = ("macs", "params", "latency", "findings", "ort_latency")
DEFAULT_MEASURES = ("macs", "params")
PRECISIONS = ("fp32", "int8")
DEFAULT_TARGETS = ("tda4vm",)
AXES = ("models", "input_sizes", "width_multipliers", "num_classes", "targets", "precisions")
MODEL_AXES = ("input_sizes", "width_multipliers", "num_classes")
AXIS_KEYWORDS = ("num_classes", "width_mult")   # the keywords a factory gets from the axes
TOP_LEVEL_KEYS = ("measures", "axes", "settings")
DEFAULT = "default"
MAX_SIDE = 16384
MAX_POINTS = 10_000   # a sweep beyond this takes days; split the spec
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Settings:
    """How each point is measured (part of every point's content hash).

    Attributes:
        rules: verifier rule set for the "findings" measure.
        calib_size: synthetic calibration samples for int8 points.
        ort_runs: measured onnxruntime runs for "ort_latency" (the median is reported).
        ort_warmup: onnxruntime warm-up runs.
        ort_threads: onnxruntime intra-op threads.
        point_timeout_s: seconds a point may run before it is stopped and becomes an error row
            (not cached; not part of the points' hashes, since it does not change a result).
    """

    rules: str = "current"
    calib_size: int = 8
    ort_runs: int = 10
    ort_warmup: int = 2
    ort_threads: int = 1
    point_timeout_s: int = 1800


@dataclass(frozen=True)
class ModelEntry:
    """One model of the sweep with the axis values that apply to it.

    Attributes:
        model: a zoo model name or a `package.module:factory` spec.
        is_factory: True for `module:factory` specs.
        input_sizes: (height, width) pairs; None stands for the zoo model's default size.
        num_classes: class counts; None stands for the model's own default.
        width_multipliers: width values; None stands for "the family's own width". For a
            factory, a number is passed as `width_mult=`; for a zoo model, points.py maps it.
        width_given: whether width_multipliers came from the spec (global axis or the entry).
        width_from_entry: whether the entry itself set width_multipliers (required for factories).
        factory_args: a factory's keyword arguments as "KEY=VALUE" strings (see the module docstring).
    """

    model: str
    is_factory: bool
    input_sizes: tuple[tuple[int, int] | None, ...]
    num_classes: tuple[int | None, ...]
    width_multipliers: tuple[float | None, ...]
    width_given: bool = False
    width_from_entry: bool = False
    factory_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep spec.

    Attributes:
        source: the spec file (for messages and relative paths).
        models: one entry per model, in spec order.
        targets: resolved target profiles (built-in names or absolute .toml paths); `(None,)`
            when "latency" is not measured.
        precisions: "fp32" and/or "int8".
        measures: measures to collect, in MEASURES order.
        settings: measurement settings.
    """

    source: str
    models: tuple[ModelEntry, ...]
    targets: tuple[str | None, ...]
    precisions: tuple[str, ...]
    measures: tuple[str, ...]
    settings: Settings


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec TOML file (see the module docstring for the limits)."""
    path = Path(check_path_text(path, "sweep spec"))
    return parse_spec(read_toml_file(path, "sweep spec"), str(path), path.parent)


def parse_spec(data: dict[str, Any], source: str = "<spec>", base_dir: Path = Path(".")) -> SweepSpec:
    """Validate the TOML document `data` of a sweep spec; `base_dir` resolves profile paths."""
    _no_unknown(data, TOP_LEVEL_KEYS, source, "")
    measures = _measures(data.get("measures", list(DEFAULT_MEASURES)), source)
    axes = data.get("axes")
    if not isinstance(axes, dict):
        raise InputError(f"{source}: missing [axes] table (at least axes.models)")
    _no_unknown(axes, AXES, source, "axes.")
    if "models" not in axes:
        raise InputError(f"{source}: axes.models is required (zoo names or package.module:factory specs)")
    sizes = _sizes(axes.get("input_sizes", [DEFAULT]), source, "axes.input_sizes")
    classes = _classes(axes.get("num_classes", [DEFAULT]), source, "axes.num_classes")
    width_given = "width_multipliers" in axes
    widths = _widths(axes.get("width_multipliers", [DEFAULT]), source, "axes.width_multipliers")
    models = tuple(_model_entry(item, index, source, sizes, classes, widths, width_given)
                   for index, item in enumerate(_list(axes["models"], source, "axes.models")))
    seen: set[ModelEntry] = set()
    for index, entry in enumerate(models):
        if entry in seen:
            raise InputError(f"{source}: axes.models[{index}] repeats an earlier entry ({entry.model!r} with "
                             "the same axes)")
        seen.add(entry)
    targets: tuple[str | None, ...]
    if "latency" in measures:
        targets = _targets(axes.get("targets", list(DEFAULT_TARGETS)), source, base_dir)
    elif "targets" in axes:
        raise InputError(f"{source}: axes.targets is only used by the \"latency\" measure; add it to measures "
                         "or remove the targets")
    else:
        targets = (None,)
    precisions = tuple(_unique(_list(axes.get("precisions", ["fp32"]), source, "axes.precisions"), source,
                               "axes.precisions"))
    for value in precisions:
        if value not in PRECISIONS:
            raise InputError(f"{source}: axes.precisions: {value!r} is not one of {', '.join(PRECISIONS)}")
    _check_point_count(models, len(targets) * len(precisions), source)
    return SweepSpec(source, models, targets, precisions, measures, _settings(data.get("settings", {}), source))


def point_count(models: tuple[ModelEntry, ...], per_model_point: int) -> int:
    """Points the axes define (an upper bound: axis values a model ignores collapse when expanded)."""
    return per_model_point * sum(math.prod(map(len, (entry.input_sizes, entry.width_multipliers,
                                                     entry.num_classes))) for entry in models)


def _check_point_count(models: tuple[ModelEntry, ...], per_model_point: int, source: str) -> None:
    count = point_count(models, per_model_point)
    if count > MAX_POINTS:
        raise InputError(f"{source}: the axes define {count:,} points; at most {MAX_POINTS:,} per spec "
                         "(split the sweep into several specs)")


def _no_unknown(table: dict, known: tuple[str, ...], source: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise InputError(f"{source}: unknown key {prefix}{key} (known: {', '.join(known)})")


def _list(value: Any, source: str, key: str) -> list:
    if not isinstance(value, list) or not value:
        raise InputError(f"{source}: {key} must be a non-empty list")
    return value


def _unique(values: list, source: str, key: str) -> list:
    """`values` when no value repeats (a set: linear in the list's length)."""
    seen: set = set()
    for value in values:
        try:
            repeated = value in seen
        except TypeError:   # a table or list where a plain value belongs
            raise InputError(f"{source}: {key}: {value!r} is not a valid entry") from None
        if repeated:
            raise InputError(f"{source}: {key} lists {value!r} more than once")
        seen.add(value)
    return list(values)


def _measures(value: Any, source: str) -> tuple[str, ...]:
    requested = _unique(_list(value, source, "measures"), source, "measures")
    for name in requested:
        if name not in MEASURES:
            raise InputError(f"{source}: measures: unknown measure {name!r} (known: {', '.join(MEASURES)})")
    return tuple(name for name in MEASURES if name in requested)


def parse_size(value: Any, source: str, key: str) -> tuple[int, int] | None:
    """'768x384' (WIDTHxHEIGHT) → (384, 768); 520 or '520' → (520, 520); 'default' → None."""
    if value == DEFAULT:
        return None
    text = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    match = re.fullmatch(r"([0-9]+)(?:x([0-9]+))?", text or "", re.ASCII)   # int() would take "６４" too
    if match is None:
        raise InputError(f"{source}: {key}: {value!r} is not a size; expected WIDTHxHEIGHT (e.g. \"768x384\"), "
                         f"one number for a square, or \"default\"")
    width, height = (int(side) if len(side) <= 9 else MAX_SIDE + 1   # no 5000-digit int(): out of range anyway
                     for side in (match.group(1), match.group(2) or match.group(1)))
    if not 0 < height <= MAX_SIDE or not 0 < width <= MAX_SIDE:
        raise InputError(f"{source}: {key}: {value!r}: each side must be between 1 and {MAX_SIDE}")
    return (height, width)


def _sizes(value: Any, source: str, key: str) -> tuple[tuple[int, int] | None, ...]:
    values = _list(value, source, key)
    sizes = [parse_size(item, source, f"{key}[{index}]") for index, item in enumerate(values)]
    return tuple(_unique(sizes, source, key))


def _defaultable(value: Any, source: str, key: str, convert, what: str) -> tuple:
    """An axis list of `"default"` (→ None) or values `convert` accepts (it returns None to reject one)."""
    result = []
    for index, item in enumerate(_list(value, source, key)):
        converted = None if item == DEFAULT or isinstance(item, bool) else convert(item)
        if item != DEFAULT and converted is None:
            raise InputError(f"{source}: {key}[{index}]: {item!r} is not {what} or \"default\"")
        result.append(converted)
    return tuple(_unique(result, source, key))


def _classes(value: Any, source: str, key: str) -> tuple[int | None, ...]:
    return _defaultable(value, source, key, lambda item: item if isinstance(item, int) and item >= 1 else None,
                        "a positive number of classes")


def _widths(value: Any, source: str, key: str) -> tuple[float | None, ...]:
    return _defaultable(value, source, key,
                        lambda item: float(item) if isinstance(item, (int, float)) and 0 < item <= 8 else None,
                        "a width multiplier in (0, 8]")


def _model_entry(item: Any, index: int, source: str, sizes, classes, widths, width_given: bool) -> ModelEntry:
    key = f"axes.models[{index}]"
    overrides: dict[str, Any] = {}
    if isinstance(item, dict):
        _no_unknown(item, ("model", *MODEL_AXES, "factory_args"), source, f"{key}.")
        overrides = {name: value for name, value in item.items() if name != "model"}
        item = item.get("model")
        if item is None:
            raise InputError(f"{source}: {key} needs model = \"zoo name or package.module:factory\"")
    if not isinstance(item, str) or not item.strip():
        raise InputError(f"{source}: {key}: expected a zoo model name or package.module:factory, got {item!r}")
    name = item.strip()
    is_factory = ":" in name
    if is_factory and not FACTORY_PATTERN.match(name):
        raise InputError(f"{source}: {key}: {name!r} is not a package.module:factory spec")
    if not is_factory:
        from segcost.zoo.registry import get

        try:
            get(name)
        except InputError as error:
            raise InputError(f"{source}: {key}: {error}") from None
    if "input_sizes" in overrides:
        sizes = _sizes(overrides["input_sizes"], source, f"{key}.input_sizes")
    if is_factory and None in sizes:
        raise InputError(f"{source}: {key}: a module:factory model has no default input size; give input_sizes "
                         "(in [axes] or in the entry)")
    if "num_classes" in overrides:
        classes = _classes(overrides["num_classes"], source, f"{key}.num_classes")
    width_from_entry = "width_multipliers" in overrides
    if width_from_entry:
        widths = _widths(overrides["width_multipliers"], source, f"{key}.width_multipliers")
    elif is_factory:
        widths = (None,)  # segcost cannot know whether a factory takes width_mult: the entry must say so
    factory_args: tuple[str, ...] = ()
    if "factory_args" in overrides:
        if not is_factory:
            raise InputError(f"{source}: {key}.factory_args: only a package.module:factory model takes keyword "
                             f"arguments ({name!r} is a zoo model)")
        factory_args = _factory_args(overrides["factory_args"], source, f"{key}.factory_args")
    return ModelEntry(name, is_factory, sizes, classes, widths, width_given or width_from_entry, width_from_entry,
                      factory_args)


def _factory_args(value: Any, source: str, key: str) -> tuple[str, ...]:
    """A list of "KEY=VALUE" strings, each KEY once and none of them an axis keyword; returned sorted by KEY."""
    items = _list(value, source, key)
    if not all(isinstance(item, str) for item in items):
        raise InputError(f"{source}: {key}: expected \"KEY=VALUE\" strings, e.g. [\"weights=None\"]")
    keys = []
    for index, item in enumerate(items):
        try:
            (argument,) = parse_factory_args((item,))
        except InputError as error:
            raise InputError(f"{source}: {key}[{index}]: {error}") from None
        if argument in AXIS_KEYWORDS:
            axis = "num_classes" if argument == "num_classes" else "width_multipliers"
            raise InputError(f"{source}: {key}[{index}]: {argument} comes from the {axis} axis; set it there")
        keys.append(argument)
    _unique(keys, source, f"{key} (keys)")
    # keyword arguments have no order: sorted by key, the same arguments in another order are the same point
    return tuple(item.strip() for _, item in sorted(zip(keys, items), key=lambda pair: pair[0]))


def _targets(value: Any, source: str, base_dir: Path) -> tuple[str, ...]:
    from segcost.targets.profile_toml import builtin_profiles, load_profile

    resolved = []
    for index, item in enumerate(_list(value, source, "axes.targets")):
        if not isinstance(item, str) or not item:
            raise InputError(f"{source}: axes.targets[{index}]: expected a profile name or .toml path, got {item!r}")
        check_path_text(item, f"{source}: axes.targets[{index}]")
        is_file = item.endswith(".toml") or (base_dir / item).is_file()
        name = str((base_dir / item).resolve()) if is_file and item not in builtin_profiles() else item
        try:
            load_profile(name)
        except InputError as error:
            raise InputError(f"{source}: axes.targets[{index}]: {error}") from None
        resolved.append(name)
    return tuple(_unique(resolved, source, "axes.targets"))


def _settings(value: Any, source: str) -> Settings:
    if not isinstance(value, dict):
        raise InputError(f"{source}: settings must be a table")
    known = tuple(Settings.__dataclass_fields__)
    _no_unknown(value, known, source, "settings.")
    defaults = Settings()
    for name, item in value.items():
        expected = type(getattr(defaults, name))
        if not isinstance(item, expected) or isinstance(item, bool):
            raise InputError(f"{source}: settings.{name}: expected {expected.__name__}, got {item!r}")
        if expected is int and item < (0 if name == "ort_warmup" else 1):
            raise InputError(f"{source}: settings.{name}: {item} is too small")
    if "rules" in value:
        from segcost.passes.verify_conv import load_rules

        try:
            load_rules(value["rules"])
        except InputError as error:
            raise InputError(f"{source}: settings.rules: {error}") from None
    return Settings(**value)

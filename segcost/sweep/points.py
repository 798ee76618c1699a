"""Expanding a sweep spec into points, each with a content hash, and matching seed-table rows.

A point is one (model, input size, width multiplier, classes, target, precision). Its hash
covers everything its result depends on: the axis values, the measures and settings, the
target profile's text, the source of segcost's analysis code and of a `module:factory`
model's own module file (not of modules it imports: use --no-cache after changing those),
and the versions of torch/onnx/onnxruntime. Equal hash ⇒ the cached result is valid.

Width multipliers apply where the model's builder has a width parameter (`width_mult` or
`depth_multiplier`); in the current zoo those are MobileNetV2+FPNLite and
MobileNetV2-1.4+FPNLite (`width_mult`; ≠ 1.0 switches to ReLU6 and 8-aligned decoder
channels, as the vendor's 1.4 config does) and the TF DeepLab MobileNetV2 models
deeplabv3_mnv2, deeplabv3_mnv2_dm05 and MobileNetV2+DeepLab (`depth_multiplier`). Every
other zoo model runs at its own width and gets one point whatever the width axis holds.
A `module:factory` model gets `width_mult=` only when its own spec entry lists widths.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from pathlib import Path

from segcost.sweep.spec import ModelEntry, Settings, SweepSpec

WIDTH_PARAMETERS = ("width_mult", "depth_multiplier")
# Every package and module a point's result depends on (tests/sweep/test_fingerprint.py checks them
# against what sweep.run imports); file I/O (fileio) is left out: it does not change a value.
FINGERPRINT_PACKAGES = ("analyzer", "data", "frontends", "ir", "passes", "shapes", "targets", "quant", "zoo")
FINGERPRINT_MODULES = ("pipeline.py", "errors.py", "sweep/run.py", "sweep/factory.py", "sweep/points.py",
                       "sweep/spec.py", "sweep/progress.py")
FINGERPRINT_SUFFIXES = (".py", ".toml", ".csv")
VERSIONED_DISTRIBUTIONS = ("torch", "torchvision", "onnx", "onnxruntime")
KEY_LENGTH = 20


@dataclass(frozen=True)
class SeedMatch:
    """The seed-table row whose architecture, input size and classes a point reproduces.

    Attributes:
        dataset: the row's dataset column.
        model: the row's model name (a "-QAT" row for int8 points).
        published_gmacs: the row's GMACs, if published.
        miou: the row's published mean IoU, if any.
    """

    dataset: str
    model: str
    published_gmacs: float | None
    miou: float | None


@dataclass(frozen=True)
class Point:
    """One job of a sweep; picklable, so it travels to process-pool and Ray workers.

    Attributes:
        index: position in the expanded sweep (the order of the result table).
        model: a zoo model name or a `package.module:factory` spec.
        is_factory: True for `module:factory` specs.
        height, width: the input size (batch 1, 3 channels).
        width_mult: the width multiplier, None where the model has none.
        num_classes: the number of classes, None for a factory's own default.
        target: target profile for "latency" (built-in name or .toml path), else None.
        precision: "fp32" or "int8".
        measures: measures to collect.
        settings: measurement settings.
        key: the content hash (see the module docstring).
        search_path: directory put on sys.path before importing a factory's module.
        width_parameter: the builder's width keyword for zoo models ("" for none).
        seed: the matching seed-table row, if any (not part of the hash).
        factory_args: a factory's other keyword arguments, "KEY=VALUE" strings (spec.py).
    """

    index: int
    model: str
    is_factory: bool
    height: int
    width: int
    width_mult: float | None
    num_classes: int | None
    target: str | None
    precision: str
    measures: tuple[str, ...]
    settings: Settings
    key: str = ""
    search_path: str = ""
    width_parameter: str = ""
    seed: SeedMatch | None = field(default=None, compare=False)
    factory_args: tuple[str, ...] = ()

    @property
    def input_size(self) -> str:
        """WIDTHxHEIGHT, as the seed table writes sizes."""
        return f"{self.width}x{self.height}"

    @property
    def build_key(self) -> tuple:
        """Points with equal build keys share one export (they differ only in target/precision)."""
        return (self.model, self.factory_args, self.height, self.width, self.width_mult, self.num_classes,
                self.settings)

    @property
    def label(self) -> str:
        parts = [self.model, *self.factory_args, self.input_size]
        if self.width_mult is not None:
            parts.append(f"w{self.width_mult:g}")
        if self.num_classes is not None:
            parts.append(f"{self.num_classes}cls")
        parts += [part for part in (self.target and Path(self.target).stem, self.precision) if part]
        return " ".join(parts)


@dataclass
class Expansion:
    """The points of a spec, plus notes about axis values that did not apply to some models."""

    points: list[Point]
    notes: list[str]


def expand(spec: SweepSpec, fingerprint: str | None = None, search_path: str | None = None) -> Expansion:
    """All points of `spec` in table order: models × sizes × widths × classes × precisions × targets.

    Args:
        spec: a validated spec.
        fingerprint: code fingerprint for the hashes (default: `code_fingerprint()`).
        search_path: where factories' modules are imported from (default: the current directory).
    """
    from segcost.zoo.registry import get

    fingerprint = fingerprint or code_fingerprint()
    search_path = search_path or os.getcwd()
    profile_hashes: dict[str | None, str] = {target: _profile_hash(target) for target in spec.targets
                                             if target is not None}
    points: list[Point] = []
    notes: list[str] = []
    seen: set[tuple] = set()
    hashed_settings = asdict(spec.settings)
    del hashed_settings["point_timeout_s"]   # how long a point may take does not change its result
    for entry in spec.models:
        zoo_model = None if entry.is_factory else get(entry.model)
        widths, parameter = _entry_widths(entry, zoo_model, notes)
        source_hash = _factory_source_hash(entry.model, search_path) if entry.is_factory else ""
        for size in entry.input_sizes:
            if size is None:  # spec.py refuses a default size for a module:factory entry
                assert zoo_model is not None
                size = zoo_model.input_size
            height, width = size
            for width_mult in widths:
                for classes in entry.num_classes:
                    if classes is None and zoo_model is not None:
                        classes = zoo_model.num_classes
                    for precision in spec.precisions:
                        for target in spec.targets:
                            identity = (entry.model, entry.factory_args, height, width, width_mult, classes,
                                        precision, target)
                            if identity in seen:
                                continue
                            seen.add(identity)
                            payload = {
                                "model": entry.model, "height": height, "width": width, "width_mult": width_mult,
                                "width_parameter": parameter, "num_classes": classes, "target": target,
                                "target_profile": profile_hashes.get(target), "precision": precision,
                                "measures": list(spec.measures), "settings": hashed_settings,
                                "code": fingerprint, "factory_source": source_hash,
                                # only when given: the hashes of points without them (their caches) stay
                                **({"factory_args": list(entry.factory_args)} if entry.factory_args else {}),
                            }
                            seed = None if zoo_model is None else match_seed(
                                entry.model, width_mult, height, width, classes, precision)
                            points.append(Point(
                                len(points), entry.model, entry.is_factory, height, width, width_mult, classes,
                                target, precision, spec.measures, spec.settings, content_hash(payload),
                                search_path, parameter, seed, entry.factory_args))
    return Expansion(points, notes)


def content_hash(payload: dict) -> str:
    """A stable hex digest of a JSON-serialisable payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def _entry_widths(entry: ModelEntry, zoo_model, notes: list[str]) -> tuple[list[float | None], str]:
    """The width values a model is swept at, and the builder keyword that takes them."""
    if entry.is_factory:
        return (list(entry.width_multipliers) if entry.width_from_entry else [None]), \
            ("width_mult" if entry.width_from_entry else "")
    family = width_family(zoo_model)
    if family is None:
        if entry.width_given and any(value is not None for value in entry.width_multipliers):
            notes.append(f"{entry.model}: its family has no width multiplier; swept at its own width only")
        return [None], ""
    parameter, default = family
    widths: list[float | None] = []
    for value in entry.width_multipliers:
        value = default if value is None else value
        if value not in widths:
            widths.append(value)
    return widths, parameter


def builder_parts(zoo_model) -> tuple:
    """(builder function, keyword arguments) of a zoo model's `build` (a function or a functools.partial)."""
    build = zoo_model.build
    if isinstance(build, partial):
        return build.func, dict(build.keywords)
    return build, {}


def width_family(zoo_model) -> tuple[str, float] | None:
    """(keyword, default width) when the zoo model's builder takes a width multiplier, else None."""
    function, keywords = builder_parts(zoo_model)
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    for name in WIDTH_PARAMETERS:
        if name in parameters:
            default = keywords.get(name, parameters[name].default)
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                return name, float(default)
    return None


def _architecture(zoo_model, width_mult: float | None) -> tuple:
    """What a zoo model builds at a given width: its builder function object and keywords.

    Equal tuples ⇒ the same network (builder functions compare by identity, so two closures
    made for different torchvision factories differ).
    """
    function, keywords = builder_parts(zoo_model)
    family = width_family(zoo_model)
    if family is not None:
        keywords[family[0]] = family[1] if width_mult is None else width_mult
    return (function, tuple(sorted(keywords.items())))


@cache
def _seed_architectures() -> tuple:
    """(row, classes, architecture) for every seed row whose architecture the zoo defines."""
    from segcost.zoo.registry import all_models
    from segcost.zoo.table import row_classes, seed_rows

    models = all_models()
    return tuple((row, row_classes(row, models[row.architecture]), _architecture(models[row.architecture], None))
                 for row in seed_rows() if row.architecture in models)


def match_seed(model: str, width_mult: float | None, height: int, width: int, num_classes: int | None,
               precision: str) -> SeedMatch | None:
    """The seed-table row reproduced by a zoo point, or None.

    A row matches when a zoo model with that row's name builds the same network (so
    MobileNetV2+FPNLite at width 1.4 matches MobileNetV2-1.4+FPNLite rows), at the row's
    input size and classes (ADE20K32 → 32, Cityscapes → 19, ...). int8 points match the
    "-QAT" rows only and fp32 points the float rows: published int8 accuracy is QAT accuracy.
    A row without a published mIoU is used only when no other row matches.
    """
    from segcost.zoo.registry import get

    architecture = _architecture(get(model), width_mult)
    candidates = [SeedMatch(row.dataset, row.model, row.published_gmacs, row.miou)
                  for row, classes, row_architecture in _seed_architectures()
                  if row_architecture == architecture and row.height_width == (height, width)
                  and classes == num_classes and (row.model != row.architecture) == (precision == "int8")]
    candidates.sort(key=lambda match: match.miou is None)
    return candidates[0] if candidates else None


def _profile_hash(target: str) -> str:
    from segcost.targets.profile_toml import profile_text

    return hashlib.sha256(profile_text(target).encode()).hexdigest()[:KEY_LENGTH]


def _factory_source_hash(spec: str, search_path: str) -> str:
    """Hash of the source file of a factory's module (found without running the module itself)."""
    module_name = spec.partition(":")[0]
    added = search_path not in sys.path
    if added:
        sys.path.insert(0, search_path)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    finally:
        if added:
            sys.path.remove(search_path)
    origin = getattr(found, "origin", None)
    if not origin or not os.path.isfile(origin):
        return ""
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:KEY_LENGTH]


@cache
def code_fingerprint() -> str:
    """Hash of segcost's version, the source its results depend on, and the exporter/runtime versions."""
    from segcost import __version__

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(__version__.encode())
    paths = [path for package in FINGERPRINT_PACKAGES for path in (root / package).rglob("*")
             if path.suffix in FINGERPRINT_SUFFIXES and "__pycache__" not in path.parts]
    paths += [root / name for name in FINGERPRINT_MODULES if (root / name).is_file()]
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    for distribution in VERSIONED_DISTRIBUTIONS:
        try:
            digest.update(f"{distribution}={importlib.metadata.version(distribution)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{distribution}=absent".encode())
    return digest.hexdigest()[:KEY_LENGTH]

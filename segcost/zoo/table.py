"""The seed benchmark table beside segcost's own count of every row.

Each row's model is built from the zoo, exported to ONNX and analyzed (never counted in
torch), so the table checks the whole pipeline. Results are cached by content: the key
covers the model, classes, input size, segcost's version and the source of the zoo
package, so editing a model definition recomputes exactly the rows it affects.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcost.errors import InputError

# Classes per dataset in the seed table; torchvision rows use their own 21-class heads.
DATASET_CLASSES = {"ADE20K32": 32, "COCOSeg21": 21, "Cityscapes": 19, "VOC2012": 21}
QAT_SUFFIX = "-QAT"
TABLE_COLUMNS = ("family", "dataset", "model", "input_size", "published_gmacs", "computed_gmacs", "delta_pct",
                 "reason")
EXPLAINED_DELTA_PCT = 1.0


@dataclass(frozen=True)
class SeedRow:
    family: str
    dataset: str
    model: str
    input_size: str
    published_gmacs: float | None
    miou: float | None
    notes: str

    @property
    def height_width(self) -> tuple[int, int]:
        """Seed sizes are WxH (768x384 = 768 wide); a single number is a square side."""
        width, _, height = self.input_size.partition("x")
        return (int(height or width), int(width))

    @property
    def architecture(self) -> str:
        return self.model[: -len(QAT_SUFFIX)] if self.model.endswith(QAT_SUFFIX) else self.model


@dataclass
class TableRow:
    seed: SeedRow
    num_classes: int | None
    computed_macs: int | None
    reason: str

    @property
    def computed_gmacs(self) -> float | None:
        return None if self.computed_macs is None else self.computed_macs / 1e9

    @property
    def delta_pct(self) -> float | None:
        if self.computed_macs is None or not self.seed.published_gmacs:
            return None
        return 100.0 * (self.computed_macs / 1e9 - self.seed.published_gmacs) / self.seed.published_gmacs

    def as_record(self) -> dict[str, Any]:
        delta = self.delta_pct
        return {
            "family": self.seed.family, "dataset": self.seed.dataset, "model": self.seed.model,
            "input_size": self.seed.input_size, "published_gmacs": self.seed.published_gmacs,
            "computed_gmacs": None if self.computed_macs is None else round(self.computed_macs / 1e9, 4),
            "delta_pct": None if delta is None else round(delta, 2), "reason": self.reason,
        }


def seed_rows() -> list[SeedRow]:
    text = importlib.resources.files("segcost.zoo").joinpath("seed-zoo.csv").read_text()
    rows = []
    for record in csv.DictReader(text.splitlines()):
        rows.append(SeedRow(
            family=record["family"], dataset=record["dataset"], model=record["model"],
            input_size=record["input_size"],
            published_gmacs=float(record["gmacs"]) if record["gmacs"] else None,
            miou=float(record["miou"]) if record["miou"] else None, notes=record["notes"],
        ))
    return rows


def deviation_notes() -> dict[str, str]:
    """Explanations shared by several rows (keyed by dataset), to print once under the table."""
    from segcost.zoo.registry import family_modules

    notes: dict[str, str] = {}
    for module in family_modules():
        notes.update(getattr(module, "DEVIATION_NOTES", {}))
    return notes


def expected_deviations() -> dict[tuple[str, str, str], str]:
    """Reasons written beside each family's models, keyed (dataset, model, input_size)."""
    from segcost.zoo.registry import family_modules

    reasons: dict[tuple[str, str, str], str] = {}
    for module in family_modules():
        reasons.update(getattr(module, "EXPECTED_DEVIATIONS", {}))
    return reasons


class MacCache:
    """JSON file of computed MACs keyed by a content hash; safe to delete at any time."""

    def __init__(self, directory: Path | None):
        self.path = None if directory is None else directory / "zoo-macs.json"
        self.entries: dict[str, int] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is only a slower run

    def get(self, key: str) -> int | None:
        return self.entries.get(key)

    def put(self, key: str, macs: int) -> None:
        self.entries[key] = macs
        if self.path is not None:
            from segcost.fileio.writes import json_text, write_atomic

            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json_text(self.entries, indent=1, sort_keys=True))


def default_cache_dir() -> Path:
    base = os.environ.get("SEGCOST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "segcost")
    return Path(base)


def _source_fingerprint() -> str:
    digest = hashlib.sha256()
    for root in (Path(__file__).parent, Path(__file__).parent.parent / "analyzer"):
        for path in sorted(root.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def row_classes(seed: SeedRow, model) -> int:
    if seed.family == "torchvision":
        return model.num_classes
    return DATASET_CLASSES.get(seed.dataset, model.num_classes)


def count_exported(model, num_classes: int, height: int, width: int) -> int:
    """Build, export to ONNX (legacy exporter) and analyze; returns the analyzer's exact MACs."""
    from segcost.analyzer import analyze
    from segcost.frontends import onnx as onnx_frontend
    from segcost.frontends.torch import export

    module = model.build(num_classes)
    with tempfile.TemporaryDirectory(prefix="segcost-zoo-") as directory:
        path = export(module, (1, 3, height, width), Path(directory) / "model.onnx")
        return analyze(onnx_frontend.load(path)).totals.macs


def compute_table(rows: list[SeedRow], cache: MacCache, progress: Callable[[str], None] | None = None,
                  counter: Callable[..., int] = count_exported) -> list[TableRow]:
    from segcost import __version__
    from segcost.zoo.registry import all_models

    models = all_models()
    reasons = expected_deviations()
    fingerprint = _source_fingerprint()
    table = []
    for index, seed in enumerate(rows, start=1):
        model = models.get(seed.architecture)
        if model is None:
            table.append(TableRow(seed, None, None, "not defined in segcost's zoo yet"))
            continue
        classes = row_classes(seed, model)
        height, width = seed.height_width
        key = f"{seed.architecture}|{classes}|{height}x{width}|{__version__}|{fingerprint}"
        macs = cache.get(key)
        if macs is None:
            if progress is not None:
                progress(f"[{index}/{len(rows)}] exporting and analyzing {seed.architecture} "
                         f"({classes} classes, {width}x{height})")
            try:
                macs = counter(model, classes, height, width)
            except InputError as error:
                table.append(TableRow(seed, classes, None, f"failed: {error}"))
                continue
            cache.put(key, macs)
        row = TableRow(seed, classes, macs, "")
        delta = row.delta_pct
        reason = reasons.get((seed.dataset, seed.model, seed.input_size)) or \
            reasons.get((seed.dataset, seed.architecture, seed.input_size), "")
        if delta is None and seed.published_gmacs is None:
            reason = reason or "no published GMACs; computed value only"
        elif delta is not None and abs(delta) <= EXPLAINED_DELTA_PCT:
            reason = ""
        elif not reason:
            reason = "unexplained difference"
        row.reason = reason
        table.append(row)
    return table

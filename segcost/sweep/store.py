"""Where sweep results go: the per-point cache and the streamed result table.

The cache is a directory of `<content hash>.json` files, one per finished point, each
written atomically by the driver (never by workers, which may run on other machines). It
is the source of truth: an interrupted sweep re-runs only the points without a file, and
the result files are rewritten from it at the end of every run.

The table is written as CSV and JSON Lines side by side (and Parquet when pyarrow is
importable): rows are appended as points finish (so a killed run leaves what it had), and
at the end the files are replaced atomically by the complete table in point order. Rows are
streamed only into regular files (through a symlink: into its target); a table that goes to a
FIFO or a character device gets the complete table once, at the end (segcost.fileio).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from segcost.errors import InputError
from segcost.fileio.csvtext import SafeDictWriter
from segcost.fileio.writes import destination, json_text, write_atomic
from segcost.sweep.points import Point
from segcost.sweep.run import PointResult

AXIS_COLUMNS = ("index", "point", "model", "factory_args", "input_size", "width_mult", "num_classes", "target",
                "precision")
STATUS_COLUMNS = ("status", "error")
MEASURE_COLUMNS = {
    "macs": ("macs", "gmacs"),
    "params": ("params", "weight_bytes"),
    "latency": ("latency_ms", "fallback_layers"),
    "findings": ("findings", "finding_rules"),
    "ort_latency": ("ort_ms",),
}
SEED_COLUMNS = ("seed_dataset", "seed_model", "published_gmacs", "published_miou")
TIMING_COLUMNS = ("seconds", "worker")
# Columns that differ between two runs of the same sweep (wall times, worker ids, measured latency).
NONDETERMINISTIC_COLUMNS = (*TIMING_COLUMNS, "ort_ms")
TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")
INTEGER_COLUMNS = frozenset({"index", "num_classes", "macs", "params", "weight_bytes", "fallback_layers", "findings"})
FLOAT_COLUMNS = frozenset({"width_mult", "gmacs", "latency_ms", "ort_ms", "published_gmacs", "published_miou",
                           "seconds"})


@dataclass
class SweepRow:
    """One finished point: its axes and its result.

    Attributes:
        point: the point (axis values, seed-table match).
        result: its measures or error.
        from_cache: whether this run took the result from the cache.
    """

    point: Point
    result: PointResult
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.result.status == "ok"

    @property
    def gmacs(self) -> float | None:
        return None if self.result.macs is None else self.result.macs / 1e9

    def record(self, columns: tuple[str, ...]) -> dict[str, Any]:
        """The table row: the given columns, None where a value does not apply."""
        point, result, seed = self.point, self.result, self.point.seed
        values: dict[str, Any] = {
            "index": point.index, "point": point.key, "model": point.model,
            "factory_args": ";".join(point.factory_args) or None, "input_size": point.input_size,
            "width_mult": point.width_mult, "num_classes": point.num_classes, "target": point.target,
            "precision": point.precision, "gmacs": None if self.gmacs is None else round(self.gmacs, 6),
            "seed_dataset": seed and seed.dataset, "seed_model": seed and seed.model,
            "published_gmacs": seed and seed.published_gmacs, "published_miou": seed and seed.miou,
        }
        result_values = asdict(result)
        return {column: values[column] if column in values else result_values.get(column) for column in columns}


def table_columns(measures: tuple[str, ...]) -> tuple[str, ...]:
    """Columns of a sweep's table: axes, status, the requested measures, seed match, timing."""
    measure_columns = tuple(column for measure in measures for column in MEASURE_COLUMNS[measure])
    return (*AXIS_COLUMNS, *STATUS_COLUMNS, *measure_columns, *SEED_COLUMNS, *TIMING_COLUMNS)


def parquet_available() -> bool:
    """Whether pyarrow (the optional Parquet writer) can be imported."""
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


class PointCache:
    """Finished points by content hash; a damaged entry is only a point to recompute."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{directory}: cannot create the sweep cache ({error.strerror or error})") from None

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> PointResult | None:
        try:
            data = json.loads(self.path(key).read_text())
            result = PointResult.from_dict(data)
        except (OSError, ValueError, TypeError):
            return None
        return result if result.key == key else None

    def store(self, result: PointResult) -> None:
        """Record a finished point (not one whose worker died: that is no property of the point)."""
        if result.cacheable:
            write_atomic(self.path(result.key), json_text(asdict(result), indent=None, sort_keys=True))


def table_paths(output: str | os.PathLike) -> dict[str, Path]:
    """The CSV/JSON Lines/Parquet files of a sweep, from the -o path (any of the three suffixes)."""
    output = Path(output)
    if output.suffix not in TABLE_SUFFIXES:
        raise InputError(f"{output}: the result table must end in {', '.join(TABLE_SUFFIXES)} "
                         "(all formats are written side by side)")
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise InputError(f"{output}: directory {output.parent} does not exist")
    paths = {"csv": output.with_suffix(".csv"), "jsonl": output.with_suffix(".jsonl")}
    if output.suffix == ".parquet" and not parquet_available():
        raise InputError(f"{output}: Parquet output needs pyarrow (pip install pyarrow)")
    if parquet_available():
        paths["parquet"] = output.with_suffix(".parquet")
    return paths


class ResultTable:
    """Streams rows to CSV and JSON Lines as they finish; `finish` writes the whole table atomically."""

    def __init__(self, output: str | os.PathLike, columns: tuple[str, ...]):
        self.paths = table_paths(output)
        self.columns = columns
        self.streams: list[IO[str] | None] = []
        self.csv_writer: Any = None

    def __enter__(self) -> ResultTable:
        try:
            for kind in ("csv", "jsonl"):
                place = destination(self.paths[kind])
                # A FIFO or device gets the whole table once, at the end, not the streamed rows too.
                stream = open(place.real, "w", newline="") if place.kind in ("new", "file") else None
                self.streams.append(stream)
        except OSError as error:
            self.close()
            raise InputError(f"cannot write the sweep results ({error.strerror or error})") from None
        if self.streams[0] is not None:
            self.csv_writer = SafeDictWriter(self.streams[0], self.columns)
            self.csv_writer.writeheader()
            self.streams[0].flush()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        for stream in self.streams:
            if stream is not None:
                stream.close()
        self.streams = []

    def append(self, row: SweepRow) -> None:
        record = row.record(self.columns)
        csv_stream, jsonl_stream = self.streams
        if csv_stream is not None:
            self.csv_writer.writerow(_csv_values(record))
            csv_stream.flush()
        if jsonl_stream is not None:
            jsonl_stream.write(json_text(record, indent=None))
            jsonl_stream.flush()

    def finish(self, rows: list[SweepRow]) -> list[Path]:
        """Replace the streamed files by the table of `rows` in point order; returns the files written."""
        self.close()
        records = [row.record(self.columns) for row in sorted(rows, key=lambda row: row.point.index)]
        text = io.StringIO()
        writer = SafeDictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_csv_values(record) for record in records)
        write_atomic(self.paths["csv"], text.getvalue())
        write_atomic(self.paths["jsonl"], "".join(json_text(record, indent=None) for record in records))
        if "parquet" in self.paths:
            _write_parquet(self.paths["parquet"], records, self.columns)
        return list(self.paths.values())


def _csv_values(record: dict[str, Any]) -> dict[str, Any]:
    return {key: "" if value is None else value for key, value in record.items()}


def _write_parquet(path: Path, records: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def column_type(column: str):
        return pa.int64() if column in INTEGER_COLUMNS else pa.float64() if column in FLOAT_COLUMNS else pa.string()

    table = pa.table({column: pa.array([record[column] for record in records], type=column_type(column))
                      for column in columns})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    write_atomic(path, buffer.getvalue().to_pybytes())   # like the other files: symlinks and FIFOs kept


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a sweep's JSON Lines file (typed values, unlike the CSV)."""
    with open(Path(path).with_suffix(".jsonl")) as stream:
        return [json.loads(line) for line in stream if line.strip()]

"""Fit a target profile to measured whole-model device times (`segcost calibrate --reference`).

Only whole-model times are published for TI's SoCs (golden references, see
segcost/targets/references/README.md), so the per-layer structure of the cost model stays as
it is and a few of its parameters are fitted: the MAC efficiencies per layer kind, the fixed
cost per layer and per run, and the bandwidth of the host hand-over of graph inputs/outputs
(DEVICE_PARAMETERS).
The fit minimises squared log errors log(predicted) − log(measured) over the models, plus a
prior pulling each parameter towards the base profile (PRIOR_WEIGHT per log unit), because a
handful of models cannot pin several parameters on their own. Levenberg–Marquardt in log-parameter
space, as segcost.targets.calibrate does for the onnxruntime fit.

How well it generalises is reported by leave-one-out: each model is predicted by a profile
fitted without it. The baseline it must beat is a MACs-only predictor, ms = a·MACs with a
fitted (also leave-one-out).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segcost.errors import InputError
from segcost.fileio.numbers import parse_decimal
from segcost.targets.calibrate import (
    _apply,
    _bounds,
    _levenberg_marquardt,
    get_parameter,
)
from segcost.targets.cost_model import PreparedModel, estimate_prepared
from segcost.targets.profile import TargetProfile

__all__ = ["DEVICE_PARAMETERS", "DeviceFit", "DeviceSample", "ReferenceTime", "fit_device", "fitted_profile_text",
           "leave_one_out",
           "macs_only_leave_one_out", "median_abs_log", "read_reference", "spearman"]

# Fitted by default: what the TI references constrain. Pointwise and grouped efficiencies keep their base
# values: fitting them too (7 parameters on 6-8 models) made leave-one-out worse on both SoCs.
DEVICE_PARAMETERS = ("efficiency.dense", "efficiency.depthwise", "layer_overhead_cycles", "run_overhead_us",
                     "host_io_bytes_per_cycle")
# Per log unit. Chosen by leave-one-out on the TI references among 0.05, 0.1, 0.2, 0.3, 1.0 (so the LOO
# figures are mildly optimistic); at 0.2 the AM62A leave-one-out error rises from 0.25 to 0.32.
PRIOR_WEIGHT = 0.1


@dataclass(frozen=True)
class ReferenceTime:
    """A model's published device time: the median of `values` (ms), with where each value comes from."""

    model: str
    median_ms: float
    values: tuple[float, ...]
    sources: tuple[str, ...]


# A measured time of one inference lies between a nanosecond and an hour; outside that it is a typo or a
# unit error, and the log-space fit of such a value overflows (1e308 ms gave a "median inf" error).
MIN_REFERENCE_MS = 1e-6
MAX_REFERENCE_MS = 3.6e6


def read_reference(path: str | Path) -> dict[str, ReferenceTime]:
    """Rows `model,total_ms[,repo,path,commit ...]` of a CSV file → one ReferenceTime per model (median of its rows).

    Raises:
        InputError: unreadable file, missing columns, or a time that is not a number between
            MIN_REFERENCE_MS and MAX_REFERENCE_MS.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(f"{path}: cannot read reference times ({error.strerror or error})") from None
    if not rows or not {"model", "total_ms"} <= set(rows[0]):
        raise InputError(f"{path}: a reference CSV needs the columns model,total_ms")
    values: dict[str, list[float]] = {}
    sources: dict[str, list[str]] = {}
    for line, row in enumerate(rows, start=2):
        text = row["total_ms"]
        try:   # ASCII digits only, as everywhere segcost reads a number from text (float() takes "１２.５", "1_0")
            value = parse_decimal(text, "total_ms") if isinstance(text, str) else -1.0
        except InputError:
            value = -1.0
        if not value > 0:
            raise InputError(f"{path}:{line}: total_ms {text!r} is not a positive number of ms written in "
                             f"ASCII digits (such as 12.5)")
        if not MIN_REFERENCE_MS <= value <= MAX_REFERENCE_MS:
            raise InputError(f"{path}:{line}: total_ms {row['total_ms']!r} is not a device time of one inference "
                             f"(expected {MIN_REFERENCE_MS:g} to {MAX_REFERENCE_MS:g} ms)")
        values.setdefault(row["model"], []).append(value)
        sources.setdefault(row["model"], []).append(" ".join(str(row.get(key) or "") for key in ("repo", "path",
                                                                                                  "commit")).strip())
    return {model: ReferenceTime(model, statistics.median(times), tuple(times), tuple(sources[model]))
            for model, times in values.items()}


@dataclass
class DeviceSample:
    """One reference model: its prepared layers, its MACs and its measured device time (ms)."""

    name: str
    prepared: PreparedModel
    measured_ms: float

    @property
    def macs(self) -> int:
        return sum(item.layer.macs for item in self.prepared.features)


@dataclass
class DeviceFit:
    """The fitted profile and how well it predicts the models it was fitted on (log errors)."""

    profile: TargetProfile
    parameters: dict[str, float]
    predicted_ms: dict[str, float]
    median_abs_log_error: float
    unconstrained: list[str] = field(default_factory=list)


def _latencies(profile: TargetProfile, samples: list[DeviceSample]) -> np.ndarray:
    return np.array([estimate_prepared(sample.prepared, profile).totals.latency_ms for sample in samples])


def fit_device(samples: list[DeviceSample], base: TargetProfile, names: Sequence[str] = DEVICE_PARAMETERS
               ) -> DeviceFit:
    """Fit `names` of `base` to the samples' measured times (log least squares with a prior; see module).

    Raises:
        InputError: no samples, or a parameter the base profile gives as 0 (no scale to fit in log space).
    """
    if not samples:
        raise InputError("no reference models to fit")
    names = list(names)
    base_values = [get_parameter(base, name) for name in names]
    zero = [name for name, value in zip(names, base_values) if value <= 0]
    if zero:
        raise InputError(f"base profile {base.name!r}: {zero[0]} is 0; give it a starting value to fit")
    lower, upper = _bounds(names)
    prior = np.clip(np.log(base_values), lower, upper)
    measured = np.log([sample.measured_ms for sample in samples])

    def objective(theta: np.ndarray) -> np.ndarray:
        predicted = np.log(_latencies(_apply(base, names, theta), samples))
        return np.concatenate([predicted - measured, PRIOR_WEIGHT * (theta - prior)])

    theta, _, _ = _levenberg_marquardt(objective, prior.copy(), lower, upper)
    profile = _apply(base, names, theta)
    predicted = _latencies(profile, samples)
    unconstrained = []
    for index, name in enumerate(names):
        shifted = theta.copy()
        shifted[index] += 0.1
        if np.max(np.abs(_latencies(_apply(base, names, shifted), samples) - predicted)) < 1e-9:
            unconstrained.append(name)
    return DeviceFit(profile, {name: get_parameter(profile, name) for name in names},
                     {sample.name: float(ms) for sample, ms in zip(samples, predicted)},
                     median_abs_log(predicted, [sample.measured_ms for sample in samples]), unconstrained)


def leave_one_out(samples: list[DeviceSample], base: TargetProfile, names: tuple[str, ...] = DEVICE_PARAMETERS
                  ) -> dict[str, float]:
    """Each model's time predicted by a profile fitted on all the other models (ms)."""
    result = {}
    for index, sample in enumerate(samples):
        fit = fit_device(samples[:index] + samples[index + 1:], base, names)
        result[sample.name] = estimate_prepared(sample.prepared, fit.profile).totals.latency_ms
    return result


def macs_only_leave_one_out(samples: list[DeviceSample]) -> dict[str, float]:
    """ms = a·MACs, a = exp(mean log(measured/MACs)) of the other models (the log-least-squares fit)."""
    result = {}
    for index, sample in enumerate(samples):
        others = samples[:index] + samples[index + 1:]
        scale = math.exp(statistics.fmean(math.log(other.measured_ms / other.macs) for other in others))
        result[sample.name] = scale * sample.macs
    return result


def median_abs_log(predicted, measured) -> float:
    """median |ln(predicted / measured)| over paired values."""
    return float(statistics.median(abs(math.log(p / m)) for p, m in zip(predicted, measured)))


def spearman(first, second) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties).

    Written here because scipy (scipy.stats.spearmanr) is not one of segcost's dependencies.
    """
    def ranks(values):
        order = sorted(range(len(values)), key=lambda index: values[index])
        result = [0.0] * len(values)
        position = 0
        while position < len(order):
            end = position
            while end + 1 < len(order) and values[order[end + 1]] == values[order[position]]:
                end += 1
            for index in order[position:end + 1]:
                result[index] = (position + end) / 2
            position = end + 1
        return result

    a, b = np.array(ranks(list(first))), np.array(ranks(list(second)))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def fitted_profile_text(fit: DeviceFit, base_text: str, reference: str, samples: list[DeviceSample],
                        loo: dict[str, float] | None = None) -> str:
    """TOML of the fitted profile: the base's comments kept, each fitted value citing the reference data."""
    from segcost.targets.profile_toml import profile_to_toml, read_comments

    notes = read_comments(base_text)
    for name in fit.parameters:
        notes[f"accelerator.{name}"] = (f"not constrained by {reference}: base value kept" if name in fit.unconstrained
                                        else f"fitted to {reference} (see header)")
    measured = [sample.measured_ms for sample in samples]
    lines = [fit.profile.description,
             "Fitted with segcost.targets.device_fit (`segcost calibrate --reference`, benchmarks/device_reference.py)",
             f"to TI's published whole-model device times, segcost/targets/references/{reference}",
             "(median per model of every published value; repository, path and commit on each row):",
             ", ".join(f"{sample.name} {sample.measured_ms:.2f} ms" for sample in samples) + ".",
             f"Fit: median |ln(pred/meas)| {fit.median_abs_log_error:.3f} over {len(samples)} models."]
    if loo:
        values = [loo[sample.name] for sample in samples]
        lines.append(f"Leave-one-out: median |ln(pred/meas)| {median_abs_log(values, measured):.3f}, "
                     f"Spearman {spearman(values, measured):.3f}.")
    lines.append("Values not marked 'fitted' come from the base profile and say where they come from.")
    return profile_to_toml(fit.profile, notes, "\n".join(lines))

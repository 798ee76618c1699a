"""Fit a profile's parameters to onnxruntime measurements (the `cpu` profile, `segcost calibrate`).

The cost model is nonlinear in its parameters (a max of compute and memory terms, plus
overheads), and layer times span four orders of magnitude, so the fit minimises squared
*log* errors — a layer predicted 2× too slow costs the same whether it takes 10 µs or
10 ms, which is what a ranking (Spearman's rho) needs. Residuals:

* one per measured layer group: log(predicted group ms) − log(measured kernel ms);
* one per model: log(predicted latency) − log(measured latency), weighted by
  LATENCY_WEIGHT · sqrt(number of groups), so that whole-model latency weighs more than
  all its layers together. The measured latency is the load-robust one
  (per-node medians + framework time, see Measurement.robust_latency_ms): a fit to wall
  times taken while other processes load the machine would calibrate their load;
* a weak prior pulling every parameter towards the base profile, so a parameter the data
  cannot see (no grouped convs measured, say) keeps its base value instead of drifting.

Data residuals go through a soft-L1 loss (quadratic up to SOFT_L1_SCALE in log units, linear
beyond): a few groups the model gets structurally wrong — a Relu that onnxruntime happens
not to fold into its conv, predicted free — must not drag every rate with them.

Parameters are fitted in log space (they stay positive) with Levenberg–Marquardt and a
forward-difference Jacobian; efficiencies are capped at 1 (no kind may beat the peak).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from segcost.targets.cost_model import PreparedModel, estimate_prepared
from segcost.targets.measure import LayerMapping, Measurement
from segcost.targets.profile import TargetProfile

__all__ = ["CalibrationSample", "FitResult", "calibrated_profile_text", "fit_profile", "fitted_parameters",
           "get_parameter", "set_parameter"]

PRIOR_WEIGHT = 0.05
# Whole-model latency residuals weigh 3x all of a model's layer groups together: without it the
# many small groups (log loss) pull the fit below the big layers that make up latency.
LATENCY_WEIGHT = 3.0
SOFT_L1_SCALE = 0.5   # log units: residuals beyond a factor e^0.5 ≈ 1.65 count linearly
MAX_ITERATIONS = 60
FLOOR = 1e-3   # smallest value a fitted parameter may take (overheads may legitimately approach 0)


@dataclass
class CalibrationSample:
    """One measured model: its prepared layers, the ORT-to-layer mapping and the measurement."""

    name: str
    prepared: PreparedModel
    mapping: LayerMapping
    measurement: Measurement


@dataclass
class FitResult:
    """The fitted profile, the parameter values and how well they fit (log-space errors of the layer groups)."""

    profile: TargetProfile
    parameters: dict[str, float]
    rms_log_error: float
    median_abs_log_error: float
    iterations: int
    groups: int
    unconstrained: list[str] = field(default_factory=list)   # parameters the models do not exercise: base kept


def fitted_parameters(profile: TargetProfile) -> list[str]:
    """The parameters `segcost calibrate` fits: per-kind efficiency, vector rate, bandwidths, overheads."""
    names = [f"efficiency.{kind}" for kind in profile.efficiency]
    # run_overhead_us is not fitted: the framework time ORT spends between kernels is already
    # in the measured layer groups, and what remains is too small to identify beside them.
    names += ["unaligned_efficiency", "unaligned_depthwise_efficiency", "unaligned_vector_efficiency",
              "memory_overlap", "grouped_row_overhead_pixels", "vector_flops_per_cycle", "layer_overhead_cycles"]
    names += [f"memory[{index}].bytes_per_cycle" for index in range(len(profile.memory))]
    return names


def get_parameter(profile: TargetProfile, name: str) -> float:
    if name.startswith("efficiency."):
        return profile.efficiency[name.split(".", 1)[1]]
    match = re.fullmatch(r"memory\[(\d+)\]\.bytes_per_cycle", name)
    if match:
        return profile.memory[int(match.group(1))].bytes_per_cycle
    if name == "unaligned_depthwise_efficiency" and profile.unaligned_depthwise_efficiency is None:
        return profile.unaligned_efficiency   # what the cost model uses when the profile leaves it out
    return float(getattr(profile, name))


def set_parameter(profile: TargetProfile, name: str, value: float) -> TargetProfile:
    if name.startswith("efficiency."):
        return replace(profile, efficiency={**profile.efficiency, name.split(".", 1)[1]: value})
    match = re.fullmatch(r"memory\[(\d+)\]\.bytes_per_cycle", name)
    if match:
        levels = list(profile.memory)
        index = int(match.group(1))
        levels[index] = replace(levels[index], bytes_per_cycle=value)
        return replace(profile, memory=tuple(levels))
    changes: dict[str, Any] = {name: value}  # a scalar field named by the caller
    return replace(profile, **changes)


def _apply(base: TargetProfile, names: list[str], log_values: np.ndarray) -> TargetProfile:
    profile = base
    for name, log_value in zip(names, log_values):
        profile = set_parameter(profile, name, float(np.exp(log_value)))
    return profile


def _bounds(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    lower = np.full(len(names), math.log(FLOOR))
    upper = np.array([0.0 if "efficiency" in name or name == "memory_overlap" else math.log(1e12) for name in names])
    return lower, upper


def _residuals(profile: TargetProfile, samples: list[CalibrationSample]) -> np.ndarray:
    rows = []
    for sample in samples:
        report = estimate_prepared(sample.prepared, profile)
        predicted = {layer.name: layer.ms for layer in report.layers}
        measured_groups = [group for group in sample.mapping.groups if group.measured_ms]
        for group in measured_groups:
            measured_ms = cast(float, group.measured_ms)  # measured_groups keeps the measured ones
            rows.append(math.log(sum(predicted[name] for name in group.layers) + 1e-6) - math.log(measured_ms))
        weight = LATENCY_WEIGHT * math.sqrt(max(1, len(measured_groups)))
        rows.append(weight * (math.log(report.totals.latency_ms) - math.log(sample.measurement.robust_latency_ms)))
    return np.asarray(rows)


def fit_profile(samples: list[CalibrationSample], base: TargetProfile, names: list[str] | None = None) -> FitResult:
    """Levenberg–Marquardt in log-parameter space from several starting points; the best fit wins.

    Several starts because a roofline has flat directions: while a layer is memory-bound
    its compute rate has no gradient, so a single descent can settle with the wrong term
    explaining a slow layer (e.g. a slow Resize blamed on memory bandwidth).

    Args:
        samples: measured models (see CalibrationSample).
        base: the profile whose other values are kept and towards which the prior pulls.
        names: parameters to fit (default: `fitted_parameters(base)`).

    Returns:
        FitResult with the fitted profile.
    """
    names = list(names or fitted_parameters(base))
    lower, upper = _bounds(names)
    base_values = [get_parameter(base, name) for name in names]
    prior = np.clip(np.log([max(value, FLOOR) for value in base_values]), lower, upper)
    # A base value of 0 (an effect the base profile leaves out) is no value to be pulled towards.
    prior_weights = np.array([PRIOR_WEIGHT if value > FLOOR else 0.0 for value in base_values])

    def objective(theta: np.ndarray) -> np.ndarray:
        data = _soft_l1(_residuals(_apply(base, names, theta), samples))
        return np.concatenate([data, prior_weights * (theta - prior)])

    best: tuple[float, np.ndarray, int] | None = None
    for start in _starts(names, prior, lower, upper):
        theta, cost, iterations = _levenberg_marquardt(objective, start, lower, upper)
        if best is None or cost < best[0]:
            best = (cost, theta, iterations)
    assert best is not None, "_starts gives four starting points"
    _, theta, iterations = best
    profile = _apply(base, names, theta)
    data = _residuals(profile, samples)
    unconstrained = []
    for index, name in enumerate(names):   # a parameter no layer's time depends on was never fitted
        shifted = theta.copy()
        shifted[index] += 0.1
        if np.max(np.abs(_residuals(_apply(base, names, shifted), samples) - data)) < 1e-9:
            unconstrained.append(name)
    groups = sum(1 for sample in samples for group in sample.mapping.groups if group.measured_ms)
    group_rows = data[[index for index in range(len(data)) if not _is_latency_row(samples, index)]]
    return FitResult(profile, {name: get_parameter(profile, name) for name in names},
                     float(np.sqrt(np.mean(group_rows ** 2))) if len(group_rows) else float("nan"),
                     float(np.median(np.abs(group_rows))) if len(group_rows) else float("nan"), iterations, groups,
                     unconstrained)


def _soft_l1(residuals: np.ndarray) -> np.ndarray:
    """Residuals whose squares sum to the soft-L1 loss 2c²(sqrt(1 + (r/c)²) − 1)."""
    scaled = residuals / SOFT_L1_SCALE
    return np.sign(residuals) * SOFT_L1_SCALE * np.sqrt(2 * (np.sqrt(1 + scaled ** 2) - 1))


def _starts(names: list[str], prior: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> list[np.ndarray]:
    """The base values, and variants with slower elementwise units and/or faster memory."""
    starts = []
    for vector_scale in (1.0, 0.1):
        for memory_scale in (1.0, 4.0):
            start = prior.copy()
            for index, name in enumerate(names):
                if name == "vector_flops_per_cycle":
                    start[index] += math.log(vector_scale)
                elif name == "grouped_row_overhead_pixels":
                    # a profile without it says 0, where a log-space parameter has no gradient
                    start[index] = max(start[index], math.log(4.0))
                elif name.startswith("memory["):
                    start[index] += math.log(memory_scale)
            starts.append(np.clip(start, lower, upper))
    return starts


def _levenberg_marquardt(objective, theta: np.ndarray, lower: np.ndarray, upper: np.ndarray
                         ) -> tuple[np.ndarray, float, int]:
    residual = objective(theta)
    cost = float(residual @ residual)
    damping = 1e-2
    iteration = 0
    for iteration in range(1, MAX_ITERATIONS + 1):  # noqa: B007 - the count is returned after the loop
        step_size = 1e-4
        jacobian = np.empty((len(residual), len(theta)))
        for column in range(len(theta)):
            shifted = theta.copy()
            shifted[column] += step_size
            jacobian[:, column] = (objective(shifted) - residual) / step_size
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ residual
        improved = False
        while damping < 1e8:
            matrix = normal + damping * (np.diag(np.diag(normal)) + 1e-9 * np.eye(len(theta)))
            candidate = np.clip(theta - np.linalg.solve(matrix, gradient), lower, upper)
            candidate_residual = objective(candidate)
            candidate_cost = float(candidate_residual @ candidate_residual)
            if candidate_cost < cost:
                improved = cost - candidate_cost > 1e-9 * cost
                theta, residual, cost = candidate, candidate_residual, candidate_cost
                damping = max(damping / 3, 1e-7)
                break
            damping *= 4
        if not improved:
            break
    return theta, cost, iteration


def _is_latency_row(samples: list[CalibrationSample], index: int) -> bool:
    position = 0
    for sample in samples:
        count = sum(1 for group in sample.mapping.groups if group.measured_ms)
        if index < position + count:
            return False
        if index == position + count:
            return True
        position += count + 1
    return False


def calibrated_profile_text(fit: FitResult, base_text: str, models: list[str], runs: int, threads: int,
                            ort_version: str = "", note: str = "") -> str:
    """TOML of the fitted profile: base comments kept, fitted values marked "calibrated" with their data."""
    from segcost.targets.profile_toml import profile_to_toml, read_comments

    notes = read_comments(base_text)
    for name in fit.parameters:
        path = name if name.startswith("memory[") else f"accelerator.{name}"
        notes[path] = ("not exercised by the calibration models: base value kept" if name in fit.unconstrained
                       else "calibrated (see header)")
    header = (f"{fit.profile.description}\n"
              f"Calibrated with segcost.targets.calibrate (`segcost calibrate`, benchmarks/cost_model.py):\n"
              f"log-space soft-L1 least squares (Levenberg-Marquardt) of predicted\n"
              f"against measured onnxruntime {ort_version} per-layer-group times and whole-model latency,\n"
              f"median of {runs} runs, {threads} intra-op threads (segcost.targets.measure.session_options),\n"
              f"{fit.groups} layer groups of: {', '.join(models)}.\n"
              f"Log error over layer groups: median |e| {fit.median_abs_log_error:.3f}, RMS {fit.rms_log_error:.3f}.\n"
              f"Values without 'calibrated' come from the base profile and say where they come from."
              + (f"\nMeasurement: {note}" if note else ""))
    return profile_to_toml(fit.profile, notes, header)

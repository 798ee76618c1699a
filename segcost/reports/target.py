"""Render target cost-model results: per-layer estimates, measured-vs-predicted comparisons, fits."""

from __future__ import annotations

import math

from segcost.fileio.writes import json_text


def _table(rows: list[list], headers: list[str], fmt: str) -> str:
    from segcost.reports.tables import text_table

    return text_table(rows, headers, markdown=fmt == "md")


def render_cost(report, fmt: str, top: int, model_label: str, layers: int | None = None) -> str:
    """A TargetReport as a table, Markdown or JSON.

    `top` slowest layers are ranked with the reason; `layers` limits the per-layer table to the
    slowest that many (in schedule order; None: every layer).
    """
    if fmt == "json":
        return json_text({"model": model_label, **report.to_dict()})
    totals = report.totals
    heading = "## " if fmt == "md" else ""
    shown = report.layers
    if layers is not None and layers < len(report.layers):
        kept = {id(layer) for layer in report.slowest(layers)}
        shown = [layer for layer in report.layers if id(layer) in kept]
    layer_rows = [[layer.name, layer.op_type, layer.kind, layer.placement, f"{layer.cycles:,.0f}", f"{layer.ms:.4f}",
                   layer.bound, f"{layer.utilisation_pct:.1f}", layer.memory_level] for layer in shown]
    parts = [f"{heading}{model_label} on {report.profile_name}: {report.profile_description}\n",
             _table(layer_rows, ["layer", "op", "kind", "placement", "cycles", "ms", "bound", "util %", "memory"], fmt),
             "",
             f"{heading}Totals",
             _table([["latency", f"{totals.latency_ms:.3f} ms"], ["throughput", f"{totals.fps:.1f} FPS"],
                     ["MACs", f"{totals.macs:,}"],
                     ["MAC utilisation", f"{totals.utilisation_pct:.1f}% of {report.peak_macs_per_s / 1e12:.3g} "
                                         f"T MACs/s ({report.dtype})"],
                     ["on accelerator", f"{totals.accelerator_ms:.3f} ms"],
                     ["fallback", f"{totals.fallback_ms:.3f} ms in {totals.fallback_layers} layers"],
                     ["transfers", f"{totals.transfer_ms:.3f} ms in {len(report.transfers)} hand-overs / layout "
                                   "conversions"],
                     ["per-run overhead", f"{totals.run_overhead_ms:.3f} ms"]], ["", ""], fmt),
             "",
             f"{heading}Share of latency by kind and by op type",
             _table([[kind, f"{100 * share:.1f}%"] for kind, share in totals.share_by_kind.items()],
                    ["kind", "share"], fmt),
             "",
             _table([[op, f"{100 * share:.1f}%"] for op, share in totals.share_by_op_type.items()],
                    ["op type", "share"], fmt),
             "",
             f"{heading}Latency by bound",
             _table([[bound, f"{ms:.3f} ms"] for bound, ms in totals.ms_by_bound.items()], ["bound", "time"], fmt)]
    if len(shown) < len(report.layers):   # md: after a blank line, else GitHub reads it as one more table row
        parts[2:2] = ([""] if fmt == "md" else []) + [f"(the {len(shown)} slowest of {len(report.layers)} layers, "
                                                       "in schedule order)"]
    layout = {"blocked->plain", "plain->blocked"}
    for title, items in (("Fallback boundaries", [item for item in report.transfers if item.direction not in layout]),
                         ("Layout conversions by the runtime", [item for item in report.transfers
                                                                if item.direction in layout])):
        if items:
            parts += ["", f"{heading}{title}",
                      _table([[item.tensor, item.producer, item.consumer, item.direction, f"{item.bytes:,}",
                               f"{item.ms:.4f}"] for item in items],
                             ["tensor", "from", "to", "direction", "bytes", "ms"], fmt)]
    slowest = report.slowest(top)
    parts += ["", f"{heading}Layers that dominate latency",
              _table([[index, layer.name, f"{layer.ms:.4f}",
                       f"{100 * layer.ms / totals.latency_ms:.1f}%" if totals.latency_ms else "-", layer.reason]
                      for index, layer in enumerate(slowest, start=1)], ["#", "layer", "ms", "share", "why"], fmt)]
    return "\n".join(parts) + "\n"


def _defined(values: dict) -> dict:
    """`values` with each NaN or infinite float replaced by None (JSON null): JSON has no NaN."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()}


def render_comparison(comparison, measurement, profile_name: str, fmt: str) -> str:
    """Measured against predicted, per layer group, with rho and latency errors."""
    summary = {"profile": profile_name, "spearman_rho": comparison.spearman_rho,
               "predicted_latency_ms": comparison.predicted_latency_ms,
               "measured_wall_median_ms": comparison.measured_latency_ms,
               "latency_error_pct": comparison.latency_error_pct,
               "measured_node_medians_ms": comparison.robust_latency_ms,
               "node_medians_error_pct": comparison.robust_error_pct, "unmapped_ms": comparison.unmapped_ms,
               "onnxruntime": measurement.ort_version, "threads": measurement.threads, "runs": measurement.runs}
    if fmt == "json":   # an undefined statistic (rank correlation of < 3 groups: NaN) is null, not NaN
        return json_text({**_defined(summary), "groups": [_defined(vars(group)) for group in comparison.groups]})
    rows = [[group.name, group.op_types, len(group.layers), f"{group.predicted_ms:.3f}", f"{group.measured_ms:.3f}",
             f"{group.predicted_ms / group.measured_ms:.2f}" if group.measured_ms else "-"]
            for group in sorted(comparison.groups, key=lambda group: -group.measured_ms)]
    lines = [_table(rows, ["layer group", "ops", "layers", "predicted ms", "measured ms", "ratio"], fmt), "",
             f"onnxruntime {measurement.ort_version}, {measurement.threads} threads, median of {measurement.runs} "
             f"runs after {measurement.warmup} warm-up; profile {profile_name}",
             f"Spearman rho over {len(comparison.groups)} layer groups: {comparison.spearman_rho:.3f}",
             f"latency: predicted {comparison.predicted_latency_ms:.2f} ms, "
             f"measured {comparison.measured_latency_ms:.2f}"
             f" ms wall median ({comparison.latency_error_pct:+.1f}%), {comparison.robust_latency_ms:.2f} ms from "
             f"per-node medians ({comparison.robust_error_pct:+.1f}%)",
             f"ORT nodes without an IR layer (layout reorders): {comparison.unmapped_ms:.3f} ms"]
    return "\n".join(lines) + "\n"


def render_fit(fit, comparisons: list) -> str:
    """Fitted parameters and the in-sample fit per calibration model."""
    parameter_rows = [[name, f"{value:.4g}" + (" (not exercised by these models: base value kept)"
                                              if name in fit.unconstrained else "")]
                      for name, value in fit.parameters.items()]
    model_rows = [[name, len(comparison.groups), f"{comparison.spearman_rho:.3f}",
                   f"{comparison.predicted_latency_ms:.2f}", f"{comparison.robust_latency_ms:.2f}",
                   f"{comparison.robust_error_pct:+.1f}%"] for name, comparison in comparisons]
    return "\n".join([
        f"fitted {len(fit.parameters)} parameters on {fit.groups} layer groups ({fit.iterations} iterations), "
        f"log error median |e| {fit.median_abs_log_error:.3f}, RMS {fit.rms_log_error:.3f}",
        _table(parameter_rows, ["parameter", "value"], "table"), "",
        "in-sample fit (evaluate on other models with `segcost profile`):",
        _table(model_rows, ["model", "groups", "rho", "predicted ms", "measured ms", "error"], "table")]) + "\n"


def render_device_fit(fit, samples: list, loo: dict[str, float] | None,
                      loo_scores: tuple[float, float] | None = None) -> str:
    """Fitted parameters, per reference model measured vs fitted (and leave-one-out) device time, and the
    leave-one-out (median |ln(pred/meas)|, Spearman) scores."""
    parameter_rows = [[name, f"{value:.4g}" + (" (not constrained by these models: base value kept)"
                                              if name in fit.unconstrained else "")]
                      for name, value in fit.parameters.items()]
    model_rows = [[sample.name, f"{sample.measured_ms:.2f}", f"{fit.predicted_ms[sample.name]:.2f}",
                   f"{loo[sample.name]:.2f}" if loo else "-"] for sample in samples]
    lines = [f"fitted {len(fit.parameters)} parameters to {len(samples)} measured models: "
             f"median |ln(pred/meas)| {fit.median_abs_log_error:.3f}",
             _table(parameter_rows, ["parameter", "value"], "table"), "",
             _table(model_rows, ["model", "measured ms", "fitted ms", "leave-one-out ms"], "table")]
    if loo_scores:
        lines.append(f"leave-one-out: median |ln(pred/meas)| {loo_scores[0]:.3f}, Spearman {loo_scores[1]:.3f}")
    return "\n".join(lines) + "\n"

"""Render what `optimize --int8 --mixed` kept in float (a segcost.quant.mixed.MixedResult): text, JSON, HTML."""

from __future__ import annotations

from dataclasses import asdict
from html import escape

from segcost.reports.tables import text_table


def _why(layer) -> str:
    if layer.reason == "accuracy":
        group = f" (kept with {', '.join(layer.kept_with)})" if layer.kept_with else ""
        return f"accuracy: +{layer.sqnr_gain_db:.1f} dB output SQNR{group}"
    return (f"speed: predicted int8 {layer.int8_us:.1f} µs vs fp32 {layer.fp32_us:.1f} µs; in int8 here it would "
            f"cost {-layer.latency_us:+.1f} µs with its Q/DQ or hand-overs")


def mixed_rows(mixed) -> list[list[str]]:
    """One row per layer kept in float: layer, op, reason, int8 µs, fp32 µs, latency cost of keeping it µs."""
    return [[layer.name, layer.op_type, _why(layer), f"{layer.int8_us:.1f}", f"{layer.fp32_us:.1f}",
             f"{layer.latency_us:+.1f}"] for layer in mixed.kept]


HEADERS = ["layer kept in float", "op", "reason", "int8 µs", "fp32 µs", "cost in mixed µs"]


def summary_lines(mixed) -> list[str]:
    """The --mixed summary: goal, SQNR full int8 vs mixed (calibration samples), predicted latencies, work."""
    int8_sqnr = ", ".join(f"{output.name} SQNR {output.sqnr_db:.1f} dB"
                          + output.agreement_text
                          for output in mixed.int8_outputs)
    goal = "met" if mixed.goal_met else "NOT met"
    lines = [f"mixed precision: {len(mixed.kept)} of {mixed.units} quantized layers kept in float "
             f"({sum(layer.reason == 'accuracy' for layer in mixed.kept)} for accuracy, at most "
             f"{mixed.max_float_layers}; {sum(layer.reason == 'speed' for layer in mixed.kept)} for speed)",
             f"output SQNR on {mixed.samples} calibration samples: full int8 {mixed.calib_sqnr_int8_db:.1f} dB, "
             f"mixed {mixed.calib_sqnr_mixed_db:.1f} dB (goal {mixed.min_sqnr_db:g} dB {goal})",
             f"predicted on {mixed.profile} (per-layer precision model): fp32 {mixed.predicted_fp32_ms:.3g} ms, "
             f"full int8 {mixed.predicted_int8_ms:.3g} ms, mixed {mixed.predicted_mixed_ms:.3g} ms",
             f"sensitivity analysis: {mixed.candidates_evaluated} leave-one-out candidates, "
             f"{mixed.analysis_cpu_s:.1f} s CPU time"]
    if int8_sqnr:
        lines.append(f"full int8 on the evaluation data (the mixed model's figures are above): {int8_sqnr}")
    lines += [f"note: {note}" for note in mixed.notes]
    return lines


def render_mixed(mixed) -> str:
    lines = summary_lines(mixed)
    if mixed.kept:
        lines.append(text_table(mixed_rows(mixed), HEADERS))
    return "\n".join(lines)


def mixed_payload(mixed) -> dict:
    payload = asdict(mixed)
    payload.update(goal_met=mixed.goal_met, exclude_nodes=mixed.exclude_nodes)
    return payload


def mixed_html(mixed) -> str:
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in mixed_rows(mixed))
    return ("<h2>Mixed precision</h2>" + "".join(f"<p>{escape(line)}</p>" for line in summary_lines(mixed))
            + ("<table><tr>" + "".join(f"<th>{escape(head)}</th>" for head in HEADERS) + f"</tr>{rows}</table>"
               if mixed.kept else ""))

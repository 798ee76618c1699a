"""Render pass-pipeline summaries, before/after costs and verifier findings."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from segcost.fileio.writes import json_text
from segcost.passes import Finding, PassRecord
from segcost.reports.tables import text_table
from segcost.reports.units import human, human_bytes, points


def render_records(records: list[PassRecord]) -> str:
    rows = [[record.name, record.iteration, "yes" if record.modified else "", f"{record.nodes_before} -> "
             f"{record.nodes_after}", human(record.macs_before), human(record.macs_after),
             f"{record.seconds * 1000:.1f}", "; ".join(note for note in record.notes if not note.startswith("not "))]
            for record in records]
    return text_table(rows, ["pass", "round", "changed", "nodes", "MACs before", "MACs after", "ms", "notes"])


def render_before_after(before, after) -> str:
    def row(label, old, new, fmt=human):
        return [label, fmt(old), fmt(new), f"{new - old:+,}"]

    rows = [row("nodes", before.totals.nodes, after.totals.nodes, str),
            row("MACs", before.totals.macs, after.totals.macs, lambda v: f"{v:,}"),
            row("FLOPs", before.totals.flops, after.totals.flops),
            row("params", before.totals.params, after.totals.params),
            row("peak activations", before.totals.peak_activation_bytes, after.totals.peak_activation_bytes,
                human_bytes)]
    op_types = sorted(set(before.by_op_type) | set(after.by_op_type))
    for op_type in op_types:
        old = before.by_op_type.get(op_type)
        new = after.by_op_type.get(op_type)
        rows.append(row(f"  {op_type} nodes", old.count if old else 0, new.count if new else 0, str))
    return text_table(rows, ["", "before", "after", "change"])


def render_findings(findings: list[Finding], fmt: str = "table") -> str:
    if fmt == "json":
        return json_text({"findings": [asdict(finding) for finding in findings], "count": len(findings)})
    if not findings:
        return "verifier: no findings\n"
    rows = [[finding.layer, finding.op_type, finding.rule, finding.reason] for finding in findings]
    return text_table(rows, ["layer", "op", "rule", "reason"], markdown=fmt == "md") + f"\n{len(findings)} findings\n"


def render_optimize(result) -> str:
    """Everything `segcost optimize` prints: passes, before/after costs, findings, checks, int8 accuracy."""
    parts = [render_records(result.records), "", render_before_after(result.before, result.after),
             *(f"warning: {warning}" for warning in growth_warnings(result)), "",
             render_findings(result.findings).rstrip("\n")]
    if result.max_abs_diff is not None:
        parts.append(f"onnxruntime check: max |original - optimized| = {result.max_abs_diff:.3g} "
                     "(tolerance 1e-4 + max(1e-5, 16·eps of the output dtype)·max|x|)")
    if result.accuracy is not None:
        parts += ["", render_int8(result)]
    return "\n".join(parts) + "\n"


def render_speed(speed) -> list[str]:
    """Lines for a segcost.quant.speed.SpeedReport: predicted, measured, and the verdict with its layers."""
    lines = []
    assumption = f"; assumes {speed.assumption}" if speed.assumption else ""
    lines.append(f"predicted on {speed.profile} (cost model): fp32 {speed.predicted_fp32_ms:.3g} ms, int8 "
                 f"{speed.predicted_int8_ms:.3g} ms (int8/fp32 {speed.predicted_ratio:.2f}{assumption})")
    if speed.measured_ratio is not None:
        lines.append(f"measured: fp32 {speed.measured_fp32_ms:.3g} ms, int8 {speed.measured_int8_ms:.3g} ms "
                     f"(int8/fp32 {speed.measured_ratio:.2f}; {speed.measure_setup})")
    if speed.int8_faster is False:
        lines.append(f"int8 is NOT faster than fp32 here (int8/fp32 above {1 + speed.verdict_margin:.2f}); " + (
            "layers costing more in int8 than in float (Q/DQ included): "
            + ", ".join(f"{name} ({op}, +{ms:.3g} ms)" for name, op, ms in speed.slower_layers)
            if speed.slower_layers else "the cost model names no layer that is slower in int8"))
    elif speed.int8_faster is None:
        lines.append(f"int8 and fp32 are within {100 * speed.verdict_margin:.0f}% of each other here: no verdict")
    return lines


def render_int8(result) -> str:
    """int8 summary, leading with SQNR and relative error of each output, then speed, notes, worst layers."""
    accuracy, quantization, speed = result.accuracy, result.quantization, result.speed
    after, int8_after = result.after.totals, result.int8_after.totals
    lines = [f"warning: {failure}" for failure in int8_failures(result)]
    lines.append(f"int8: calibrated on {quantization.source.description}")
    for output in accuracy.outputs:
        lines.append(f"output {output.name}: SQNR {output.sqnr_db:.1f} dB, relative error {output.relative_error:.4f}"
                     f"{output.agreement_text}, cosine {output.cosine_similarity:.5f}, "
                     f"max abs error {output.max_abs_error:.4g} ({accuracy.samples} samples)")
    if accuracy.miou_drop is not None:
        lines.append(f"mIoU: float {accuracy.miou_float:.2f}%, int8 {accuracy.miou_int8:.2f}%, "
                     f"drop {points(accuracy.miou_drop)} percentage points")
    lines.extend(accuracy.notes)
    lines.append(f"int8 MACs {int8_after.macs:,} (float {after.macs:,}); "
                 f"weights {human_bytes(int8_after.weight_bytes)} (input model "
                 f"{human_bytes(result.before.totals.weight_bytes)}, "
                 f"optimized float {human_bytes(after.weight_bytes)}); "
                 f"activations {human_bytes(int8_after.activation_bytes)} "
                 f"(optimized float {human_bytes(after.activation_bytes)})")
    if speed is not None:
        lines.extend(render_speed(speed))
    lines.extend(f"note: {note}" for note in quantization.notes if note)
    if getattr(result, "mixed", None) is not None:
        from segcost.reports.mixed import render_mixed

        lines.append(render_mixed(result.mixed))
    worst = accuracy.layers[:5]
    if worst:
        lines.append("most sensitive layers (lowest SQNR):")
        lines.append(text_table([[layer.producer, layer.op_type, f"{layer.sqnr_db:.1f}"] for layer in worst],
                                ["layer", "op", "SQNR dB"]))
    return "\n".join(lines)


def growth_warnings(result) -> list[str]:
    """One line when the written model (int8 when quantized) has more params or weight bytes than the input model.

    The input model, not an intermediate, is the baseline: a larger optimized model is said so,
    whatever int8 saves against the optimized float graph. Empty when nothing grew.
    """
    before = result.before.totals
    written = result.int8_after.totals if result.int8_after is not None else result.after.totals
    grown = []
    if written.params > before.params:
        grown.append(f"params {before.params:,} -> {written.params:,} "
                     f"(+{written.params - before.params:,}, {_percent(written.params, before.params)})")
    if written.weight_bytes > before.weight_bytes:
        grown.append(f"weights {before.weight_bytes:,} -> {written.weight_bytes:,} bytes "
                     f"(+{human_bytes(written.weight_bytes - before.weight_bytes)}, "
                     f"{_percent(written.weight_bytes, before.weight_bytes)})")
    return [f"the written model is larger than the input model: {'; '.join(grown)}"] if grown else []


def _percent(new: int, old: int) -> str:
    """'+0.00021%': two significant digits, never in exponent form (a small growth is still a growth)."""
    if not old:
        return "from none"
    value = np.format_float_positional(100 * (new - old) / old, precision=2, unique=False, fractional=False,
                                       trim="-")
    return f"+{value}%"


def int8_failures(result) -> list[str]:
    """Failed int8 self-checks (naming the layer) and outputs below the SQNR floor; the command exits 1 on any."""
    checks = [f"int8 self-check failed: {problem}" for problem in result.quantization.problems]
    return checks + result.accuracy.failures()


# Figures that are +infinity by definition in one case, and what that case is: an exact int8 match
# has no noise (SQNR 10·log10(S/0)); a zero float output makes the relative error ‖f−q‖/0 undefined.
UNBOUNDED_FIGURES = {"sqnr_db": "exact match", "sqnr_gain_db": "exact match", "calib_sqnr_int8_db": "exact match",
                     "calib_sqnr_mixed_db": "exact match", "relative_error": "zero float output"}
# The count beside an SQNR that is > 0 exactly when that SQNR is -inf (positions where NaN/±Inf disagree).
NONFINITE = {"sqnr_db": "nonfinite_mismatches", "calib_sqnr_int8_db": "calib_int8_nonfinite_mismatches",
             "calib_sqnr_mixed_db": "calib_mixed_nonfinite_mismatches"}


def unbounded_as_null(document):
    """`document` (dicts/lists from the int8 report) with +inf of the UNBOUNDED_FIGURES keys as None.

    Strict JSON (RFC 8259) has no Infinity; `null` under one of these keys means the case named
    in UNBOUNDED_FIGURES, as the README says; an SQNR's -inf is None too where its NONFINITE count
    is > 0 (NaN/±Inf disagreements: segcost.quant.nonfinite.finite_pairs). Any other non-finite
    number (NaN, -inf, or +inf elsewhere) is left for fileio.writes.json_text to refuse: it would
    be a bug, not a figure.
    """
    if isinstance(document, dict):
        return {key: None if key in UNBOUNDED_FIGURES and isinstance(value, float) and (
                    value == math.inf or (value == -math.inf and document.get(NONFINITE.get(key, ""))))
                else unbounded_as_null(value) for key, value in document.items()}
    if isinstance(document, list):
        return [unbounded_as_null(value) for value in document]
    return document


def optimize_report(result, model: str | None, output: str) -> dict:
    """The `optimize --report` JSON document (its "int8" part is also the accuracy JSON).

    Strict-JSON ready: +inf SQNRs (exact match) and relative errors (zero float output) are None
    (see `unbounded_as_null`).
    """
    payload = {"model": model, "output": output, "passes": [asdict(record) for record in result.records],
               "before": result.before.to_dict()["totals"], "after": result.after.to_dict()["totals"],
               "findings": [asdict(finding) for finding in result.findings], "max_abs_diff": result.max_abs_diff}
    if result.accuracy is not None:
        accuracy = result.accuracy
        payload["int8"] = {
            "calibration": result.quantization.source.description, "notes": result.quantization.notes,
            "failures": int8_failures(result),
            "totals": result.int8_after.to_dict()["totals"], "samples": accuracy.samples,
            "outputs": [asdict(output) for output in accuracy.outputs],
            "miou_float": accuracy.miou_float, "miou_int8": accuracy.miou_int8, "miou_drop": accuracy.miou_drop,
            "accuracy_notes": accuracy.notes,
            "layers_by_sensitivity": [asdict(layer) for layer in accuracy.layers],
            "speed": None if result.speed is None else {**asdict(result.speed),
                                                        "predicted_ratio": result.speed.predicted_ratio,
                                                        "measured_ratio": result.speed.measured_ratio,
                                                        "int8_faster": result.speed.int8_faster},
        }
        if getattr(result, "mixed", None) is not None:
            from segcost.reports.mixed import mixed_payload

            payload["int8"]["mixed"] = mixed_payload(result.mixed)
        payload["int8"] = unbounded_as_null(payload["int8"])
    return payload

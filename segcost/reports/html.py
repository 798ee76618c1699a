"""A self-contained HTML report: inline CSS and SVG, no scripts or network.

Sections: totals; MACs per layer (top layers, coloured by kind, fallback layers marked);
MACs and latency by stage (layer-name prefix); activation memory over the schedule (where
the peak is and what is live there); with a target: latency per layer and a roofline with
each memory level's roof (L2, MSMC, DDR) and the slowest layers labelled; MACs per op type;
verifier findings; every layer. The numbers come in `AnalysisResult`, the target's
`TargetReport` and `HtmlExtras`; nothing is computed here (segcost.commands.html_report
gathers the extras).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from segcost.analyzer import AnalysisResult
from segcost.analyzer.timeline import MemoryTimeline
from segcost.reports import svg
from segcost.reports.units import dims, human, human_bytes, points

KIND_COLOURS = {"dense": "#3b6fb6", "pointwise": "#5aa469", "depthwise": "#e08a2c", "grouped": "#b84f8f",
                "other": "#8a8a8a"}
FALLBACK_COLOUR = "#c0392b"
STAGE_COLOURS = {"MACs": "#3b6fb6", "latency": "#e08a2c"}
MEMORY_COLOUR = "#5aa469"
LABELLED_POINTS = 6
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px} .card span{color:#555;font-size:12px}
table{border-collapse:collapse;font-size:12px} td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.bad{color:#b00020} svg text{font-size:11px;fill:#1d1d1f}
"""


@dataclass
class StageCost:
    """One stage (layer-name prefix): its exact MACs and, with a target, its estimated milliseconds."""

    name: str
    layers: int
    macs: int
    ms: float | None = None


@dataclass
class HtmlExtras:
    """What the report shows beyond the analysis and the target estimate.

    Attributes:
        timeline: live activation bytes per schedule step (segcost.analyzer.timeline).
        roofs: (memory level, bytes per second), innermost first, for the roofline.
        stages: per layer-name prefix of depth `stage_depth`, most MACs first.
    """

    timeline: MemoryTimeline | None = None
    roofs: list[tuple[str, float]] = field(default_factory=list)
    stages: list[StageCost] = field(default_factory=list)
    stage_depth: int = 1


def _kind_legend(with_fallback: bool) -> str:
    entries = [(colour, kind) for kind, colour in KIND_COLOURS.items()]
    if with_fallback:
        entries.append((FALLBACK_COLOUR, "runs on the fallback core (not supported by the accelerator)"))
    return svg.legend(entries)


def _cards(result: AnalysisResult, target) -> str:
    totals = result.totals
    cards = [("GMACs", f"{totals.macs / 1e9:.3f}", f"{totals.macs:,} MACs"),
             ("GFLOPs", f"{totals.flops / 1e9:.3f}", "2·MACs + elementary ops"),
             ("params", f"{totals.params / 1e6:.3f} M", human_bytes(totals.weight_bytes) + " of weights"),
             ("peak activations", human_bytes(totals.peak_activation_bytes), "live buffers, liveness-based"),
             ("coverage", f"{result.coverage.nodes_covered_pct:.1f}%",
              f"{len(result.coverage.unsupported)} unsupported ops")]
    if target is not None:
        cards.append(("latency", f"{target.totals.latency_ms:.2f} ms", f"{target.totals.fps:.1f} FPS on "
                      f"{target.profile_name}; {target.totals.fallback_layers} layers on the fallback core"))
    return "<div class='cards'>" + "".join(f"<div class='card'><span>{escape(name)}</span><b>{escape(value)}</b>"
                                           f"<span>{escape(note)}</span></div>"
                                           for name, value, note in cards) + "</div>"


def _stages(extras: HtmlExtras, has_target: bool) -> str:
    if not extras.stages:
        return ""
    total_macs = sum(stage.macs for stage in extras.stages) or 1
    parts = [f"<h2>MACs and latency by stage (layer-name prefix, depth {extras.stage_depth})</h2>",
             svg.legend([(STAGE_COLOURS["MACs"], "MACs (exact)")]
                        + ([(STAGE_COLOURS["latency"], "estimated latency on the target")] if has_target else [])),
             svg.bars([(stage.name, stage.macs, STAGE_COLOURS["MACs"],
                        f"{human(stage.macs)} MACs ({100 * stage.macs / total_macs:.1f}%), {stage.layers} layers")
                       for stage in extras.stages], "MACs by stage")]
    if has_target:
        parts.append(svg.bars([(stage.name, stage.ms or 0.0, STAGE_COLOURS["latency"], f"{stage.ms or 0.0:.3f} ms")
                               for stage in extras.stages], "latency by stage"))
    return "".join(parts)


def _memory(timeline: MemoryTimeline | None) -> str:
    if timeline is None or not timeline.live_bytes:
        return ""
    live = "".join(f"<tr><td title='{escape(name)}'>{escape(svg.short_name(name))}</td>"
                   f"<td class='n'>{human_bytes(size)}</td></tr>" for name, size in timeline.live_at_peak[:12])
    more = len(timeline.live_at_peak) - 12
    return ("<h2>Activation memory over the schedule</h2>"
            + svg.legend([(MEMORY_COLOUR, "live activations (weights excluded)"), ("#b00020", "peak")])
            + svg.step_plot(timeline.live_bytes, timeline.layers, timeline.peak_step, "activation memory",
                            MEMORY_COLOUR)
            + f"<p class='meta'>Live at the peak ({human_bytes(timeline.peak_bytes)}, step #{timeline.peak_step}):</p>"
            + f"<table><tr><th>tensor</th><th>bytes</th></tr>{live}</table>"
            + (f"<p class='meta'>and {more} smaller tensors</p>" if more > 0 else ""))


def _target_sections(result: AnalysisResult, target, extras: HtmlExtras, top: int) -> str:
    slowest = target.slowest(top)
    parts = [f"<h2>Estimated latency per layer (top {len(slowest)})</h2>", _kind_legend(True),
             svg.bars([(layer.name + (" [fallback]" if layer.placement != "accelerator" else ""), layer.ms,
                        FALLBACK_COLOUR if layer.placement != "accelerator" else KIND_COLOURS.get(layer.kind, "#888"),
                        f"{layer.ms:.3f} ms · {layer.bound}" + (f" · on {layer.placement}"
                                                              if layer.placement != "accelerator" else ""))
                       for layer in slowest], "latency per layer")]
    by_name = {layer.name: layer for layer in result.layers}
    points = []
    for layer in target.layers:
        cost = by_name.get(layer.name)
        if cost is None or not cost.macs or layer.ms <= 0:
            continue
        traffic = layer.traffic_bytes or cost.activation_bytes + cost.weight_bytes
        points.append((layer.name, cost.macs / traffic if traffic else 0.0, cost.macs / (layer.ms / 1000),
                       cost.kind, layer.placement != "accelerator"))
    labelled = {layer.name for layer in slowest[:LABELLED_POINTS]}
    roofs = extras.roofs or [("DDR", target.bandwidth_bytes_per_s)]
    parts += ["<h2>Roofline</h2>", _kind_legend(True),
              svg.roofline(points, target.peak_macs_per_s, roofs, labelled, KIND_COLOURS, FALLBACK_COLOUR),
              "<p class='meta'>One dot per layer with MACs; the roofs are the MAC peak and each memory level's "
              "bandwidth (" + ", ".join(f"{escape(name)} {human_bytes(int(rate))}/s" for name, rate in roofs)
              + f"); the {len(labelled)} slowest layers are named. A layer streams from the innermost level its "
                "working set fits in.</p>"]
    return "".join(parts)


def render_html(result: AnalysisResult, findings: list | None = None, target=None, top: int = 40,
                extras: HtmlExtras | None = None) -> str:
    """The whole page. `target` is a TargetReport (segcost.targets) or None; `extras` adds the stage,
    memory and roof data (HtmlExtras); `top` limits the per-layer bar charts."""
    extras = extras or HtmlExtras()
    totals = result.totals
    title = escape(result.model.path or "model")
    inputs = ", ".join(f"{escape(t.name)} {escape(t.dtype)} {dims(t.shape)}" for t in result.model.inputs)
    fallback = set() if target is None else {layer.name for layer in target.layers if layer.placement != "accelerator"}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcost: {title}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>segcost report: {title}</h1><div class='meta'>opset {result.model.opset} · "
             f"{escape(result.model.producer)} · input {inputs} · hover a bar or dot for the full layer name</div>",
             _cards(result, target)]
    ranked = sorted((layer for layer in result.layers if layer.macs), key=lambda layer: (-layer.macs, layer.name))[:top]
    parts.append(f"<h2>MACs per layer (top {len(ranked)})</h2>{_kind_legend(bool(fallback))}")
    parts.append(svg.bars([(layer.name + (" [fallback]" if layer.name in fallback else ""), layer.macs,
                            FALLBACK_COLOUR if layer.name in fallback else KIND_COLOURS.get(layer.kind, "#888"),
                            f"{human(layer.macs)} MACs ({100 * layer.macs / totals.macs:.1f}%)")
                           for layer in ranked], "MACs per layer"))
    parts.append(_stages(extras, target is not None))
    parts.append(_memory(extras.timeline))
    if target is not None:
        parts.append(_target_sections(result, target, extras, top))
    parts.append("<h2>By op type</h2><table><tr><th>op type</th><th>nodes</th><th>MACs</th><th>share</th>"
                 "<th>FLOPs</th><th>params</th></tr>" + "".join(
                     f"<tr><td>{escape(op)}</td><td class='n'>{entry.count}</td><td class='n'>{entry.macs:,}</td>"
                     f"<td class='n'>{100 * entry.macs / totals.macs if totals.macs else 0:.1f}%</td>"
                     f"<td class='n'>{entry.flops:,}</td><td class='n'>{entry.params:,}</td></tr>"
                     for op, entry in result.by_op_type.items()) + "</table>")
    if findings is not None:
        parts.append(f"<h2>Verifier findings ({len(findings)})</h2>")
        parts.append("<p>none</p>" if not findings else "<table><tr><th>layer</th><th>rule</th><th>reason</th></tr>"
                     + "".join(f"<tr class='bad'><td>{escape(f.layer)}</td><td>{escape(f.rule)}</td>"
                               f"<td>{escape(f.reason)}</td></tr>" for f in findings) + "</table>")
    parts.append(f"<h2>All layers</h2><details><summary>{len(result.layers)} layers</summary>"
                 "<table><tr><th>#</th><th>layer</th>"
                 "<th>op</th><th>kind</th><th>output</th><th>MACs</th><th>params</th><th>activations</th></tr>"
                 + "".join(
                     f"<tr><td class='n'>{index}</td><td>{escape(layer.name)}</td><td>{escape(layer.op_type)}</td>"
                     f"<td>{layer.kind}{' (fallback)' if layer.name in fallback else ''}</td>"
                     f"<td>{dims(layer.output_shape)}</td><td class='n'>{layer.macs:,}</td>"
                     f"<td class='n'>{layer.params:,}</td><td class='n'>{human_bytes(layer.activation_bytes)}</td></tr>"
                     for index, layer in enumerate(result.layers, start=1)) + "</table></details>")
    parts.append("<p class='meta'>MACs count Conv/ConvTranspose/Gemm/MatMul multiply-accumulates; bias, BatchNorm, "
                 "activations, pooling and resize are FLOPs, not MACs. Generated by segcost.</p></body></html>\n")
    return "".join(parts)


SQNR_COLOURS = (("#c0392b", "below 20 dB: int8 hurts this layer most"), ("#e08a2c", "20-30 dB"),
                ("#5aa469", "30 dB and above"))


def _sqnr_colour(sqnr_db: float) -> str:
    return SQNR_COLOURS[0][0] if sqnr_db < 20 else SQNR_COLOURS[1][0] if sqnr_db < 30 else SQNR_COLOURS[2][0]


def render_optimize_html(result, model_label: str, top: int = 40) -> str:
    """`segcost optimize` as a page: what the passes changed, costs before/after and, after --int8, the
    accuracy and per-layer int8 SQNR (signal-to-quantization-noise ratio of each layer's output, dB;
    lowest first). `result` is an OptimizeResult."""
    before, after = result.before.totals, result.after.totals
    title = escape(model_label)
    rows = [("nodes", before.nodes, after.nodes), ("MACs", before.macs, after.macs),
            ("params", before.params, after.params),
            ("peak activations (bytes)", before.peak_activation_bytes, after.peak_activation_bytes)]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcost optimize: {title}</title>"
             f"<style>{CSS}</style></head><body><h1>segcost optimize: {title}</h1>",
             "<h2>Before and after</h2><table><tr><th></th><th>before</th><th>after</th></tr>"
             + "".join(f"<tr><td>{name}</td><td class='n'>{old:,}</td><td class='n'>{new:,}</td></tr>"
                       for name, old, new in rows) + "</table>",
             "<h2>Passes that changed the graph</h2><table><tr><th>pass</th><th>round</th><th>nodes</th>"
             "<th>notes</th></tr>" + "".join(
                 f"<tr><td>{escape(record.name)}</td><td class='n'>{record.iteration}</td><td class='n'>"
                 f"{record.nodes_before} → {record.nodes_after}</td><td>{escape('; '.join(record.notes))}</td></tr>"
                 for record in result.records if record.modified) + "</table>"]
    accuracy = result.accuracy
    if accuracy is not None:
        failures = [f"int8 self-check failed: {problem}" for problem in result.quantization.problems]
        parts += [f"<p><strong>warning: {escape(failure)}</strong></p>" for failure in failures + accuracy.failures()]
        parts.append("<h2>int8 accuracy</h2><table><tr><th>output</th><th>max abs error</th><th>cosine</th></tr>"
                     + "".join(f"<tr><td>{escape(output.name)}</td><td class='n'>{output.max_abs_error:.4g}</td>"
                               f"<td class='n'>{output.cosine_similarity:.5f}</td></tr>" for output in accuracy.outputs)
                     + "</table>")
        if accuracy.miou_drop is not None:
            parts.append(f"<p>mIoU float {accuracy.miou_float:.2f}, int8 {accuracy.miou_int8:.2f}: drop "
                         f"{points(accuracy.miou_drop)} points ({accuracy.samples} samples)</p>")
        if getattr(result, "mixed", None) is not None:
            from segcost.reports.mixed import mixed_html

            parts.append(mixed_html(result.mixed))
        worst = accuracy.layers[:top]
        parts += [f"<h2>Per-layer int8 SQNR (the {len(worst)} lowest of {len(accuracy.layers)})</h2>",
                  svg.legend(list(SQNR_COLOURS)),
                  svg.bars([(layer.producer, max(layer.sqnr_db, 0.0), _sqnr_colour(layer.sqnr_db),
                             f"{layer.sqnr_db:.1f} dB ({layer.op_type})") for layer in worst], "int8 SQNR per layer")]
    parts.append("<p class='meta'>Generated by segcost optimize.</p></body></html>\n")
    return "".join(parts)

"""A self-contained HTML report: inline CSS and SVG, no scripts or network.

Sections: totals, per-layer MAC bars (top layers, coloured by kind), MACs per op type,
verifier findings, and — when a target estimate is given — per-layer latency bars and a
roofline plot (attainable MAC/s against arithmetic intensity, one dot per layer).
"""

from __future__ import annotations

import math
from html import escape

from segcost.analyzer import AnalysisResult
from segcost.reports.units import dims, human, human_bytes

KIND_COLOURS = {"dense": "#3b6fb6", "pointwise": "#5aa469", "depthwise": "#e08a2c", "grouped": "#b84f8f",
                "other": "#8a8a8a"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px} .card span{color:#555;font-size:12px}
table{border-collapse:collapse;font-size:12px} td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} .legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.bad{color:#b00020} svg text{font-size:11px;fill:#1d1d1f}
"""


def _bars(items: list[tuple[str, float, str, str]], unit_label: str, width: int = 1100) -> str:
    """Horizontal bar chart: (label, value, colour, value text) per row."""
    if not items:
        return "<p>nothing to show</p>"
    label_width, row_height = 300, 16
    largest = max(value for _, value, _, _ in items) or 1.0
    height = row_height * len(items) + 20
    rows = []
    for index, (label, value, colour, text) in enumerate(items):
        y = index * row_height
        bar = (width - label_width - 180) * value / largest
        rows.append(f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">{escape(label[:48])}</text>'
                    f'<rect x="{label_width}" y="{y + 2}" width="{bar:.1f}" height="{row_height - 4}" '
                    f'fill="{colour}"><title>{escape(label)}: {escape(text)}</title></rect>'
                    f'<text x="{label_width + bar + 4:.1f}" y="{y + 12}">{escape(text)}</text>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(unit_label)}">'
            + "".join(rows) + "</svg>")


def _legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{kind}</span>' for kind, colour in KIND_COLOURS.items()) + "</div>"


def _roofline(points: list[tuple[str, float, float, str]], peak: float, bandwidth: float) -> str:
    """Log-log roofline: x = MACs per byte, y = achieved MAC/s; the roof is min(peak, bandwidth·x)."""
    points = [point for point in points if point[1] > 0 and point[2] > 0]
    if not points or peak <= 0 or bandwidth <= 0:
        return "<p>no layers with MACs</p>"
    width, height, margin = 700, 380, 50
    xs = [point[1] for point in points] + [peak / bandwidth]
    low_x, high_x = math.log10(min(xs)) - 0.3, math.log10(max(xs)) + 0.3
    low_y, high_y = math.log10(min(point[2] for point in points)) - 0.3, math.log10(peak) + 0.2

    def sx(value):
        return margin + (math.log10(value) - low_x) / (high_x - low_x) * (width - 2 * margin)

    def sy(value):
        return height - margin - (math.log10(value) - low_y) / (high_y - low_y) * (height - 2 * margin)

    ridge = peak / bandwidth
    left = 10 ** low_x
    roof = (f'<polyline fill="none" stroke="#222" stroke-width="1.5" points="{sx(left):.1f},{sy(max(bandwidth * left, 10 ** low_y)):.1f} '
            f'{sx(ridge):.1f},{sy(peak):.1f} {sx(10 ** high_x):.1f},{sy(peak):.1f}"/>')
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{KIND_COLOURS.get(kind, "#888")}" '
                   f'fill-opacity="0.8"><title>{escape(name)}: {x:.1f} MACs/B, {human(y)} MAC/s</title></circle>'
                   for name, x, y, kind in points)
    axes = (f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#999"/>'
            f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="#999"/>'
            f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">arithmetic intensity (MACs per byte, log)</text>'
            f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
            f'achieved MAC/s (log); roof: peak {human(peak)} MAC/s</text>')
    return f'<svg width="{width}" height="{height}" role="img" aria-label="roofline">{axes}{roof}{dots}</svg>'


def render_html(result: AnalysisResult, findings: list | None = None, target=None, top: int = 40) -> str:
    """`target` is an estimate from segcost.targets (layers with ms, cycles; profile peak/bandwidth)."""
    totals = result.totals
    title = escape(result.model.path or "model")
    inputs = ", ".join(f"{escape(t.name)} {escape(t.dtype)} {dims(t.shape)}" for t in result.model.inputs)
    cards = [("GMACs", f"{totals.macs / 1e9:.3f}", f"{totals.macs:,} MACs"),
             ("GFLOPs", f"{totals.flops / 1e9:.3f}", "2·MACs + elementary ops"),
             ("params", f"{totals.params / 1e6:.3f} M", human_bytes(totals.weight_bytes) + " of weights"),
             ("peak activations", human_bytes(totals.peak_activation_bytes), "live buffers, liveness-based"),
             ("coverage", f"{result.coverage.nodes_covered_pct:.1f}%",
              f"{len(result.coverage.unsupported)} unsupported ops")]
    if target is not None:
        cards.append(("latency", f"{target.totals.latency_ms:.2f} ms", f"{target.totals.fps:.1f} FPS on "
                      f"{escape(getattr(target, 'profile_name', '') or 'target')}"))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcost: {title}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>segcost report: {title}</h1><div class='meta'>opset {result.model.opset} · "
             f"{escape(result.model.producer)} · input {inputs}</div>",
             "<div class='cards'>" + "".join(f"<div class='card'><span>{name}</span><b>{value}</b><span>{note}</span>"
                                            f"</div>" for name, value, note in cards) + "</div>"]
    ranked = sorted((layer for layer in result.layers if layer.macs), key=lambda layer: -layer.macs)[:top]
    parts.append(f"<h2>MACs per layer (top {len(ranked)})</h2>{_legend()}")
    parts.append(_bars([(layer.name, layer.macs, KIND_COLOURS.get(layer.kind, "#888"),
                         f"{human(layer.macs)} MACs ({100 * layer.macs / totals.macs:.1f}%)")
                        for layer in ranked], "MACs per layer"))
    if target is not None:
        slowest = sorted(target.layers, key=lambda layer: -layer.ms)[:top]
        parts.append(f"<h2>Estimated latency per layer (top {len(slowest)})</h2>")
        parts.append(_bars([(layer.name, layer.ms, "#c0392b" if layer.placement != "accelerator" else
                             KIND_COLOURS.get(layer.kind, "#888"), f"{layer.ms:.3f} ms · {layer.bound}")
                            for layer in slowest], "latency per layer"))
        by_name = {layer.name: layer for layer in result.layers}
        points = []
        for layer in target.layers:
            cost = by_name.get(layer.name)
            if cost is None or not cost.macs or layer.ms <= 0:
                continue
            traffic = getattr(layer, "traffic_bytes", 0) or cost.activation_bytes + cost.weight_bytes
            points.append((layer.name, cost.macs / traffic if traffic else 0.0, cost.macs / (layer.ms / 1000),
                           cost.kind))
        peak, bandwidth = getattr(target, "peak_macs_per_s", 0.0), getattr(target, "bandwidth_bytes_per_s", 0.0)
        parts.append("<h2>Roofline</h2>" + _roofline(points, peak, bandwidth)
                     + "<p class='meta'>The roof is the MAC peak and the DDR bandwidth; layers above the sloped "
                       "part run from on-chip memory (L2/MSMC), whose bandwidth is higher.</p>")
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
    parts.append("<h2>All layers</h2><details><summary>{} layers</summary><table><tr><th>#</th><th>layer</th>"
                 "<th>op</th><th>kind</th><th>output</th><th>MACs</th><th>params</th><th>activations</th></tr>"
                 .format(len(result.layers)) + "".join(
                     f"<tr><td class='n'>{index}</td><td>{escape(layer.name)}</td><td>{escape(layer.op_type)}</td>"
                     f"<td>{layer.kind}</td><td>{dims(layer.output_shape)}</td><td class='n'>{layer.macs:,}</td>"
                     f"<td class='n'>{layer.params:,}</td><td class='n'>{human_bytes(layer.activation_bytes)}</td></tr>"
                     for index, layer in enumerate(result.layers, start=1)) + "</table></details>")
    parts.append("<p class='meta'>MACs count Conv/ConvTranspose/Gemm/MatMul multiply-accumulates; bias, BatchNorm, "
                 "activations, pooling and resize are FLOPs, not MACs. Generated by segcost.</p></body></html>\n")
    return "".join(parts)

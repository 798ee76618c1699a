"""Inline-SVG chart primitives for the HTML reports: bars, legends, a roofline, a step plot.

Each function places given numbers on a page; nothing is computed from a model here. Every
colour a chart uses comes with a legend entry, long layer names are shortened in the middle
with the full name in a hover title, and charts carry an aria-label naming them.
"""

from __future__ import annotations

import math
from html import escape

from segcost.reports.units import human, human_bytes

NAME_LIMIT = 44


def short_name(name: str, limit: int = NAME_LIMIT) -> str:
    """Shorten `name` in the middle, keeping its first and last path parts: ``/model/…/backbone.14/…/Conv``.

    Parts are split on "/" (torch.onnx names) or "." (dotted names); without parts the middle
    characters give way to "…". Names up to `limit` characters are returned unchanged.
    """
    if len(name) <= limit:
        return name
    separator = "/" if "/" in name else "."
    parts = name.split(separator)
    if len(parts) >= 3:
        head = parts[:2] if parts[0] == "" else parts[:1]
        tail = [parts[-1]]
        index = len(parts) - 2
        while index >= len(head) and len(separator.join([*head, "…", parts[index], *tail])) <= limit:
            tail.insert(0, parts[index])
            index -= 1
        text = separator.join([*head, "…", *tail]) if index >= len(head) else name
        if len(text) <= limit:
            return text
    keep = limit - 1
    return name[:keep // 2] + "…" + name[len(name) - (keep - keep // 2):]


def legend(entries: list[tuple[str, str]]) -> str:
    """(colour, meaning) pairs as a legend row."""
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{escape(text)}</span>' for colour, text in entries) + "</div>"


def bars(items: list[tuple[str, float, str, str]], label: str, width: int = 1100) -> str:
    """Horizontal bars, one per (name, value, colour, value text); names shortened, full name on hover."""
    if not items:
        return "<p>nothing to show</p>"
    label_width, row_height = 330, 16
    largest = max(value for _, value, _, _ in items) or 1.0
    rows = []
    for index, (name, value, colour, text) in enumerate(items):
        y = index * row_height
        bar = (width - label_width - 200) * value / largest
        tip = f"<title>{escape(name)}: {escape(text)}</title>"
        rows.append(f'<g class="row">{tip}<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">'
                    f'{escape(short_name(name))}</text>'
                    f'<rect x="{label_width}" y="{y + 2}" width="{bar:.1f}" height="{row_height - 4}" fill="{colour}"/>'
                    f'<text x="{label_width + bar + 4:.1f}" y="{y + 12}">{escape(text)}</text></g>')
    return (f'<svg width="{width}" height="{row_height * len(items) + 8}" role="img" aria-label="{escape(label)}">'
            + "".join(rows) + "</svg>")


def _decades(low: float, high: float) -> list[float]:
    return [10.0 ** exponent for exponent in range(math.ceil(low), math.floor(high) + 1)]


def roofline(points: list[tuple[str, float, float, str, bool]], peak: float, roofs: list[tuple[str, float]],
             labelled: set[str], colours: dict[str, str], fallback_colour: str) -> str:
    """Log-log roofline: x = MACs per byte moved, y = achieved MAC/s.

    `points` are (layer, intensity, MAC/s, kind, on fallback core); `roofs` are (memory level,
    bytes/s) — each level's roof is min(peak, bandwidth · x); `labelled` layers get their name
    beside the dot.
    """
    points = [point for point in points if point[1] > 0 and point[2] > 0]
    roofs = [roof for roof in roofs if roof[1] > 0]
    if not points or peak <= 0 or not roofs:
        return "<p>no layers with MACs on the target</p>"
    width, height, left_margin, margin = 820, 460, 80, 50
    xs = [point[1] for point in points] + [peak / bandwidth for _, bandwidth in roofs]
    low_x, high_x = math.log10(min(xs)) - 0.3, math.log10(max(xs)) + 0.3
    low_y = min(math.log10(min(point[2] for point in points)), math.log10(peak) - 3) - 0.3
    high_y = math.log10(peak) + 0.3

    def sx(value: float) -> float:
        return left_margin + (math.log10(value) - low_x) / (high_x - low_x) * (width - left_margin - margin)

    def sy(value: float) -> float:
        return height - margin - (math.log10(value) - low_y) / (high_y - low_y) * (height - 2 * margin)

    parts = [f'<line x1="{left_margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" '
             f'stroke="#999"/><line x1="{left_margin}" y1="{margin}" x2="{left_margin}" y2="{height - margin}" '
             'stroke="#999"/>']
    for tick in _decades(low_x, high_x):
        parts.append(f'<line x1="{sx(tick):.1f}" y1="{margin}" x2="{sx(tick):.1f}" y2="{height - margin + 4}" '
                     f'stroke="#eee"/><text x="{sx(tick):.1f}" y="{height - margin + 16}" text-anchor="middle">'
                     f'{tick:g}</text>')
    for tick in _decades(low_y, high_y):
        parts.append(f'<line x1="{left_margin - 4}" y1="{sy(tick):.1f}" x2="{width - margin}" y2="{sy(tick):.1f}" '
                     f'stroke="#eee"/><text x="{left_margin - 8}" y="{sy(tick) + 4:.1f}" text-anchor="end">'
                     f'{human(tick)}</text>')
    parts.append(f'<text x="{(left_margin + width - margin) / 2}" y="{height - 12}" text-anchor="middle">'
                 'arithmetic intensity: MACs per byte moved (log)</text>'
                 f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
                 'achieved MACs per second (log)</text>')
    x_low, x_high = 10 ** low_x, 10 ** high_x
    for index, (level, bandwidth) in enumerate(roofs):
        ridge = peak / bandwidth
        start_y = max(bandwidth * x_low, 10 ** low_y)
        start_x = start_y / bandwidth
        dash = ["", "6 3", "2 3", "8 3 2 3"][index % 4]
        parts.append(f'<polyline class="roof" fill="none" stroke="#333" stroke-width="1.3" stroke-dasharray="{dash}" '
                     f'points="{sx(start_x):.1f},{sy(start_y):.1f} {sx(ridge):.1f},{sy(peak):.1f}"/>'
                     f'<text x="{sx(start_x) + 6:.1f}" y="{sy(start_y) - 6:.1f}">{escape(level)} '
                     f'{human_bytes(int(bandwidth))}/s</text>')
    parts.append(f'<line x1="{sx(min(peak / bandwidth for _, bandwidth in roofs)):.1f}" y1="{sy(peak):.1f}" '
                 f'x2="{sx(x_high):.1f}" y2="{sy(peak):.1f}" stroke="#333" stroke-width="1.5"/>'
                 f'<text x="{sx(x_high) - 4:.1f}" y="{sy(peak) - 6:.1f}" text-anchor="end">peak {human(peak)} MAC/s'
                 '</text>')
    for name, x, y, kind, fallback in points:
        colour = fallback_colour if fallback else colours.get(kind, "#888")
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}" fill-opacity="0.8">'
                     f'<title>{escape(name)}: {x:.1f} MACs/B, {human(y)} MAC/s</title></circle>')
        if name in labelled:
            parts.append(f'<text class="point-label" x="{sx(x) + 6:.1f}" y="{sy(y) - 5:.1f}">'
                         f'{escape(short_name(name, 28))}<title>{escape(name)}</title></text>')
    return f'<svg width="{width}" height="{height}" role="img" aria-label="roofline">' + "".join(parts) + "</svg>"


def step_plot(values: list[int], names: list[str], peak_index: int, label: str, colour: str) -> str:
    """Live bytes per schedule step as a filled step line; the peak marked and named."""
    if not values:
        return "<p>no layers</p>"
    width, height, left_margin, margin = 1100, 300, 80, 40
    top = max(values) or 1

    def sx(step: float) -> float:
        return left_margin + step / max(len(values), 1) * (width - left_margin - margin)

    def sy(value: float) -> float:
        return height - margin - value / top * (height - 2 * margin)

    outline = [f"{sx(0):.1f},{sy(0):.1f}"]
    for step, value in enumerate(values):
        outline += [f"{sx(step):.1f},{sy(value):.1f}", f"{sx(step + 1):.1f},{sy(value):.1f}"]
    outline.append(f"{sx(len(values)):.1f},{sy(0):.1f}")
    parts = [f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>']
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        level = top * fraction
        parts.append(f'<line x1="{left_margin - 4}" y1="{sy(level):.1f}" x2="{width - margin}" y2="{sy(level):.1f}" '
                     f'stroke="#eee"/><text x="{left_margin - 8}" y="{sy(level) + 4:.1f}" text-anchor="end">'
                     f'{human_bytes(int(level))}</text>')
    for step in range(0, len(values), max(1, len(values) // 10)):
        parts.append(f'<text x="{sx(step):.1f}" y="{height - margin + 16}" text-anchor="middle">{step}</text>')
    peak_x, peak_y = sx(peak_index + 0.5), sy(values[peak_index])
    anchor = "end" if peak_x > width / 2 else "start"
    offset = -8 if anchor == "end" else 8
    parts.append(f'<circle class="peak" cx="{peak_x:.1f}" cy="{peak_y:.1f}" r="4.5" fill="#b00020"/>'
                 f'<text x="{peak_x + offset:.1f}" y="{peak_y + 4:.1f}" text-anchor="{anchor}">peak '
                 f'{human_bytes(values[peak_index])} at #{peak_index} {escape(short_name(names[peak_index], 36))}'
                 f'<title>{escape(names[peak_index])}</title></text>')
    for step, value in enumerate(values):   # hover targets: one transparent column per step
        parts.append(f'<rect x="{sx(step):.1f}" y="{margin}" width="{max(sx(1) - sx(0), 0.5):.2f}" '
                     f'height="{height - 2 * margin}" fill="transparent"><title>#{step} {escape(names[step])}: '
                     f'{human_bytes(value)} live</title></rect>')
    parts.append(f'<text x="{(left_margin + width - margin) / 2}" y="{height - 8}" text-anchor="middle">'
                 'schedule step (layers in topological order)</text>'
                 f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
                 'live activation memory</text>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
            + "".join(parts) + "</svg>")

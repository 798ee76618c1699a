"""Rendering of Pareto fronts: a text table and a self-contained HTML page (inline SVG, no scripts).

Nothing is computed here beyond placing points on the page; the fronts come from pareto.py.
"""

from __future__ import annotations

import math
from html import escape

from tabulate import tabulate

from segcost.reports.html import CSS
from segcost.sweep.pareto import ParetoFront, ParetoPoint

PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 820, 440, 60
FRONT_COLOUR, OTHER_COLOUR = "#c0392b", "#8a9aa9"
LOG_SCALE_RATIO = 10.0
FRONT_CSS = "tr.front td{font-weight:600;color:#c0392b}"
NO_CANDIDATES = ("no finished point of this sweep reproduces a seed-table row with a published mIoU (zoo model "
                 "at the row's input size and classes); the Pareto front needs published accuracy")


def _cost_text(front: ParetoFront, value: float) -> str:
    return f"{value:.4g}" if front.cost == "gmacs" else f"{value:.3f}"


def _seed_text(point: ParetoPoint) -> str:
    seed = point.row.point.seed
    return f"{seed.dataset} {seed.model}" if seed else ""


def render_pareto_text(fronts: list[ParetoFront]) -> str:
    """Each front as a table (front points only), with a count of the dominated candidates."""
    parts = []
    for front in fronts:
        parts.append(f"Pareto front: {front.title}")
        if not front.points:
            parts.append(f"  {NO_CANDIDATES}.\n")
            continue
        rows = [[point.label, _cost_text(front, point.cost), f"{point.miou:.2f}", _seed_text(point)]
                for point in front.front]
        parts.append(tabulate(rows, headers=["point", front.cost_label, "mIoU", "published as"], tablefmt="simple"))
        parts.append(f"{len(front.front)} on the front, {len(front.points) - len(front.front)} dominated, "
                     f"{front.without_miou} finished points without a published mIoU\n")
    return "\n".join(parts)


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] on a linear axis."""
    span = high - low or 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= step * factor:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + index * step for index in range(int((high - first) / step) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between 10**low and 10**high (exponents)."""
    ticks = []
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10 ** exponent
            if low <= math.log10(value) <= high:
                ticks.append(value)
    return ticks


def _scatter(front: ParetoFront) -> str:
    """Cost on x (log when it spans ≥ 10×), mIoU on y; the front is a red staircase."""
    costs = [point.cost for point in front.points]
    mious = [point.miou for point in front.points]
    low_cost, high_cost = min(costs), max(costs)
    logarithmic = low_cost > 0 and high_cost / low_cost >= LOG_SCALE_RATIO
    if logarithmic:
        x_low, x_high = math.log10(low_cost) - 0.1, math.log10(high_cost) + 0.1
        x_ticks = _log_ticks(x_low, x_high)
    else:
        pad = (high_cost - low_cost) * 0.08 or max(abs(high_cost) * 0.1, 1e-6)
        x_low, x_high = low_cost - pad, high_cost + pad
        x_ticks = _ticks(x_low, x_high)
    y_low, y_high = min(mious) - 1.0, max(mious) + 1.0
    inner_width, inner_height = PLOT_WIDTH - 2 * MARGIN, PLOT_HEIGHT - 2 * MARGIN

    def sx(value: float) -> float:
        position = math.log10(value) if logarithmic else value
        return MARGIN + (position - x_low) / (x_high - x_low) * inner_width

    def sy(value: float) -> float:
        return PLOT_HEIGHT - MARGIN - (value - y_low) / (y_high - y_low) * inner_height

    parts = [f'<line x1="{MARGIN}" y1="{PLOT_HEIGHT - MARGIN}" x2="{PLOT_WIDTH - MARGIN}" '
             f'y2="{PLOT_HEIGHT - MARGIN}" stroke="#999"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{PLOT_HEIGHT - MARGIN}" stroke="#999"/>']
    for tick in x_ticks:
        parts.append(f'<line x1="{sx(tick):.1f}" y1="{PLOT_HEIGHT - MARGIN}" x2="{sx(tick):.1f}" '
                     f'y2="{PLOT_HEIGHT - MARGIN + 4}" stroke="#999"/><text x="{sx(tick):.1f}" '
                     f'y="{PLOT_HEIGHT - MARGIN + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in _ticks(y_low, y_high):
        parts.append(f'<line x1="{MARGIN - 4}" y1="{sy(tick):.1f}" x2="{PLOT_WIDTH - MARGIN}" y2="{sy(tick):.1f}" '
                     f'stroke="#eee"/><text x="{MARGIN - 8}" y="{sy(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    scale = " (log)" if logarithmic else ""
    parts.append(f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - 14}" text-anchor="middle">'
                 f'{escape(front.cost_label)}{scale} — lower is better</text>'
                 f'<text x="16" y="{PLOT_HEIGHT / 2}" transform="rotate(-90 16 {PLOT_HEIGHT / 2})" '
                 f'text-anchor="middle">published mIoU (%) — higher is better</text>')
    on_front = front.front
    if len(on_front) > 1:
        steps = [f"{sx(on_front[0].cost):.1f},{sy(on_front[0].miou):.1f}"]
        for previous, point in zip(on_front, on_front[1:]):
            steps += [f"{sx(point.cost):.1f},{sy(previous.miou):.1f}", f"{sx(point.cost):.1f},{sy(point.miou):.1f}"]
        parts.append(f'<polyline fill="none" stroke="{FRONT_COLOUR}" stroke-width="1.5" '
                     f'stroke-dasharray="4 3" points="{" ".join(steps)}"/>')
    for point in sorted(front.points, key=lambda item: item.on_front):
        colour, radius = (FRONT_COLOUR, 5) if point.on_front else (OTHER_COLOUR, 3.5)
        tooltip = f"{point.label}: {_cost_text(front, point.cost)} {front.cost_label}, mIoU {point.miou:.2f}"
        parts.append(f'<circle cx="{sx(point.cost):.1f}" cy="{sy(point.miou):.1f}" r="{radius}" fill="{colour}" '
                     f'fill-opacity="0.85"><title>{escape(tooltip)}</title></circle>')
        if point.on_front:
            parts.append(f'<text x="{sx(point.cost) + 7:.1f}" y="{sy(point.miou) - 6:.1f}">'
                         f'{escape(point.row.point.model[:32])}</text>')
    return (f'<svg width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" role="img" aria-label="{escape(front.title)}">'
            + "".join(parts) + "</svg>")


def _front_table(front: ParetoFront) -> str:
    header = (f"<table><tr><th>on front</th><th>point</th><th>{escape(front.cost_label)}</th><th>mIoU</th>"
              "<th>published as</th><th>published GMACs</th></tr>")
    rows = []
    for point in front.points:
        seed = point.row.point.seed
        published = "" if seed is None or seed.published_gmacs is None else f"{seed.published_gmacs:g}"
        rows.append(f"<tr{' class=front' if point.on_front else ''}><td>{'yes' if point.on_front else ''}</td>"
                    f"<td>{escape(point.label)}</td><td class='n'>{_cost_text(front, point.cost)}</td>"
                    f"<td class='n'>{point.miou:.2f}</td><td>{escape(_seed_text(point))}</td>"
                    f"<td class='n'>{published}</td></tr>")
    return header + "".join(rows) + "</table>"


def render_pareto_html(fronts: list[ParetoFront], title: str = "sweep", notes: list[str] | None = None) -> str:
    """One page: per front a scatter (all candidates, the front highlighted) and its table."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcost sweep: {escape(title)}</title>"
             f"<style>{CSS}{FRONT_CSS}</style></head><body><h1>segcost sweep: {escape(title)}</h1>",
             "<div class='meta'>Pareto fronts of cost against the published mIoU of the seed-table rows the "
             "points reproduce (same architecture, input size and classes; int8 points use the QAT rows), "
             "one front per dataset (mIoU on different datasets is not comparable). Hover a dot for its point.</div>"]
    for front in fronts:
        parts.append(f"<h2>{escape(front.title)}</h2>")
        if not front.points:
            parts.append(f"<p>{escape(NO_CANDIDATES)}.</p>")
            continue
        parts.append(f"<p class='meta'>{len(front.front)} points on the front, "
                     f"{len(front.points) - len(front.front)} dominated; {front.without_miou} finished points "
                     "have no published mIoU and are not shown.</p>")
        parts.append(_scatter(front))
        parts.append(_front_table(front))
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    parts.append("<p class='meta'>Generated by segcost sweep.</p></body></html>\n")
    return "".join(parts)

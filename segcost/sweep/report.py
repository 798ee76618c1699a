"""Rendering of Pareto fronts: a text table and a self-contained HTML page (inline SVG, no scripts).

Nothing is computed here beyond placing points on the page; the fronts come from pareto.py.
Every finished point of the sweep is on the page: points with a published mIoU on their
front's scatter, the others (cost only) in a "mIoU unknown" band under the same cost axis.
All charts of a page share one cost axis and one mIoU axis, so they can be compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from tabulate import tabulate

from segcost.reports.html import CSS
from segcost.reports.svg import legend
from segcost.sweep.pareto import CostOnlyPoint, ParetoFront, ParetoPoint

PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 820, 480, 60
BAND_HEIGHT = 56   # the "mIoU unknown" band between the mIoU area and the cost axis
FRONT_COLOUR, OTHER_COLOUR, UNKNOWN_COLOUR = "#c0392b", "#8a9aa9", "#2a7ab0"
LOG_SCALE_RATIO = 10.0
FRONT_CSS = "tr.front td{font-weight:600;color:#c0392b}tr.unknown td{color:#2a7ab0}rect.band{fill:#f4f7fa}"
NO_CANDIDATES = ("no finished point of this sweep reproduces a seed-table row with a published mIoU (zoo model "
                 "at the row's input size and classes); the Pareto front needs published accuracy")
UNKNOWN_TEXT = "mIoU unknown: no published seed-table row (cost only)"


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


@dataclass(frozen=True)
class _Axes:
    """One cost axis (x, log when it spans ≥ 10×) and one mIoU axis (y) for every chart of a page."""

    x_low: float
    x_high: float
    logarithmic: bool
    x_ticks: list[float]
    y_low: float
    y_high: float
    y_ticks: list[float]
    any_miou: bool

    @classmethod
    def of(cls, fronts: list[ParetoFront]) -> _Axes:
        costs = [point.cost for front in fronts for point in front.points]
        costs += [item.cost for front in fronts for item in front.unpublished]
        mious = [point.miou for front in fronts for point in front.points]
        low_cost, high_cost = min(costs), max(costs)
        logarithmic = low_cost > 0 and high_cost / low_cost >= LOG_SCALE_RATIO
        if logarithmic:
            x_low, x_high = math.log10(low_cost) - 0.1, math.log10(high_cost) + 0.1
            x_ticks = _log_ticks(x_low, x_high)
        else:
            pad = (high_cost - low_cost) * 0.08 or max(abs(high_cost) * 0.1, 1e-6)
            x_low, x_high = low_cost - pad, high_cost + pad
            x_ticks = _ticks(x_low, x_high)
        y_low, y_high = (min(mious) - 1.0, max(mious) + 1.0) if mious else (0.0, 100.0)
        return cls(x_low, x_high, logarithmic, x_ticks, y_low, y_high, _ticks(y_low, y_high) if mious else [],
                   bool(mious))

    def sx(self, value: float) -> float:
        position = math.log10(value) if self.logarithmic else value
        return MARGIN + (position - self.x_low) / (self.x_high - self.x_low) * (PLOT_WIDTH - 2 * MARGIN)

    def sy(self, value: float) -> float:
        """mIoU to page y, in the area above the band."""
        bottom, top = PLOT_HEIGHT - MARGIN - BAND_HEIGHT, MARGIN
        return bottom - (value - self.y_low) / (self.y_high - self.y_low) * (bottom - top)


def _frame(front: ParetoFront, axes: _Axes) -> list[str]:
    """Axes, ticks, the band and the axis titles."""
    axis_y, band_top = PLOT_HEIGHT - MARGIN, PLOT_HEIGHT - MARGIN - BAND_HEIGHT
    parts = [f'<rect class="band" x="{MARGIN}" y="{band_top}" width="{PLOT_WIDTH - 2 * MARGIN}" '
             f'height="{BAND_HEIGHT}"/>',
             f'<text x="{MARGIN - 8}" y="{band_top + BAND_HEIGHT / 2 + 4:.1f}" text-anchor="end">unknown</text>',
             f'<line x1="{MARGIN}" y1="{axis_y}" x2="{PLOT_WIDTH - MARGIN}" y2="{axis_y}" stroke="#999"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{axis_y}" stroke="#999"/>']
    for tick in axes.x_ticks:
        parts.append(f'<line x1="{axes.sx(tick):.1f}" y1="{axis_y}" x2="{axes.sx(tick):.1f}" y2="{axis_y + 4}" '
                     f'stroke="#999"/><text class="x-tick" x="{axes.sx(tick):.1f}" y="{axis_y + 16}" '
                     f'text-anchor="middle">{tick:g}</text>')
    for tick in axes.y_ticks:
        parts.append(f'<line x1="{MARGIN - 4}" y1="{axes.sy(tick):.1f}" x2="{PLOT_WIDTH - MARGIN}" '
                     f'y2="{axes.sy(tick):.1f}" stroke="#eee"/><text class="y-tick" x="{MARGIN - 8}" '
                     f'y="{axes.sy(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    if not axes.any_miou:
        parts.append(f'<text x="{PLOT_WIDTH / 2}" y="{(MARGIN + band_top) / 2:.1f}" text-anchor="middle">'
                     'no point of this sweep has a published mIoU</text>')
    scale = " (log)" if axes.logarithmic else ""
    parts.append(f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - 14}" text-anchor="middle">'
                 f'{escape(front.cost_label)}{scale} — lower is better</text>'
                 f'<text x="16" y="{PLOT_HEIGHT / 2}" transform="rotate(-90 16 {PLOT_HEIGHT / 2})" '
                 f'text-anchor="middle">published mIoU (%) — higher is better</text>')
    return parts


def _scatter(front: ParetoFront, axes: _Axes) -> str:
    """Cost on x, mIoU on y; the front is a red staircase; cost-only points in the band under the axis."""
    sx, sy = axes.sx, axes.sy
    parts = _frame(front, axes)
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
        parts.append(f'<circle class="point" cx="{sx(point.cost):.1f}" cy="{sy(point.miou):.1f}" r="{radius}" '
                     f'fill="{colour}" fill-opacity="0.85"><title>{escape(tooltip)}</title></circle>')
        if point.on_front:   # labels of points in the right quarter end at the point: they stay on the page
            right = sx(point.cost) > MARGIN + 0.75 * (PLOT_WIDTH - 2 * MARGIN)
            anchor = "end" if right else "start"
            parts.append(f'<text x="{sx(point.cost) + (-7 if right else 7):.1f}" y="{sy(point.miou) - 6:.1f}" '
                         f'text-anchor="{anchor}">{escape(point.row.point.model[:32])}</text>')
    band_top = PLOT_HEIGHT - MARGIN - BAND_HEIGHT
    for index, item in enumerate(front.unpublished):
        x, y = sx(item.cost), band_top + 12 + (index % 5) * 8   # staggered so equal costs stay visible
        tooltip = f"{item.label}: {_cost_text(front, item.cost)} {front.cost_label}, mIoU unknown"
        parts.append(f'<polygon class="point unknown" points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} '
                     f'{x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}" fill="{UNKNOWN_COLOUR}" fill-opacity="0.45" '
                     f'stroke="{UNKNOWN_COLOUR}"><title>{escape(tooltip)}</title></polygon>')
    return (f'<svg width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" role="img" aria-label="{escape(front.title)}">'
            + "".join(parts) + "</svg>")


def _legend(front: ParetoFront) -> str:
    entries = []
    if front.front:
        entries.append((FRONT_COLOUR, "on the Pareto front"))
    if len(front.points) > len(front.front):
        entries.append((OTHER_COLOUR, "dominated"))
    if front.unpublished:
        entries.append((UNKNOWN_COLOUR, UNKNOWN_TEXT))
    return legend(entries)


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
    rows += [_unknown_row(front, item) for item in front.unpublished]
    return header + "".join(rows) + "</table>"


def _unknown_row(front: ParetoFront, item: CostOnlyPoint) -> str:
    return (f"<tr class=unknown><td></td><td>{escape(item.label)}</td><td class='n'>{_cost_text(front, item.cost)}"
            "</td><td>unknown</td><td></td><td></td></tr>")


def _counts(front: ParetoFront, shown_elsewhere: str | None) -> str:
    text = f"{len(front.front)} points on the front, {len(front.points) - len(front.front)} dominated"
    if front.unpublished:
        text += (f"; {len(front.unpublished)} points without a published mIoU are in the band under the cost axis "
                 "(same cost scale)")
    elif shown_elsewhere:
        text += f"; points of this sweep without a published mIoU are shown under “{shown_elsewhere}”"
    return f"<p class='meta'>{escape(text)}.</p>"


def render_pareto_html(fronts: list[ParetoFront], title: str = "sweep", notes: list[str] | None = None) -> str:
    """One page: per front a scatter (all candidates, the front highlighted, cost-only points in a band) and its
    table; every chart on the same cost and mIoU axes."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcost sweep: {escape(title)}</title>"
             f"<style>{CSS}{FRONT_CSS}</style></head><body><h1>segcost sweep: {escape(title)}</h1>",
             "<div class='meta'>Pareto fronts of cost against the published mIoU of the seed-table rows the "
             "points reproduce (same architecture, input size and classes; int8 points use the QAT rows), "
             "one front per dataset (mIoU on different datasets is not comparable). Points without a published "
             "mIoU are drawn in the “unknown” band under the cost axis. All charts share one cost axis and one "
             "mIoU axis. Hover a dot for its point.</div>"]
    drawn = [front for front in fronts if front.points or front.unpublished]
    axes = _Axes.of(drawn) if drawn else None
    homes = {front.target: front.title for front in fronts if front.unpublished}
    for front in fronts:
        parts.append(f"<h2>{escape(front.title)}</h2>")
        if not front.points:
            parts.append(f"<p>{escape(NO_CANDIDATES)}.</p>")
        if axes is None or not (front.points or front.unpublished):
            continue
        parts.append(_counts(front, homes.get(front.target) if homes.get(front.target) != front.title else None))
        parts.append(_legend(front))
        parts.append(_scatter(front, axes))
        parts.append(_front_table(front))
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    parts.append("<p class='meta'>Generated by segcost sweep.</p></body></html>\n")
    return "".join(parts)

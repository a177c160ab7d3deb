"""Charts drawn on the server as SVG (no script, no library): bars, funnel, a line.

The page decides a chart's width, so nothing here is drawn in a `viewBox` the
browser would stretch (and its text with it). A chart is `width="100%"` with a fixed
height in CSS pixels: horizontal positions are percentages of the width, vertical ones
pixels, and text keeps the stylesheet's size at any width. A label sits at a
percentage plus a pixel offset (`dx`), which shapes cannot have; so labels go above
bars and lines, or at the chart's edges, never in a pixel-wide margin.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from markupsafe import Markup, escape

GRADE_CLASSES = ("hot", "warm", "cold", "ungraded")


def _svg(height: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="chart" width="100%" height="{height}" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _pct(value: float) -> str:
    return f"{value:.2f}%"


def _text(
    x: str | float, y: float, text: object, cls: str = "", anchor: str = "start", dx: int = 0
) -> str:
    x_attr = x if isinstance(x, str) else f"{x:.1f}"
    offset = f' dx="{dx}"' if dx else ""
    return (
        f'<text x="{x_attr}" y="{y:.1f}"{offset} class="{cls}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )


def channel_bars(rows: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """One horizontal bar per channel under its name, split by grade (hot … ungraded)."""
    span, label_h, bar, gap = 88.0, 16, 16, 10  # bars use 88 % of the width; the rest: totals
    row_h = label_h + bar + gap
    height = len(rows) * row_h + 24
    top = max((sum(parts) for _, parts in rows), default=0) or 1
    body: list[str] = []
    for i, (label, parts) in enumerate(rows):
        y = i * row_h
        body.append(_text(0, y + 12, label, "label"))
        x = 0.0
        for cls, count in zip(GRADE_CLASSES, parts, strict=False):
            if count > 0:
                w = count / top * span
                body.append(
                    f'<rect class="{cls}" x="{_pct(x)}" y="{y + label_h}" width="{_pct(w)}"'
                    f' height="{bar}"><title>{escape(label)}: {count} {cls}</title></rect>'
                )
                x += w
        body.append(_text(_pct(x), y + label_h + bar - 3, sum(parts), "value", dx=6))
    legend_y = height - 6
    for i, cls in enumerate(GRADE_CLASSES):
        body.append(
            f'<rect class="{cls}" x="{i * 90}" y="{legend_y - 10}" width="12" height="12"/>'
        )
        body.append(_text(i * 90 + 16, legend_y, cls, "legend"))
    return _svg(height, body, "Leads per channel by grade")


def funnel(stages: Sequence[tuple[str, int]]) -> Markup:
    """Centered bars narrowing from leads to converted; the stage left, count and step rate
    right. A stage with no leads draws no bar."""
    span, bar, gap = 56.0, 28, 8  # the widest bar uses 56 % of the width, centered
    height = len(stages) * (bar + gap)
    top = max((n for _, n in stages), default=0) or 1
    body: list[str] = []
    previous: int | None = None
    for i, (label, count) in enumerate(stages):
        y = i * (bar + gap)
        if count > 0:
            w = count / top * span
            body.append(
                f'<rect class="stage" x="{_pct(50 - w / 2)}" y="{y}" width="{_pct(w)}"'
                f' height="{bar}"><title>{escape(label)}: {count}</title></rect>'
            )
        body.append(_text(0, y + bar * 0.65, label, "label"))
        rate = f" ({count / previous:.0%})" if previous else ""
        body.append(_text("100%", y + bar * 0.65, f"{count}{rate}", "value", "end"))
        previous = count
    return _svg(height, body, "Funnel: leads to converted")


def leads_over_time(days: Sequence[tuple[str, int]]) -> Markup:
    """New leads per day (or month): a line under a gridline labelled with the busiest
    point's count, with the first, middle and last day under the axis."""
    height, plot_top, plot_bottom = 200, 22, 170
    top = max((n for _, n in days), default=0) or 1
    inner = plot_bottom - plot_top
    last = max(len(days) - 1, 1)
    points = [
        (50.0 if len(days) == 1 else i / last * 100, plot_bottom - n / top * inner)
        for i, (_, n) in enumerate(days)
    ]
    body = [
        f'<line class="grid" x1="0" y1="{plot_top}" x2="100%" y2="{plot_top}"/>',
        _text(0, plot_top - 6, top, "value"),
        f'<line class="axis" x1="0" y1="{plot_bottom}" x2="100%" y2="{plot_bottom}"/>',
    ]
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        body.append(
            f'<line class="line" x1="{_pct(x1)}" y1="{y1:.1f}" x2="{_pct(x2)}" y2="{y2:.1f}"/>'
        )
    radius = 3 if len(days) <= 62 else 1.5
    for (x, y), (day, n) in zip(points, days, strict=True):
        body.append(
            f'<circle class="dot" cx="{_pct(x)}" cy="{y:.1f}" r="{radius}">'
            f"<title>{escape(day)}: {n}</title></circle>"
        )
    if days:
        axis_y = height - 10
        body.append(_text(0, axis_y, days[0][0], "label"))
        if len(days) >= 5:
            mid = len(days) // 2
            body.append(_text(_pct(points[mid][0]), axis_y, days[mid][0], "label", "middle"))
        if len(days) > 1:
            body.append(_text("100%", axis_y, days[-1][0], "label", "end"))
    return _svg(height, body, "New leads per day")

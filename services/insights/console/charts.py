"""Charts drawn on the server as SVG (no script, no library): bars, funnel, a line."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

GRADE_CLASSES = ("hot", "warm", "cold", "ungraded")


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: object, cls: str = "", anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def channel_bars(rows: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """One horizontal bar per channel, split by grade (hot, warm, cold, ungraded)."""
    width, bar, gap, left = 640, 22, 10, 150
    height = max(len(rows), 1) * (bar + gap) + 30
    top = max((sum(parts) for _, parts in rows), default=0) or 1
    scale = (width - left - 50) / top
    body: list[str] = []
    for i, (label, parts) in enumerate(rows):
        y = 10 + i * (bar + gap)
        body.append(_text(left - 8, y + bar * 0.7, label, "label", "end"))
        x = float(left)
        for cls, count in zip(GRADE_CLASSES, parts, strict=False):
            if count:
                w = count * scale
                body.append(
                    f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}">'
                    f"<title>{escape(label)}: {count} {cls}</title></rect>"
                )
                x += w
        body.append(_text(x + 6, y + bar * 0.7, sum(parts), "value"))
    legend_y = height - 8
    for i, cls in enumerate(GRADE_CLASSES):
        body.append(
            f'<rect class="{cls}" x="{left + i * 90}" y="{legend_y - 10}" width="12" height="12"/>'
        )
        body.append(_text(left + i * 90 + 16, legend_y, cls, "legend"))
    return _svg(width, height, body, "Leads per channel by grade")


def funnel(stages: Sequence[tuple[str, int]]) -> Markup:
    """Centered bars narrowing from leads to converted, with the step rate."""
    width, bar, gap = 640, 34, 8
    height = len(stages) * (bar + gap) + 10
    top = max((n for _, n in stages), default=0) or 1
    body: list[str] = []
    previous: int | None = None
    for i, (label, count) in enumerate(stages):
        w = max(count / top * (width - 260), 2)
        x, y = (width - 260 - w) / 2 + 130, 5 + i * (bar + gap)
        body.append(
            f'<rect class="stage" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}">'
            f"<title>{escape(label)}: {count}</title></rect>"
        )
        body.append(_text(120, y + bar * 0.65, label, "label", "end"))
        rate = f" ({count / previous:.0%})" if previous else ""
        body.append(_text(width - 120, y + bar * 0.65, f"{count}{rate}", "value"))
        previous = count
    return _svg(width, height, body, "Funnel: leads to converted")


def leads_over_time(days: Sequence[tuple[str, int]]) -> Markup:
    """New leads per day: a line over the window, with the axis' first and last day."""
    width, height, left, bottom = 640, 200, 40, 30
    top = max((n for _, n in days), default=0) or 1
    inner_w, inner_h = width - left - 10, height - bottom - 10
    step = inner_w / max(len(days) - 1, 1)
    points = [(left + i * step, 10 + inner_h - n / top * inner_h) for i, (_, n) in enumerate(days)]
    body = [
        f'<line class="axis" x1="{left}" y1="{10 + inner_h}" x2="{width - 10}"'
        f' y2="{10 + inner_h}"/>',
        f'<line class="axis" x1="{left}" y1="10" x2="{left}" y2="{10 + inner_h}"/>',
        _text(left - 4, 16, top, "value", "end"),
        _text(left - 4, 10 + inner_h, 0, "value", "end"),
    ]
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline class="line" points="{path}"/>')
        for (x, y), (day, n) in zip(points, days, strict=True):
            body.append(
                f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(day)}: {n}'
                "</title></circle>"
            )
        body.append(_text(left, height - 8, days[0][0], "label"))
        body.append(_text(width - 10, height - 8, days[-1][0], "label", "end"))
    return _svg(width, height, body, "New leads per day")

"""The console's SVG charts: drawn for any width, text never scaled with it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from services.insights.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def _shapes(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(SVG + tag))


def _assert_unscaled(root: ET.Element) -> None:
    """No viewBox: one user unit is one CSS pixel, so the text keeps its CSS size."""
    assert "viewBox" not in root.attrib
    assert root.attrib["width"] == "100%"
    assert re.fullmatch(r"\d+", root.attrib["height"])
    for text in _shapes(root, "text"):
        assert "transform" not in text.attrib and "font-size" not in text.attrib


def test_every_chart_is_drawn_in_pixels_high_and_percent_wide() -> None:
    drawn = [
        charts.channel_bars([("Google Ads", (2, 1, 0, 0)), ("direct", (0, 0, 1, 3))]),
        charts.funnel([("Leads", 6), ("Sales-ready", 2), ("Routed", 2), ("Converted", 1)]),
        charts.leads_over_time([("2026-12-01", 1), ("2026-12-02", 4), ("2026-12-03", 0)]),
    ]
    for markup in drawn:
        root = _parse(markup)
        _assert_unscaled(root)
        for shape in _shapes(root, "rect") + _shapes(root, "circle") + _shapes(root, "line"):
            for attr in ("x", "width", "cx", "x1", "x2"):
                value = shape.attrib.get(attr)
                if value is not None and value.endswith("%"):
                    assert 0 <= float(value[:-1]) <= 100, (attr, value)


def test_a_funnel_stage_without_leads_draws_no_bar() -> None:
    root = _parse(charts.funnel([("Leads", 3), ("Sales-ready", 1), ("Converted", 0)]))
    titles = [r.find(SVG + "title").text for r in _shapes(root, "rect")]  # type: ignore[union-attr]
    assert titles == ["Leads: 3", "Sales-ready: 1"]
    assert "0 (0%)" in [t.text for t in _shapes(root, "text")]


def test_bars_share_one_scale_and_skip_empty_grades() -> None:
    root = _parse(charts.channel_bars([("a", (4, 0, 0, 0)), ("b", (1, 1, 0, 0))]))
    bars = [r for r in _shapes(root, "rect") if r.find(SVG + "title") is not None]
    widths = [float(r.attrib["width"].rstrip("%")) for r in bars]
    assert len(bars) == 3  # a: hot; b: hot, warm
    assert widths[1] == widths[2] == widths[0] / 4


def test_leads_over_time_labels_the_busiest_day_and_the_window() -> None:
    days = [
        (f"2026-12-{d:02d}", n) for d, n in zip(range(1, 8), (0, 2, 5, 1, 0, 0, 3), strict=True)
    ]
    root = _parse(charts.leads_over_time(days))
    texts = [t.text for t in _shapes(root, "text")]
    assert texts == ["5", "2026-12-01", "2026-12-04", "2026-12-07"]
    assert len(_shapes(root, "circle")) == 7
    assert len([line for line in _shapes(root, "line") if line.get("class") == "line"]) == 6


def test_a_single_day_and_no_day_still_draw() -> None:
    one = _parse(charts.leads_over_time([("2026-12-01", 2)]))
    assert [c.attrib["cx"] for c in _shapes(one, "circle")] == ["50.00%"]
    _assert_unscaled(_parse(charts.leads_over_time([])))
    _assert_unscaled(_parse(charts.channel_bars([])))

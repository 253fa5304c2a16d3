"""The Stats page's SVG charts: well-formed, escaped, proportional, and honest when there is nothing to draw."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from engine.service.web import charts

SVG = "{http://www.w3.org/2000/svg}"
HOURS = [datetime(2026, 3, 4, 15, tzinfo=timezone.utc) + timedelta(hours=i) for i in range(24)]
HOSTILE = '<script>alert("x")</script> & co'  # longer than a legend shows: cut, with a tooltip


def parse(svg: str) -> ET.Element:
    """The chart as XML; fails the test if it is not well-formed."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    """The data bars, in document order."""
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def texts(root: ET.Element) -> list[str]:
    """Every visible text label (tooltips left out)."""
    return ["".join(t.itertext()).removeprefix(t.findtext(f"{SVG}title") or "") for t in root.iter(f"{SVG}text")]


def test_a_chart_is_an_accessible_scalable_svg_without_scripts_or_styles() -> None:
    svg = charts.bar_chart_over_time(HOURS, {"telegram": [1] * 24}, title="Jobs per hour", unit="jobs")
    root = parse(svg)
    assert root.get("role") == "img" and root.get("aria-label") == "Jobs per hour"
    assert root.get("width") == "100%" and re.fullmatch(r"0 0 \d+ \d+", root.get("viewBox") or "")
    assert root.findtext(f"{SVG}title") == "Jobs per hour"
    for banned in ("<script", "<style", "href", "url(", "@import", 'id="'):
        assert banned not in svg
    assert "currentColor" in svg


def test_one_bar_per_hour_and_platform_with_a_count_heights_proportional() -> None:
    telegram = [0] * 24
    discord = [0] * 24
    telegram[3], telegram[10], discord[10], discord[23] = 4, 2, 6, 1
    root = parse(charts.bar_chart_over_time(HOURS, {"telegram": telegram, "discord": discord}, title="t", unit="jobs"))
    drawn = bars(root)
    assert [(b.get("data-series"), b.get("data-value")) for b in drawn] == [
        ("telegram", "4"), ("telegram", "2"), ("discord", "6"), ("discord", "1"),
    ]  # fmt: skip
    scale = float(drawn[2].get("height") or 0) / 6
    assert all(
        math.isclose(float(b.get("height") or 0), float(b.get("data-value") or 0) * scale, abs_tol=0.01) for b in drawn
    )
    # hour 10's two bars stack: same x, discord sits right on top of telegram
    low, high = drawn[1], drawn[2]
    assert low.get("x") == high.get("x")
    assert math.isclose(
        float(high.get("y") or 0) + float(high.get("height") or 0), float(low.get("y") or 0), abs_tol=0.02
    )
    # later hours are further right
    assert float(drawn[0].get("x") or 0) < float(drawn[1].get("x") or 0) < float(drawn[3].get("x") or 0)


def test_the_time_axis_is_labelled_every_few_hours_and_the_y_axis_has_nice_ticks() -> None:
    counts = [i % 7 for i in range(24)]
    labels = texts(parse(charts.bar_chart_over_time(HOURS, {"api": counts}, title="t", unit="jobs")))
    hour_labels = [label for label in labels if re.fullmatch(r"\d\d:00", label)]
    assert hour_labels == ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00"]
    assert "hours in UTC" in labels and "jobs" in labels
    assert [label for label in labels if label.isdigit()] == ["0", "2", "4", "6"]  # max 6: 3 to 5 whole ticks


@pytest.mark.parametrize("maximum", [1, 3, 6, 7, 10, 13, 99, 101, 0.012, 0.5, 2.5, 47.3, 1234.0])
def test_nice_ticks_are_three_to_five_round_steps_covering_the_maximum(maximum: float) -> None:
    for integer in (False, True):
        ticks = charts.nice_ticks(maximum, integer=integer)
        assert 3 <= len(ticks) <= 5 and ticks[0] == 0 and maximum <= ticks[-1]
        assert ticks[-2] < maximum or len(ticks) == 3  # no tick past the one that covers it, but at least 3
        step = ticks[1] - ticks[0]
        assert all(math.isclose(b - a, step) for a, b in zip(ticks, ticks[1:]))
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 5))
        if integer:
            assert step >= 1 and step == int(step)


def test_labels_are_escaped_so_the_markup_stays_inert() -> None:
    svg = charts.bar_chart_over_time(HOURS, {HOSTILE: [1] * 24}, title=f"Jobs {HOSTILE}", unit="jobs & more")
    root = parse(svg)
    assert "<script" not in svg
    assert root.get("aria-label") == f"Jobs {HOSTILE}"
    assert f"Jobs {HOSTILE}" in texts(root) and "jobs & more" in texts(root)
    assert HOSTILE in [t.text for t in root.iter(f"{SVG}title")]
    assert bars(root)[0].get("data-series") == HOSTILE
    svg = charts.horizontal_bars(
        [(HOSTILE, [1.0, 2.0])], series_names=["<b>median</b>", "p95 & co"], title="&", unit="s"
    )
    root = parse(svg)
    assert "<script" not in svg and "<b>" not in svg
    assert "<b>median</b>" in texts(root) and root.findtext(f"{SVG}title") == "&"


def test_horizontal_bars_draw_each_value_with_proportional_widths_and_a_label() -> None:
    rows: list[tuple[str, list[float | None]]] = [
        ("ocr", [0.5, 2.0]),
        ("generate", [10.0, 30.0]),
        ("encode", [1.5, None]),
    ]
    root = parse(charts.horizontal_bars(rows, series_names=["median", "p95"], title="Time per stage", unit="s"))
    drawn = bars(root)
    assert [(b.get("data-series"), b.get("data-value")) for b in drawn] == [
        ("median", "0.5"), ("p95", "2"), ("median", "10"), ("p95", "30"), ("median", "1.5"),
    ]  # fmt: skip
    scale = float(drawn[3].get("width") or 0) / 30
    assert all(
        math.isclose(float(b.get("width") or 0), float(b.get("data-value") or 0) * scale, abs_tol=0.01) for b in drawn
    )
    assert len({b.get("x") for b in drawn}) == 1  # one baseline
    labels = texts(root)
    assert {"ocr", "generate", "encode", "median", "p95", "0.5 s", "30 s", "–"} <= set(labels)
    ys = [float(b.get("y") or 0) for b in drawn]
    assert ys == sorted(ys)  # rows top to bottom in the given order


def test_a_single_series_needs_no_legend_and_a_long_label_is_shortened_with_a_tooltip() -> None:
    long = "a_very_long_error_code_that_goes_on_and_on"
    root = parse(charts.horizontal_bars([(long, [3]), ("timeout", [1])], series_names=["failed"], title="t", unit=""))
    labels = texts(root)
    assert "failed" not in labels and "3" in labels
    assert long not in labels and any(label.endswith("…") and long.startswith(label[:-1]) for label in labels)
    assert long in [t.text for t in root.iter(f"{SVG}title")]
    assert {label for label in labels if label.isdigit()} >= {"0", "1", "2", "3"}  # counts: whole ticks


@pytest.mark.parametrize(
    "svg",
    [
        charts.bar_chart_over_time(HOURS, {}, title="Jobs per hour", unit="jobs"),
        charts.bar_chart_over_time(HOURS, {"telegram": [0] * 24}, title="Jobs per hour", unit="jobs"),
        charts.bar_chart_over_time(HOURS, {"wait": [None] * 24}, title="Jobs per hour", unit="s"),
        charts.bar_chart_over_time([], {}, title="Jobs per hour", unit="jobs"),
        charts.horizontal_bars([], series_names=["median", "p95"], title="Jobs per hour", unit="s"),
        charts.horizontal_bars(
            [("ocr", [None, None])], series_names=["median", "p95"], title="Jobs per hour", unit="s"
        ),
    ],
)
def test_nothing_to_draw_gives_the_empty_state(svg: str) -> None:
    root = parse(svg)
    assert charts.EMPTY_MESSAGE in texts(root) and "Jobs per hour" in texts(root)
    assert not bars(root) and root.get("aria-label") == f"Jobs per hour: {charts.EMPTY_MESSAGE}"


def test_the_empty_state_can_say_something_more_precise() -> None:
    svg = charts.horizontal_bars([], series_names=["failed"], title="Failures", unit="", empty="No failed jobs.")
    assert "No failed jobs." in texts(parse(svg))


def test_values_a_bar_cannot_show_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"series\['api'\] must have 24 values"):
        charts.bar_chart_over_time(HOURS, {"api": [1, 2]}, title="t", unit="jobs")
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        charts.bar_chart_over_time(HOURS, {"api": [-1] + [0] * 23}, title="t", unit="jobs")
    with pytest.raises(ValueError, match="row 'ocr' must have 2 values"):
        charts.horizontal_bars([("ocr", [1.0])], series_names=["median", "p95"], title="t", unit="s")
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        charts.horizontal_bars([("ocr", [float("nan")])], series_names=["median"], title="t", unit="s")
    with pytest.raises(ValueError, match="maximum must be"):
        charts.nice_ticks(0)

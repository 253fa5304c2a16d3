"""Server-side SVG charts for the admin pages: stacked bars over time and labelled horizontal bars.

Each function returns one `<svg>` element as a string, ready to put in a page as it is: every label is
escaped, there are no scripts, fonts, ids or `<style>` elements (an inline `<style>` would leak into the
page), it scales with `viewBox` and `width="100%"` (cap its width with CSS on wide screens), and it is
labelled for screen readers (`role="img"`, `aria-label`, `<title>`; each bar has its own `<title>`, a tooltip).
Text and axes are drawn in `currentColor`, so a chart follows the page's colour on a light or a dark theme;
the series take a fixed palette whose colours keep at least 3:1 contrast on white and on near-black.

The empty state is an SVG too (the title and one sentence, "No jobs in this window." unless told), so a
page embeds a chart the same way whether or not there was anything to draw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from html import escape

EMPTY_MESSAGE = "No jobs in this window."
# Mid-luminance colours: each has >= 3:1 contrast against both #fff and #111.
PALETTE = ("#2f7fd8", "#e8710a", "#1f9d55", "#a45ee5", "#e0453a", "#0f9b8e", "#db2777", "#b8860b", "#8b8b8b")
WIDTH = 560  # viewBox units; small enough that 13-unit text stays legible when a phone shrinks it
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
CHAR_W = 7.5  # the average width of a 13-unit character: a guess, as the font is the reader's
TITLE_SIZE, TEXT_SIZE = 16, 13
PAD = 8
BAR_PLOT_HEIGHT = 180
# Label steps for the time axis, in hours: each divides a day (or is whole days), so labels fall on round hours.
HOUR_STEPS = (1, 2, 3, 4, 6, 12, 24, 48, 72, 168)


def bar_chart_over_time(
    hours: Sequence[datetime],
    series: Mapping[str, Sequence[int | float | None]],
    *,
    title: str,
    unit: str,
    empty: str = EMPTY_MESSAGE,
) -> str:
    """Stacked bars, one per hour (UTC), one colour per series, with a y axis, HH:00 labels and a legend."""
    for name, values in series.items():
        _check_values(f"series[{name!r}]", values, len(hours))
    totals = [sum(values[i] or 0 for values in series.values()) for i in range(len(hours))]
    if not hours or not any(totals):
        return empty_chart(title, empty)
    ticks = nice_ticks(max(totals), integer=_all_integers(series.values()))
    tick_labels = [_tick(t, ticks) for t in ticks]
    left = PAD + max(len(label) for label in tick_labels) * CHAR_W + 6
    right = WIDTH - PAD - 4
    legend, legend_bottom = _legend(list(series), top=TITLE_SIZE + PAD + 26)
    top = legend_bottom + TEXT_SIZE + 16  # room for the unit above the top tick
    base = top + BAR_PLOT_HEIGHT
    height = base + 2 * TEXT_SIZE + 3 * PAD
    scale = BAR_PLOT_HEIGHT / ticks[-1]
    parts = [_open(WIDTH, height, title), _title(title), *legend]
    parts.append(_text(PAD, top - 12, unit, anchor="start", opacity=0.8))
    for tick, label in zip(ticks, tick_labels):
        y = base - tick * scale
        parts.append(_line(left, y, right, y, opacity=0.5 if tick == 0 else 0.15))
        parts.append(_text(left - 6, y + 4, label, anchor="end"))
    slot = (right - left) / len(hours)
    step = _hour_step(len(hours), max(1, int((right - left) // 56)))
    for i, hour in enumerate(hours):
        x = left + i * slot
        stacked = 0.0
        for colour, (name, values) in zip(_colours(), series.items()):
            value = values[i]
            if not value:
                continue
            bar = value * scale
            label = f"{name}, {hour:%H:00} UTC: {_number(value)} {unit}"
            parts.append(_bar(x + slot * 0.14, base - stacked - bar, slot * 0.72, bar, colour, name, value, label))
            stacked += bar
        if int(hour.timestamp() // 3600) % step == 0:
            text = f"{hour:%H:00}" if step < 24 else f"{hour:%d %b}"
            parts.append(_text(x + slot / 2, base + TEXT_SIZE + 6, text, anchor="middle"))
    parts.append(_text(right, base + 2 * TEXT_SIZE + 12, "hours in UTC", anchor="end", opacity=0.8))
    return "".join(parts) + "</svg>"


def horizontal_bars(
    rows: Sequence[tuple[str, Sequence[float | None]]],
    *,
    series_names: Sequence[str],
    title: str,
    unit: str,
    empty: str = EMPTY_MESSAGE,
) -> str:
    """One row per label with a bar per series (e.g. a stage's median and p95), each bar labelled with its value."""
    for label, values in rows:
        _check_values(f"the values of row {label!r}", values, len(series_names))
    present = [v for _, values in rows for v in values if v is not None]
    if not present:
        return empty_chart(title, empty)
    ticks = nice_ticks(max(present) or 1, integer=_all_integers(values for _, values in rows))
    names = [_shorten(label, 24) for label, _ in rows]
    left = PAD + max(len(name) for name in names) * CHAR_W + 10
    value_texts = [[_value(v, unit) for v in values] for _, values in rows]
    right = WIDTH - PAD - max(len(text) for texts in value_texts for text in texts) * CHAR_W - 6
    legend, top = _legend(list(series_names), top=TITLE_SIZE + PAD + 26) if len(series_names) > 1 else ([], 36)
    bar_h, gap, row_gap = 14, 3, 12
    row_h = len(series_names) * (bar_h + gap) - gap + row_gap
    base = top + 6 + row_h * len(rows)
    height = base + TEXT_SIZE + 2 * PAD
    scale = (right - left) / ticks[-1]
    parts = [_open(WIDTH, height, title), _title(title), *legend]
    for tick in ticks:
        x = left + tick * scale
        parts.append(_line(x, top, x, base, opacity=0.5 if tick == 0 else 0.15))
        label = _tick(tick, ticks) + (f" {unit}" if tick == ticks[-1] and unit else "")
        parts.append(_text(x, base + TEXT_SIZE + 4, label, anchor="middle"))
    for r, ((label, values), name, texts) in enumerate(zip(rows, names, value_texts)):
        y = top + 6 + r * row_h + row_gap / 2
        middle = y + (len(series_names) * (bar_h + gap) - gap) / 2
        parts.append(_text(left - 8, middle + 4, name, anchor="end", tooltip=label if name != label else None))
        for s, (colour, series, value, text) in enumerate(zip(_colours(), series_names, values, texts)):
            top_s = y + s * (bar_h + gap)
            if value is not None:
                tip = f"{label}, {series}: {text}"
                parts.append(_bar(left, top_s, value * scale, bar_h, colour, series, value, tip))
            end = left + (value or 0) * scale
            parts.append(_text(end + 4, top_s + bar_h - 3, text, anchor="start"))
    return "".join(parts) + "</svg>"


def empty_chart(title: str, message: str = EMPTY_MESSAGE) -> str:
    """The chart's frame with its title and one sentence in place of the plot."""
    height = 110
    return "".join(
        [
            _open(WIDTH, height, f"{title}: {message}", css="chart chart-empty"),
            _title(title),
            _text(WIDTH / 2, 70, message, anchor="middle", opacity=0.8),
            "</svg>",
        ]
    )


def nice_ticks(maximum: float, *, integer: bool = False) -> list[float]:
    """3 to 5 evenly spaced ticks from 0 past `maximum`, a step of 1, 2 or 5 times a power of ten."""
    if not maximum > 0 or not math.isfinite(maximum):
        raise ValueError(f"maximum must be a positive finite number; got {maximum!r}")
    exponent = math.floor(math.log10(maximum)) - 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * 10.0**exponent
            if integer and step < 1:
                continue
            count = math.ceil(maximum / step - 1e-9)
            if count <= 4:
                return [round(i * step, 12) for i in range(max(count, 2) + 1)]
        exponent += 1


def _check_values(name: str, values: Sequence[int | float | None], expected: int) -> None:
    """Refuse values a bar cannot show: the wrong count, negative or not finite."""
    if len(values) != expected:
        raise ValueError(f"{name} must have {expected} values, one per bar; got {len(values)}")
    for value in values:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must hold finite numbers >= 0 or None; got {value!r}")


def _all_integers(groups: Iterable[Sequence[int | float | None]]) -> bool:
    """Counts get whole-number ticks; durations may get 0.5 s."""
    return all(isinstance(v, int) for values in groups for v in values if v is not None)


def _hour_step(count: int, most: int) -> int:
    """The smallest round step that puts at most `most` labels under `count` hourly bars."""
    return next((step for step in HOUR_STEPS if math.ceil(count / step) <= most), HOUR_STEPS[-1])


def _legend(names: list[str], *, top: float) -> tuple[list[str], float]:
    """A swatch and a name per series, wrapped into rows; also where the legend ends."""
    parts, x, y = [], float(PAD), top
    for colour, name in zip(_colours(), names):
        shown = _shorten(name, 30)
        width = 14 + len(shown) * CHAR_W + 16
        if x + width > WIDTH - PAD and x > PAD:
            x, y = float(PAD), y + TEXT_SIZE + 8
        parts.append(f'<rect x="{x:.2f}" y="{y - 10:.2f}" width="10" height="10" rx="2" fill="{colour}"/>')
        parts.append(_text(x + 14, y, shown, anchor="start", tooltip=name if shown != name else None))
        x += width
    return parts, y + 6


def _colours() -> Iterator[str]:
    """The palette, repeated for charts with more series than colours."""
    return itertools.cycle(PALETTE)


def _open(width: float, height: float, label: str, css: str = "chart") -> str:
    """The root element: scales to its container, one accessible name."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="100%" role="img" aria-label="{escape(label)}" font-family="{escape(FONT)}" '
        f'font-size="{TEXT_SIZE}" fill="currentColor"><title>{escape(label)}</title>'
    )


def _title(title: str) -> str:
    """The chart's heading, top left."""
    return f'<text x="{PAD}" y="{TITLE_SIZE + PAD}" font-size="{TITLE_SIZE}" font-weight="600">{escape(title)}</text>'


def _text(x: float, y: float, text: str, *, anchor: str, opacity: float = 1.0, tooltip: str | None = None) -> str:
    """A line of text in the page's colour."""
    faded = f' fill-opacity="{opacity}"' if opacity < 1 else ""
    tip = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return f'<text x="{x:.2f}" y="{y:.2f}" text-anchor="{anchor}"{faded}>{tip}{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, *, opacity: float) -> str:
    """A grid or axis line in the page's colour."""
    return (
        f'<line x1="{x1:.2f}" y1="{y1:.2f}" x2="{x2:.2f}" y2="{y2:.2f}" stroke="currentColor" '
        f'stroke-opacity="{opacity}" stroke-width="1"/>'
    )


def _bar(x: float, y: float, width: float, height: float, colour: str, series: str, value: float, tip: str) -> str:
    """One bar, carrying its series and value for tests and tools, and a tooltip."""
    return (
        f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{width:.2f}" height="{height:.2f}" fill="{colour}" '
        f'data-series="{escape(series)}" data-value="{value:g}"><title>{escape(tip)}</title></rect>'
    )


def _shorten(text: str, most: int) -> str:
    """`text`, cut with an ellipsis when longer than `most` characters (the whole of it goes in a tooltip)."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _number(value: float) -> str:
    """Three significant digits, or a whole number with thousands separators from 1000 on."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _value(value: float | None, unit: str) -> str:
    """A bar's value label: the number and its unit, or a dash for no data."""
    return "–" if value is None else f"{_number(value)} {unit}".strip()


def _tick(tick: float, ticks: list[float]) -> str:
    """A tick label with as many decimals as the step needs."""
    step = ticks[1] - ticks[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{tick:,.{decimals}f}"

"""The overview's weekly chart as inline SVG: stacked bars per week and verdict, built on the
server (no script), every text escaped, with a <title>, a <desc>, text labels and a legend.
Colours are classes styled in static/dashboard.css (the page's CSP allows no inline style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 34, 40  # room for the axis, the legend and the week labels


def _nice_max(value: int) -> int:
    """The axis top: the smallest of 1, 2, 5 × 10^n at or above `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def weekly_svg(
    weeks: Sequence[Mapping[str, Any]], verdicts: Sequence[str], labels: Mapping[str, str],
    title: str, description: str,
) -> str:  # fmt: skip
    """The chart of `weeks` (core.overview.weekly_counts) as one <svg> element."""
    top = _nice_max(max((week["total"] for week in weeks), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(weeks), 1)
    bar_w = slot * 0.6
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
    ]
    # Legend: a swatch and the verdict's word (the colour only repeats the word).
    x = LEFT
    for verdict in verdicts:
        word = escape(labels.get(verdict, verdict))
        parts.append(
            f'<rect class="swatch bar-{escape(verdict)}" x="{x}" y="8" width="12" height="12"/>'
            f'<text class="legend-label" x="{x + 16}" y="18">{word}</text>'
        )
        x += 24 + 8 * len(labels.get(verdict, verdict)) + 16
    # Axis: the baseline, and the top value.
    base = TOP + plot_h
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>'
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}"/>'
        f'<text class="axis-label" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top}</text>'
        f'<text class="axis-label" x="{LEFT - 6}" y="{base + 4}" text-anchor="end">0</text>'
    )
    for index, week in enumerate(weeks):
        x0 = LEFT + index * slot + (slot - bar_w) / 2
        y = float(base)
        label = escape(str(week["label"]))
        for verdict in verdicts:
            count = int(week["counts"].get(verdict, 0))
            if count <= 0:
                continue
            height = plot_h * count / top
            y -= height
            word = escape(labels.get(verdict, verdict))
            parts.append(
                f'<rect class="bar bar-{escape(verdict)}" data-week="{label}" '
                f'data-verdict="{escape(verdict)}" data-count="{count}" x="{x0:.1f}" '
                f'y="{y:.1f}" width="{bar_w:.1f}" height="{height:.1f}">'
                f"<title>{label}: {count} {word}</title></rect>"
            )
        centre = x0 + bar_w / 2
        if week["total"]:
            parts.append(
                f'<text class="bar-total" x="{centre:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle">{int(week["total"])}</text>'
            )
        parts.append(
            f'<text class="axis-label" x="{centre:.1f}" y="{base + 16}" '
            f'text-anchor="middle">{label.rsplit("-", 1)[-1]}</text>'
        )
    if weeks:
        parts.append(
            f'<text class="axis-label" x="{LEFT}" y="{HEIGHT - 6}">week of '
            f'{escape(str(weeks[0]["week"]))}</text>'
            f'<text class="axis-label" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
            f'week of {escape(str(weeks[-1]["week"]))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

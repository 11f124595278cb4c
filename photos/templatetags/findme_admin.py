"""Figures for people on the staff pages: durations, rates, money, and the throughput chart."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    if seconds is None:
        return "—"
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f} %"


@register.filter
def usd(amount: float | None) -> str:
    return (
        "—"
        if amount is None
        else f"${amount:,.2f}"
        if amount >= 0.01 or amount == 0
        else f"${amount:.4f}"
    )


CHART_W, CHART_H, LABEL_H = 600, 120, 18


@register.simple_tag
def throughput_chart(series: dict[str, Any]) -> str:
    """Stacked bars (done, then failed) per five-minute slice of the last hour, as SVG drawn
    here: no chart library, no inline style, nothing from another site."""
    done, failed = series["done"], series["failed"]
    slots = len(done)
    peak = max([d + f for d, f in zip(done, failed, strict=True)] + [1])
    slot_w = CHART_W / slots
    bars = []
    for i, (d, f) in enumerate(zip(done, failed, strict=True)):
        x = round(i * slot_w + 2, 1)
        w = round(slot_w - 4, 1)
        d_h = round(CHART_H * d / peak, 1)
        f_h = round(CHART_H * f / peak, 1)
        bars.append(("done", x, round(CHART_H - d_h, 1), w, d_h, f"{d} done"))
        bars.append(("failed", x, round(CHART_H - d_h - f_h, 1), w, f_h, f"{f} failed"))
    rects = format_html_join(
        "",
        '<rect class="findme-bar-{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        (bar for bar in bars if bar[4] > 0),
    )
    minutes = series["bucket_s"] // 60
    summary = (
        f"Photos finished per {minutes} minutes over the last hour, oldest first: "
        + ", ".join(f"{d} done and {f} failed" for d, f in zip(done, failed, strict=True))
    )
    return format_html(
        '<svg class="findme-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}'
        '<line x1="0" y1="{}" x2="{}" y2="{}" class="findme-axis"></line>'
        '<text x="0" y="{}">1 h ago</text><text x="{}" y="{}" text-anchor="end">now</text>'
        '<text x="4" y="12">peak {} per {} min</text></svg>',
        CHART_W,
        CHART_H + LABEL_H,
        summary,
        rects,
        CHART_H,
        CHART_W,
        CHART_H,
        CHART_H + LABEL_H - 4,
        CHART_W,
        CHART_H + LABEL_H - 4,
        peak,
        minutes,
    )

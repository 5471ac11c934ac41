"""`{% period start end %}`: a service period as the invoice pages write it: "29 Nov - 29 Dec 2026"
(with an en dash), the year on both sides across a year, "29 Nov 2026" for an instant, an em dash
when unknown. The PDF writes it with the same function."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()

EN_DASH, EM_DASH = "\N{EN DASH}", "\N{EM DASH}"


def _day(moment: datetime, *, year: bool = True) -> str:
    local = timezone.localtime(moment)
    return f"{local.day} {local:%b %Y}" if year else f"{local.day} {local:%b}"


def format_period(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return EM_DASH
    if start is None or end is None:
        return _day(start or end)  # type: ignore[arg-type]
    first, last = timezone.localtime(start), timezone.localtime(end)
    if first.date() == last.date():
        return _day(start)
    return f"{_day(start, year=first.year != last.year)} {EN_DASH} {_day(end)}"


@register.simple_tag
def period(start: datetime | None, end: datetime | None) -> str:
    return format_period(start, end)

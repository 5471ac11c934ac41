"""Calendar arithmetic of billing periods, as Stripe counts them: whole calendar months from the
billing cycle anchor, the day clamped to the month's last.
https://docs.stripe.com/billing/subscriptions/billing-cycle"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from billing_portal.gateway.base import GatewayError


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, the day clamped to the month's last (Jan 31 + 1 = Feb 28/29)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def period_end_after(anchor: datetime, start: datetime, interval: str) -> datetime:
    """The first billing date after `start` on the cycle anchored at `anchor`. Counting from the
    anchor, as Stripe does, a cycle anchored on the 31st bills on Feb 28 and then on Mar 31 again."""
    step = {"day": timedelta(days=1), "week": timedelta(weeks=1)}.get(interval)
    if step is not None:
        return anchor + step * max(1, (start - anchor) // step + 1)
    months = {"month": 1, "year": 12}.get(interval)
    if months is None:
        raise GatewayError(f"Unsupported billing interval {interval!r}.", code="parameter_invalid")
    # Start close to `start`, then step: a long-anchored subscription needs no long loop.
    count = max(1, ((start.year - anchor.year) * 12 + start.month - anchor.month) // months)
    while (end := add_months(anchor, months * count)) <= start:
        count += 1
    return end

"""factory-boy helpers for the credits tests: a tenant on a plan that admits AI-credit work, and
grants made through the services (never rows written around them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from credits import services
from credits.models import Grant, Source
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from tenants.models import Tenant

K = 1000  # thousandths in one credit


def on_plus(tenant: Tenant, *, start: datetime | None = None) -> Subscription:
    """An active AI Plus subscription (no credits granted: grant them explicitly)."""
    start = start or timezone.now()
    return SubscriptionFactory(
        tenant=tenant,
        plan=plan("credits-plus"),
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
    )


def grant(
    tenant: Tenant,
    credits: int | float | str,
    *,
    source: str = Source.PLAN_INCLUDED,
    days: int | None = 30,
    valid_from: datetime | None = None,
    reference: str = "",
) -> Grant:
    """Grant `credits` (a number of credits, e.g. 100 or "0.5") valid `days` from `valid_from`."""
    start = valid_from or timezone.now()
    from plans.money import parse_credits

    return services.credits_grant(
        tenant=tenant,
        source=source,
        amount=parse_credits(str(credits)),
        valid_from=start,
        expires_at=start + timedelta(days=days) if days is not None else None,
        reference=reference,
        now=min(start, timezone.now()),
    )

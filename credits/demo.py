"""Demo data for `seed_demo` (DEBUG only): a month of AI-credit consumption for a tenant on AI Plus
since a month before, written through the services with the clock of each moment, so the ledger,
AI Statistics and the replay at any moment are exactly what a month of real traffic would have
left."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.utils import timezone

from credits import services
from credits.models import ExtraPack
from tenants.models import ApiKey, Tenant

CLIENTS = ["helpdesk-eu", "helpdesk-us", "reviews-bot", "onboarding", "billing-desk"]
CURRENT_PERIOD_BURST = 1600  # credits (Smart Responses) used in the current period besides 15


def demo_month(
    *, tenant: Tenant, api_key: ApiKey, period_start: datetime, now: datetime | None = None
) -> int:
    """About 1,200 credits of consumption spread over the AI Plus period before the current one (from
    `period_start`: its 2,000 credits were granted by that period's paid invoice, as the renewal's
    invoice granted this period's) by client and feature, one refund, and 1,615 credits used in the
    current period (over 80% of it: the balance runs low, so the extra pack `seed_demo` then buys is
    on offer, C12). Returns the consumptions made. (The plan itself, and the active extra pack, are
    bought by `seed_demo` through billing_portal, which this layer may not call.)"""
    now = now or timezone.now()
    rng = random.Random(f"demo:{tenant.slug}")  # the same history on every fresh seed
    start = period_start
    made = 0
    for day in range((now - start).days + 1):
        for n in range(rng.randint(6, 14)):
            moment = start + timedelta(days=day, hours=rng.randint(7, 19), minutes=rng.randint(0, 59))
            if not start <= moment < now:
                continue
            smart = rng.random() < 0.6
            services.credits_consume(
                tenant=tenant,
                feature="smart_response" if smart else "ai_review",
                quantity=rng.randint(1, 6) if smart else rng.randint(5, 40),
                idempotency_key=f"demo-{day:02d}-{n:02d}",
                client_id=rng.choice(CLIENTS),
                actor=api_key,
                now=moment,
            )
            made += 1
    services.credits_refund(
        tenant=tenant, idempotency_key="demo-12-00", actor=api_key, now=start + timedelta(days=13)
    )
    services.grants_expire_due(now=now)
    for n in range(5):
        services.credits_consume(
            tenant=tenant,
            feature="smart_response",
            quantity=n + 1,
            idempotency_key=f"demo-today-{n}",
            client_id=CLIENTS[n],
            actor=api_key,
            now=now,
        )
        made += 1
    # A busy start of the new period: 1,600 more credits, so 80% of its 2,000 are used — the
    # balance runs low (C03: the sidebar's quick access shows) and an extra pack may be bought (C12).
    for n in range(20):
        services.credits_consume(
            tenant=tenant,
            feature="smart_response",
            quantity=CURRENT_PERIOD_BURST // 20,
            idempotency_key=f"demo-burst-{n:02d}",
            client_id=CLIENTS[n % len(CLIENTS)],
            actor=api_key,
            now=now,
        )
        made += 1
    return made


def demo_pack() -> ExtraPack | None:
    """The pack the demo buys (the first on sale): `seed_demo` buys it through billing_portal's
    purchase path, so its invoice and the ledger's reference are the real ones."""
    return ExtraPack.objects.filter(active=True).order_by("sort_order").first()

"""Demo usage for `seed_demo`: conversations reported through the same services as the API, spread
over the past days, some running past 24 hours, some outbound and never answered."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.utils import timezone

from sessions_billing import services
from sessions_billing.models import SessionLimit
from tenants.errors import BusinessError
from tenants.models import Tenant

AGENTS = ["support-bot", "billing-assistant", "outreach-caller", "onboarding-guide"]


def demo_sessions(*, tenant: Tenant, days: int, per_day: int, seed: int, now: datetime | None = None) -> int:
    """Report about `per_day` conversations a day for the past `days` days; returns how many started.
    A refusal (a trial running out, a limit) stops the day's reports, as it would stop the agents."""
    now = now or timezone.now()
    rng = random.Random(seed)
    started = 0
    for day in range(days, -1, -1):
        for _ in range(max(1, per_day + rng.randint(-per_day // 4, per_day // 4))):
            at = now - timedelta(days=day) + timedelta(minutes=rng.randint(0, 24 * 60 - 1))
            if at >= now - timedelta(minutes=1):
                continue
            agent = rng.choice(AGENTS)
            direction = "outbound" if agent == "outreach-caller" else "inbound"
            cid = f"{tenant.slug}-{at:%m%d}-{started:05d}"
            try:
                services.session_start(
                    tenant=tenant, conversation_id=cid, direction=direction, agent=agent, at=at
                )
            except BusinessError:
                break
            started += 1
            # Replies: most conversations are short; some run into a second day.
            last = at
            for _ in range(rng.randint(0, 3)):
                last = min(
                    now,
                    last
                    + timedelta(
                        minutes=rng.randint(1, 90) if rng.random() < 0.85 else rng.randint(60 * 20, 60 * 30)
                    ),
                )
                kind = "customer_message" if direction == "inbound" or rng.random() < 0.4 else "agent_message"
                services.session_event(tenant=tenant, conversation_id=cid, type=kind, at=last)
            if rng.random() < 0.7 and last < now - timedelta(hours=1):
                services.session_event(tenant=tenant, conversation_id=cid, type="end", at=last)
    return started


def demo_limit_near(*, tenant: Tenant, share: float = 0.86) -> int:
    """Set the tenant's session limit so that this period's usage is `share` of it ("Session limit
    almost reached" on the card)."""
    from sessions_billing.selectors import usage_for

    usage = usage_for(tenant=tenant)
    limit = max(1, round(usage.billable_sessions / share))
    if usage.terms.base_limit is not None:
        limit = min(limit, usage.terms.base_limit)
    SessionLimit.objects.update_or_create(
        tenant=tenant, defaults={"session_limit": limit, "set_by_label": "demo"}
    )
    return limit

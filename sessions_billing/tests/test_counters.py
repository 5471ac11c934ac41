"""Counters equal what the stored sessions say: after a random mix of starts, events, period
roll-overs and limit changes, every counter is recomputed from the rows."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest
import time_machine
from django.db.models import Count
from django.utils import timezone

from plans.models import Subscription
from sessions_billing import services
from sessions_billing.models import BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.services import WINDOW
from sessions_billing.tests.conftest import paid
from tenants.errors import BusinessError

pytestmark = pytest.mark.django_db


def _assert_counters_match_rows(tenant) -> None:
    periods = list(UsagePeriod.objects.filter(tenant=tenant).order_by("period_start"))
    per_period = dict(
        BillableWindow.objects.filter(tenant=tenant)
        .values("usage_period")
        .annotate(n=Count("id"))
        .values_list("usage_period", "n")
    )
    for period in periods:
        assert period.billable_sessions == per_period.get(period.pk, 0), period
    for a, b in itertools.pairwise(periods):
        assert a.period_end <= b.period_start, "periods overlap"
    per_conv = dict(
        BillableWindow.objects.filter(tenant=tenant)
        .values("conversation")
        .annotate(n=Count("id"))
        .values_list("conversation", "n")
    )
    for conv in Conversation.objects.filter(tenant=tenant):
        assert conv.billable_sessions == per_conv.get(conv.pk, 0), conv.conversation_id
    first_billed: set[int] = set()
    windows = BillableWindow.objects.filter(tenant=tenant).select_related("conversation", "usage_period")
    for window in windows.order_by("counted_at", "id"):  # the first billed first
        assert window.starts_at == window.conversation.started_at + window.index * WINDOW
        if window.conversation_id not in first_billed:
            # A new billable session counts in the period current when it was admitted, also when
            # it is dated in an earlier one (a late start): a closed period takes no new sessions.
            first_billed.add(window.conversation_id)
            moment = window.counted_at
        else:
            # A later window counts in the period in which it starts (or the first period).
            moment = window.starts_at
        expected = [p for p in periods if p.period_start <= moment]
        assert window.usage_period == (expected[-1] if expected else periods[0]), window


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("plan_code", ["agents-growth", "agents-starter"])
def test_random_mix_keeps_every_counter_equal_to_the_rows(tenant, seed, plan_code):
    rng = random.Random(seed)
    t0 = timezone.now().replace(microsecond=0)
    sub = paid(tenant, plan_code, current_period_start=t0, current_period_end=t0 + timedelta(days=30))
    clock = t0 + timedelta(hours=1)
    ids: list[str] = []
    refused = 0
    with time_machine.travel(clock, tick=False) as traveller:
        for step in range(400):
            clock += timedelta(minutes=rng.randint(1, 240))
            traveller.move_to(clock)
            roll = rng.random()
            if roll < 0.35 or not ids:
                cid = f"c{step}"
                at = clock - timedelta(hours=rng.choice([0, 0, 0, 2, 30, 200]))
                try:
                    services.session_start(
                        tenant=tenant,
                        conversation_id=cid if rng.random() > 0.1 or not ids else rng.choice(ids),
                        direction=rng.choice(["inbound", "outbound"]),
                        agent=rng.choice([None, "a", "b"]),
                        at=at,
                    )
                    ids.append(cid)
                except BusinessError as exc:
                    refused += 1
                    if exc.code != "session_limit_reached":
                        raise
            elif roll < 0.9:
                at = clock - timedelta(hours=rng.choice([0, 0, 1, 5, 26, 49, 300]))
                try:
                    services.session_event(
                        tenant=tenant,
                        conversation_id=rng.choice(ids),
                        type=rng.choice(["customer_message", "agent_message", "agent_message", "end"]),
                        at=at,
                    )
                except BusinessError as exc:
                    # 422: dated before its conversation started; 402: an Answered-only reply that
                    # would open a new billable session past the limit.
                    if exc.status not in (404, 409, 422) and exc.code != "session_limit_reached":
                        raise
            elif roll < 0.95:
                # The period rolls over (the gateway's renewal).
                Subscription.objects.filter(pk=sub.pk).update(
                    current_period_start=clock, current_period_end=clock + timedelta(days=30)
                )
            else:
                SessionLimit.objects.update_or_create(
                    tenant=tenant, defaults={"session_limit": rng.randint(5, 60)}
                )
    assert UsagePeriod.objects.filter(tenant=tenant).count() >= 2
    assert BillableWindow.objects.filter(tenant=tenant).count() > 50
    _assert_counters_match_rows(tenant)

"""The tenant's credit summary (the sidebar's quick access, C03, and the Overview tile), read in one
plain query on every tenant page: which grants it counts, and the index that keeps AI credits used
per client off the whole period's ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from credits import services
from credits.models import Consumption, Source, Unit
from credits.selectors import _client_consumption, summary
from credits.tests.conftest import START
from credits.tests.helpers import K, consume

DAY = timedelta(days=1)


def _grant(tenant, amount, source, *, starts=START, days=30, unit=Unit.AI_CREDIT):
    return services.credits_grant(
        tenant=tenant,
        unit=unit,
        source=source,
        amount=amount * K,
        valid_from=starts,
        expires_at=starts + days * DAY if days else None,
        now=START,
    )


def test_c03_summary_counts_live_grants_and_the_plan_period_of_this_tenant_only(plus, other_tenant):
    """Balance: every live AI-credit grant. The period: live plan grants only (not packs, not staff
    adjustments). Not counted: an expired grant, one not yet started, ticket credits, another
    tenant's credits."""
    _grant(plus, 100, Source.PLAN_RENEWAL)
    _grant(plus, 20, Source.EXTRA_PACK)
    _grant(plus, 5, Source.STAFF_ADJUSTMENT, days=None)
    _grant(plus, 1000, Source.PLAN_INCLUDED, starts=START - 60 * DAY)  # expired 30 days ago
    _grant(plus, 300, Source.PLAN_RENEWAL, starts=START + 30 * DAY)  # the next period
    _grant(plus, 7, Source.TICKET_CYCLE, unit=Unit.TICKET_CREDIT)
    _grant(other_tenant, 999, Source.PLAN_RENEWAL)
    consume(plus, "a", quantity=30)  # plan credits first

    found = summary(tenant_id=plus.pk, now=START)

    assert found.has_credits
    assert found.balance == (100 + 20 + 5 - 30) * K
    assert (found.period_amount, found.period_remaining) == (100 * K, 70 * K)
    assert found.period_used == 30 * K
    later = summary(tenant_id=plus.pk, now=START + 30 * DAY)  # the instant of expiry is expired
    assert (later.balance, later.period_amount) == ((5 + 300) * K, 300 * K)


def test_c03_summary_reads_open_holds_in_its_one_query(plus, django_assert_num_queries):
    """The held sum of open holds only (held and unexpired), in the same single query."""
    _grant(plus, 100, Source.PLAN_RENEWAL)
    services.credits_hold(tenant=plus, idempotency_key="open", amount=30 * K, ttl_seconds=600)
    services.credits_hold(tenant=plus, idempotency_key="short", amount=5 * K, ttl_seconds=60)
    released = services.credits_hold(tenant=plus, idempotency_key="gone", amount=7 * K, ttl_seconds=600)
    services.credits_hold_release(tenant=plus, hold_id=released.answer["id"])

    with django_assert_num_queries(1):
        found = summary(tenant_id=plus.pk, now=START)
    assert (found.balance, found.held, found.available) == (100 * K, 35 * K, 65 * K)
    later = summary(tenant_id=plus.pk, now=START + timedelta(seconds=60))
    assert (later.held, later.available) == (30 * K, 70 * K)


def test_c03_summary_of_a_tenant_without_credits(tenant):
    found = summary(tenant_id=tenant.pk)
    assert (found.has_credits, found.balance, found.period_amount, found.low) == (False, 0, 0, False)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_l10_ai_credits_used_per_client_reads_the_clients_consumptions_not_the_periods(plus):
    """L10: the Manage Licenses column sums a page's clients' consumptions of the period through
    (tenant, client, created_at), so the page does not slow down as the ledger grows."""
    _grant(plus, 100_000, Source.PLAN_RENEWAL)
    for n in range(30):
        consume(plus, f"k{n}", feature="ai_review", client_id=f"busy-{n % 3}")
    consume(plus, "mine", client_id="acme-support")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE credits_consumption")
        cursor.execute("SET LOCAL enable_seqscan = off")
        rows = _client_consumption(plus.pk, START - DAY, START + DAY).filter(client_id__in=["acme-support"])
        sql, params = rows.values("client_id").query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "consumption_tenant_client" in plan
    condition = plan.split("Index Cond:")[1].split("\n")[0]
    assert "tenant_id = " in condition
    assert "client_id" in condition
    assert Consumption.objects.filter(tenant=plus, client_id="acme-support").count() == 1

"""`seed_demo` puts Lumen on AI Plus with a month of consumption and an active extra pack, made
through the real services (issue 9: "Done when")."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from credits.models import Consumption, Entry, Grant
from credits.selectors import overview, statistics
from credits.tests.helpers import K, check_invariants
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_lumen_has_a_month_of_consumption_and_an_active_pack(settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=None)
    lumen = Tenant.objects.get(slug="lumen")
    ov = overview(tenant=lumen)
    assert (ov.plan.plan_name, ov.plan.state) == ("AI Plus", "active")
    assert ov.extra_pack is not None
    assert (ov.extra_pack.amount, ov.extra_pack.remaining) == (500 * K, 500 * K)
    # This period: 2,000 plan credits, 15 used today; last period's leftovers expired at renewal.
    assert (ov.period_amount, ov.period_used) == (2000 * K, 15 * K)
    assert ov.figures.balance == 2485 * K
    previous = Grant.objects.get(tenant=lumen, reference="demo:lumen:previous-period")
    assert previous.remaining == 0
    assert Entry.objects.filter(grant=previous, kind="expire").count() == 1
    assert Consumption.objects.filter(tenant=lumen).count() > 250
    assert Consumption.objects.filter(tenant=lumen, refunded_at__isnull=False).count() == 1
    stats = statistics(tenant=lumen, days=30)
    assert stats.total > 500 * K
    assert {c["client_id"] for c in stats.top_clients} == {
        "helpdesk-eu",
        "helpdesk-us",
        "reviews-bot",
        "onboarding",
        "billing-desk",
    }
    check_invariants(lumen)
    before = Entry.objects.filter(tenant=lumen).count()
    call_command("seed_demo", stdout=None)
    assert Entry.objects.filter(tenant=lumen).count() == before

"""`seed_demo` puts Lumen on AI Plus with a month of consumption and an active extra pack, made
through the real services (issue 9: "Done when"): the pack bought with the saved card at the local
gateway through billing_portal's purchase path, so Invoices shows its invoice and the ledger's
reference is that invoice. Run twice, it makes nothing new."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billing_portal.gateway.factory import get_gateway
from billing_portal.models import ExtraPackPurchase, GatewayAttempt, Invoice
from credits.models import Consumption, Entry, Grant, Source
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
    # This period: 2,000 plan credits, 1,615 used today (over 80%: the balance runs low, so the pack
    # could be bought, C12); last period's leftovers expired at renewal.
    assert (ov.period_amount, ov.period_used) == (2000 * K, 1615 * K)
    assert ov.figures.balance == 885 * K
    # Both periods' credits came from paid AI Plus invoices: bought a month ago at the checkout,
    # renewed as the seed ran.
    plus = Invoice.objects.filter(tenant=lumen, total=9900).order_by("issued_at")
    assert [i.status for i in plus] == ["paid", "paid"]
    previous, current = (Grant.objects.get(reference=f"invoice:{i.gateway_invoice_id}") for i in plus)
    assert (previous.valid_from, previous.expires_at) == (plus[0].service_period_start, current.valid_from)
    assert previous.created_at == plus[0].issued_at  # granted as that invoice was paid
    assert not Grant.objects.filter(tenant=lumen, reference__startswith="demo:").exists()
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


def test_lumens_pack_came_through_the_purchase_path_and_a_second_seed_makes_nothing_new(settings, client_for):
    settings.DEBUG = True
    call_command("seed_demo", stdout=None)
    lumen = Tenant.objects.get(slug="lumen")

    [purchase] = ExtraPackPurchase.objects.filter(tenant=lumen)
    assert (purchase.status, purchase.pack.code, purchase.credits) == ("paid", "extra-500", 500 * K)
    [pack] = Grant.objects.filter(tenant=lumen, source=Source.EXTRA_PACK)
    assert pack.reference == f"invoice:{purchase.gateway_invoice_id}"
    at_gateway = get_gateway().retrieve_invoice(purchase.gateway_invoice_id)
    assert (at_gateway.status, at_gateway.amount_paid, at_gateway.metadata["extra_pack"]) == (
        "paid",
        purchase.amount,
        "extra-500",
    )
    mirrored = Invoice.objects.get(tenant=lumen, gateway_invoice_id=purchase.gateway_invoice_id)
    assert (mirrored.status, mirrored.amount_paid) == ("paid", purchase.amount)
    admin = lumen.memberships.get(user__email="admin@lumen.test").user
    invoices_page = client_for(admin).get("/t/lumen/invoices/").content.decode()
    assert mirrored.number in invoices_page

    def counts() -> tuple[int, ...]:
        return (
            ExtraPackPurchase.objects.count(),
            Grant.objects.filter(source=Source.EXTRA_PACK).count(),
            Invoice.objects.count(),
            # Tenants' gateway writes (the portal's configuration is brought up to date on every run).
            GatewayAttempt.objects.filter(tenant__isnull=False).count(),
            Entry.objects.count(),
            Tenant.objects.count(),
        )

    before = counts()
    call_command("seed_demo", stdout=None)
    assert counts() == before

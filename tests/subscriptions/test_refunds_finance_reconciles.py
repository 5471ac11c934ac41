"""What finance reads after a refund, through the real checkout, webhooks and pages (a finance
tester's repro on the demo tenant quill): two checkout tabs, Starter and Growth, both paid before
any webhook arrived; the second subscription is canceled and its invoice refunded in full. The
gateway keeps that invoice paid, as Stripe does since API 2025-03-31 (the refund is on its charge),
so the pages must say what was refunded and what stayed paid: $248.00 paid, $199.00 refunded, $49.00
net paid. Failed before the fix: the Totals said Paid $248.00 and nothing else, the CSV had no
refunded column, and the Overview's Last invoice read "$199.00 Paid" with no amount refunded."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_portal.models import Invoice
from plans import services as plan_services
from plans.factories import plan
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import Role
from tests.subscriptions.helpers import START, gateway, live
from tests.subscriptions.test_double_charge import open_checkout, session_of

pytestmark = pytest.mark.django_db


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def text_of(page: str, name: str) -> str:
    found = re.search(rf'data-testid="{name}"[^>]*>(.*?)</(?:td|span|p)>', page, re.S)
    assert found, f"no {name} on the page"
    return squash(found.group(1))


@pytest.fixture
def duplicate_refunded(org, capture, clock):
    clock.move_to(START + timedelta(days=40))
    with capture(execute=True):
        plan_services.trials_expire_due(now=timezone.now())
    starter = session_of(open_checkout(org, "agents-starter"))
    growth = session_of(open_checkout(org, "agents-growth"))
    with capture(execute=False) as deliveries:
        gateway().complete_checkout(starter)
        duplicate = gateway().complete_checkout(growth)
    clock.move_to(START + timedelta(days=40, minutes=1))  # the webhooks arrive a little later
    with capture(execute=True):
        for deliver in deliveries:
            deliver()
    assert live(org.tenant).plan.code == "agents-starter"
    refunded = Invoice.objects.get(gateway_subscription_id=duplicate.id)
    assert (refunded.status, refunded.amount_paid, refunded.amount_refunded) == (
        "paid",
        plan("agents-growth").price_amount,
        plan("agents-growth").price_amount,
    )
    return refunded


@pytest.fixture
def finance(org):
    return MembershipFactory(
        tenant=org.tenant, role=Role.FINANCE, user=UserFactory(email="books@initech.test")
    ).user


def test_finance_and_admins_see_the_refund_in_the_totals_the_rows_and_the_csv(
    org, finance, duplicate_refunded, client_for
):
    slug = org.tenant.slug
    kept = Invoice.objects.exclude(pk=duplicate_refunded.pk).get(tenant=org.tenant)
    for user in (finance, org.founder):
        client = client_for(user)
        listing = client.get(f"/t/{slug}/invoices/").content.decode()
        assert text_of(listing, "totals-paid") == "$248.00"
        assert text_of(listing, "totals-refunded") == "$199.00"
        assert text_of(listing, "totals-net-paid") == "$49.00"
        assert text_of(listing, "money-back") == "Refunded $199.00"  # only the duplicate's row has one
        assert listing.count('data-testid="money-back"') == 1

        response = client.get(f"/t/{slug}/invoices/export.csv")
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        columns = ("number", "status", "amount_paid", "amount_refunded", "amount_credited", "net_paid")
        assert [tuple(r[c] for c in columns) for r in rows] == [
            (duplicate_refunded.number, "paid", "199.00", "199.00", "0.00", "0.00"),
            (kept.number, "paid", "49.00", "0.00", "0.00", "49.00"),
        ]


def test_the_overview_says_the_last_invoice_was_refunded(org, finance, duplicate_refunded, client_for):
    for user in (finance, org.founder):
        page = client_for(user).get(f"/t/{org.tenant.slug}/").content.decode()
        last = re.search(r'data-testid="last-invoice">(.*?)</p>', page, re.S)
        assert last, "no last invoice on the tile"
        assert squash(last.group(1)) == (
            f"Last invoice {duplicate_refunded.number} · $199.00 Paid Refunded $199.00 · $0.00 net paid"
        )


def test_a_member_still_gets_no_invoices_and_no_invoice_tile(org, duplicate_refunded, client_for):
    client = client_for(org.member)
    assert client.get(f"/t/{org.tenant.slug}/invoices/").status_code == 403
    assert client.get(f"/t/{org.tenant.slug}/invoices/export.csv").status_code == 403
    page = client.get(f"/t/{org.tenant.slug}/").content.decode()
    assert 'data-testid="tile-next-invoice"' not in page
    assert "Refunded" not in page

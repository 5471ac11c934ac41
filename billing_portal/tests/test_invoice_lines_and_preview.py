"""Invoice lines in plan names, the service period an invoice pays for, and the preview of an
immediate plan change (issue 6, part 5; S18).

The local stand-in names lines as Stripe does, from the price's product ("1 \N{MULTIPLICATION SIGN} Growth (at
$199.00 / month)", "Unused time on Starter after …", "Remaining time on Growth after …"), and previews a change
with the very arithmetic it charges with: the preview and the charge agree to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.apps import apps as django_apps

from billing_portal import services
from billing_portal.gateway.base import CatalogPrice, GatewayError, GatewayInvoicePreview
from billing_portal.gateway.local import LocalGateway, _money
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import Invoice
from plans.factories import plan
from plans.models import Plan

from .conftest import checkout_open, live_sub, local_gateway

SECRET = "whsec_local_test_secret"
START = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)  # Jan 15 -> Feb 15: 31 days
CATALOG = {
    "price_basic": CatalogPrice(1000, "usd", "month", "Basic"),
    "price_pro": CatalogPrice(3000, "usd", "month", "Pro"),
    "price_pro_yearly": CatalogPrice(30000, "usd", "year", "Pro yearly"),
}


class Clocked:
    """The local gateway on a clock the test moves, delivering nowhere (the events are not under test)."""

    def __init__(self, catalog: Any = CATALOG.__getitem__) -> None:
        self.now = START
        self.gateway = LocalGateway(
            webhook_secret=SECRET, deliver=lambda *args: None, price_catalog=catalog, clock=lambda: self.now
        )

    def subscribe(self, price_id: str) -> str:
        customer_id = self.gateway.create_customer(
            email="admin@acme.test", name="Acme", metadata={}, idempotency_key=f"cus-{price_id}"
        )
        session = self.gateway.create_checkout_session(
            customer_id=customer_id,
            price_id=price_id,
            success_url="http://testserver/ok",
            cancel_url="http://testserver/back",
            client_reference_id="1",
            metadata={},
            idempotency_key=f"cs-{price_id}",
        )
        return self.gateway.complete_checkout(session.id).id

    def change(self, sub_id: str, price_id: str) -> Any:
        changed = self.gateway.change_subscription_price(
            subscription_id=sub_id, price_id=price_id, idempotency_key=f"change-{price_id}-{self.now}"
        )
        return changed


@pytest.fixture
def clocked(db) -> Clocked:
    return Clocked()


def lines_of(invoice) -> list[tuple[str, int]]:
    return [(line.description, line.amount) for line in invoice.lines]


# --- line descriptions -------------------------------------------------------------------------------


def test_the_first_invoice_and_the_checkout_name_the_plan_not_the_price_id(clocked):
    sub_id = clocked.subscribe("price_pro")
    sub = clocked.gateway.retrieve_subscription(sub_id)
    invoice = clocked.gateway.retrieve_invoice(sub.latest_invoice_id)
    assert lines_of(invoice) == [("1 \u00d7 Pro (at $30.00 / month)", 3000)]
    session = LocalGatewayObject.objects.get(object_type="checkout.session")
    assert session.data["line_items"]["data"][0]["description"] == "Pro"
    product = LocalGatewayObject.objects.get(object_type="product")
    assert session.data["line_items"]["data"][0]["price"]["product"] == product.object_id
    assert (product.data["object"], product.data["name"]) == ("product", "Pro")


def test_an_upgrade_names_both_plans_and_the_preview_is_the_charge_to_the_cent(clocked):
    sub_id = clocked.subscribe("price_basic")  # 10.00 / month
    clocked.now = START + timedelta(days=10, seconds=7)  # 21 days less 7 seconds of 31 days left

    preview = clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_pro")
    changed = clocked.change(sub_id, "price_pro")
    invoice = clocked.gateway.retrieve_invoice(changed.latest_invoice_id)

    total, left = 31 * 86400, 21 * 86400 - 7
    unused = (1000 * left * 2 + total) // (2 * total)  # rounded half up: no exact halves here
    assert unused == 677
    assert invoice.amount_due == preview.amount_due == preview.total == 1355
    assert preview.credit == 0
    assert lines_of(invoice) == [
        ("Unused time on Basic after 25 Jan 2027", -unused),
        ("Remaining time on Pro after 25 Jan 2027", 1355 + unused),
    ]
    assert [
        (line.description, line.amount, line.period_start, line.period_end) for line in preview.lines
    ] == [(line.description, line.amount, line.period_start, line.period_end) for line in invoice.lines]
    assert invoice.lines[0].period_start == datetime(2027, 1, 25, 12, 0, 7, tzinfo=UTC)
    assert invoice.lines[0].period_end == datetime(2027, 2, 15, 12, 0, tzinfo=UTC)


def test_a_downgrade_previews_a_credit_and_charges_nothing(clocked):
    """S18: the credit previewed is the credit given, to the customer's balance."""
    sub_id = clocked.subscribe("price_pro")
    clocked.now = START + timedelta(days=10)
    before = clocked.gateway.retrieve_subscription(sub_id).latest_invoice_id

    preview = clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_basic")
    changed = clocked.change(sub_id, "price_basic")

    assert preview == GatewayInvoicePreview(currency="usd", amount_due=0, total=-1355, lines=preview.lines)
    assert preview.credit == 1355
    assert [line.description for line in preview.lines] == [
        "Unused time on Pro after 25 Jan 2027",
        "Remaining time on Basic after 25 Jan 2027",
    ]
    assert sum(line.amount for line in preview.lines) == -1355
    # Invoiced now with the previewed negative total: nothing charged, the credit to the balance.
    credit = clocked.gateway.retrieve_invoice(changed.latest_invoice_id)
    assert changed.latest_invoice_id != before
    assert (credit.status, credit.total, credit.amount_paid, credit.ending_balance) == (
        "paid",
        -1355,
        0,
        -1355,
    )
    # The next preview applies that credit to what is due now.
    back_up = clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_pro")
    assert (back_up.total, back_up.amount_due, back_up.balance_applied) == (1355, 0, 1355)


def test_a_change_of_interval_previews_the_new_cycle_less_the_unused_time(clocked):
    sub_id = clocked.subscribe("price_pro")
    clocked.now = START + timedelta(days=10)

    preview = clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_pro_yearly")
    changed = clocked.change(sub_id, "price_pro_yearly")
    invoice = clocked.gateway.retrieve_invoice(changed.latest_invoice_id)

    assert invoice.amount_due == preview.amount_due == 30000 - 2032
    assert lines_of(invoice) == [
        ("Unused time on Pro after 25 Jan 2027", -2032),
        ("1 \u00d7 Pro yearly (at $300.00 / year)", 30000),
    ]
    assert [(line.description, line.amount) for line in preview.lines] == lines_of(invoice)


def test_a_preview_changes_nothing_and_emits_nothing(clocked):
    sent: list[bytes] = []
    clocked.gateway._deliver = lambda payload, header: sent.append(payload)
    sub_id = clocked.subscribe("price_basic")
    clocked.now = START + timedelta(days=3)
    sent.clear()
    # The new price's product is stored once it is looked up (as a price's product exists at Stripe);
    # nothing else is written, nothing is sent.
    rows = list(LocalGatewayObject.objects.exclude(object_type="product").values_list("object_id", "data"))
    clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_pro")
    assert (
        list(LocalGatewayObject.objects.exclude(object_type="product").values_list("object_id", "data"))
        == rows
    )
    assert sent == []


def test_preview_of_the_same_price_is_nothing_and_of_a_canceled_subscription_is_refused(clocked):
    sub_id = clocked.subscribe("price_pro")
    assert clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_pro") == (
        GatewayInvoicePreview(currency="usd", amount_due=0, total=0)
    )
    with pytest.raises(GatewayError, match="No such price"):
        clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_nope")
    clocked.gateway.cancel_subscription(subscription_id=sub_id, at_period_end=False, idempotency_key="end")
    with pytest.raises(GatewayError, match="canceled subscription"):
        clocked.gateway.preview_price_change(subscription_id=sub_id, price_id="price_basic")


def test_a_renamed_plan_renames_later_lines_and_a_three_tuple_catalog_names_by_price_id(db):
    names = dict(CATALOG)
    clocked = Clocked(lambda price_id: names[price_id])
    sub_id = clocked.subscribe("price_pro")
    clocked.now = START + timedelta(days=31)
    clocked.gateway.advance()
    renewal = clocked.gateway.retrieve_invoice(
        clocked.gateway.retrieve_subscription(sub_id).latest_invoice_id
    )
    assert lines_of(renewal) == [("1 \u00d7 Pro (at $30.00 / month)", 3000)]
    # Staff rename the plan: the product takes the new name the next time the price is looked up (as
    # a product updated at Stripe); lines already written keep their words.
    names["price_pro"] = CatalogPrice(3000, "usd", "month", "Pro (2027)")
    other = clocked.gateway.create_customer(email="b@b.test", name="B", metadata={}, idempotency_key="cus-b")
    clocked.gateway.create_checkout_session(
        customer_id=other,
        price_id="price_pro",
        success_url="http://testserver/ok",
        cancel_url="http://testserver/back",
        client_reference_id="2",
        metadata={},
        idempotency_key="cs-b",
    )
    clocked.now = START + timedelta(days=59)
    clocked.gateway.advance()
    later = clocked.gateway.retrieve_invoice(clocked.gateway.retrieve_subscription(sub_id).latest_invoice_id)
    assert lines_of(later) == [("1 \u00d7 Pro (2027) (at $30.00 / month)", 3000)]
    assert lines_of(clocked.gateway.retrieve_invoice(renewal.id)) == [
        ("1 \u00d7 Pro (at $30.00 / month)", 3000)
    ]

    bare = Clocked({"price_x": (1500, "eur", "month")}.__getitem__)
    sub_id = bare.subscribe("price_x")
    first = bare.gateway.retrieve_invoice(bare.gateway.retrieve_subscription(sub_id).latest_invoice_id)
    assert lines_of(first) == [("1 \u00d7 price_x (at \u20ac15.00 / month)", 1500)]


def test_amounts_on_lines_are_written_as_stripe_writes_them():
    assert _money(19900, "usd") == "$199.00"
    assert _money(123456789, "usd") == "$1,234,567.89"
    assert _money(8000, "jpy") == "\u00a58,000"
    assert _money(1234567, "kwd") == "1,234.567 KWD"
    assert _money(1999, "chf") == "19.99 CHF"
    assert _money(-250, "eur") == "-\u20ac2.50"


# --- through our services: the catalog's names, the mirror's service period ----------------------------


@pytest.mark.django_db
def test_the_catalog_prices_name_the_plan():
    assert services.price_of("price_local_agents_growth") == CatalogPrice(19900, "usd", "month", "Growth")
    with pytest.raises(GatewayError, match="No such price"):
        services.price_of("price_unknown")


@pytest.mark.django_db
def test_a_first_invoice_is_mirrored_with_the_month_its_line_covers(trial_tenant, admin, live):
    """Stripe's first invoice of a subscription has period_start == period_end (one instant); the
    pages show the service period its line covers."""
    with time_machine.travel(datetime(2026, 11, 29, 10, 0, tzinfo=UTC), tick=False):
        session_id = checkout_open(trial_tenant, admin, "agents-growth")
        with live():
            local_gateway().complete_checkout(session_id)
    invoice = Invoice.objects.get(tenant=trial_tenant)
    nov29, dec29 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC), datetime(2026, 12, 29, 10, 0, tzinfo=UTC)
    assert (invoice.period_start, invoice.period_end) == (nov29, nov29)
    assert (invoice.service_period_start, invoice.service_period_end) == (nov29, dec29)
    assert list(invoice.lines.values_list("description", "amount")) == [
        ("1 \u00d7 Growth (at $199.00 / month)", 19900)
    ]


@pytest.mark.django_db
def test_preview_and_immediate_change_agree_to_the_cent_through_the_services(
    subscribed, trial_tenant, admin, live
):
    """S18 Immediately: what the dialog announces is what the change invoices."""
    later = subscribed.current_period_start + timedelta(days=9, hours=5, seconds=13)
    with time_machine.travel(later, tick=False):
        preview = services.plan_change_preview(tenant=trial_tenant, to_plan=plan("agents-scale"), actor=admin)
        with live():
            services.plan_change(
                tenant=trial_tenant,
                to_plan=plan("agents-scale"),
                when="immediately",
                custom_date=None,
                actor=admin,
            )
    invoice = Invoice.objects.filter(tenant=trial_tenant, billing_reason="subscription_update").get()
    assert preview.amount_due == invoice.amount_due == invoice.total > 0
    assert [line.description for line in preview.lines] == list(
        invoice.lines.values_list("description", flat=True)
    )
    day = f"{later.day:02d} {later:%b %Y}"
    assert list(invoice.lines.values_list("description", flat=True)) == [
        f"Unused time on Growth after {day}",
        f"Remaining time on Scale after {day}",
    ]
    assert (invoice.service_period_start, invoice.service_period_end) == (
        later.replace(microsecond=0),
        live_sub(trial_tenant).current_period_end,
    )


@pytest.mark.django_db
def test_preview_is_refused_as_the_change_would_be(trial_tenant, admin):
    """The trial has no paid subscription: the preview says what the change would say."""
    with pytest.raises(services.BusinessError, match=r"Subscribe to a paid plan first\."):
        services.plan_change_preview(tenant=trial_tenant, to_plan=plan("agents-scale"), actor=admin)


@pytest.mark.django_db
def test_the_migration_fills_the_service_period_of_invoices_mirrored_before(tenant):
    from importlib import import_module

    from billing_portal.factories import InvoiceFactory, InvoiceLineFactory

    migration = import_module("billing_portal.migrations.0003_invoice_service_period")
    jan1, feb1, mar1 = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3))
    with_lines = InvoiceFactory(tenant=tenant, period_start=feb1, period_end=feb1)
    InvoiceLineFactory(invoice=with_lines, period_start=feb1, period_end=mar1)
    InvoiceLineFactory(invoice=with_lines, period_start=jan1, period_end=feb1)
    without = InvoiceFactory(tenant=tenant)
    Invoice.objects.update(service_period_start=None, service_period_end=None)

    migration.fill_service_periods(django_apps, None)

    with_lines.refresh_from_db()
    without.refresh_from_db()
    assert (with_lines.service_period_start, with_lines.service_period_end) == (jan1, mar1)
    assert (without.service_period_start, without.service_period_end) == (None, None)
    assert Plan.objects.exists()  # the catalog is untouched


# --- the pages show the service period ------------------------------------------------------------------


@pytest.mark.django_db
def test_list_detail_and_pdf_show_the_period_the_lines_cover(tenant, finance, client_for):
    from billing_portal.factories import InvoiceFactory, InvoiceLineFactory

    nov29, dec29 = datetime(2026, 11, 29, 10, tzinfo=UTC), datetime(2026, 12, 29, 10, tzinfo=UTC)
    invoice = InvoiceFactory(
        tenant=tenant,
        number="ACME-0100",
        issued_at=nov29,
        period_start=nov29,  # the gateway's own period: one instant
        period_end=nov29,
        service_period_start=nov29,
        service_period_end=dec29,
    )
    InvoiceLineFactory(
        invoice=invoice,
        description="1 \u00d7 Growth (at $199.00 / month)",
        period_start=nov29,
        period_end=dec29,
    )
    client = client_for(finance)

    listing = client.get("/t/acme/invoices/").content.decode()
    assert '<th class="hide-sm">Service period</th>' in listing
    assert 'data-testid="service-period">29 Nov \u2013 29 Dec 2026</td>' in listing
    assert "29 Nov \u2013 29 Nov" not in listing

    detail = client.get(f"/t/acme/invoices/{invoice.pk}/").content.decode()
    assert (
        '<tr><td class="muted">Service period</td><td data-testid="service-period">29 Nov \u2013 29 Dec 2026</td></tr>'
        in detail
    )
    assert "1 \u00d7 Growth (at $199.00 / month)" in detail

    pdf = client.get(f"/t/acme/invoices/{invoice.pk}/pdf/").content
    assert b"(Service period)" in pdf
    assert b"29 Dec 2026" in pdf


def test_periods_read_as_the_pages_write_them():
    from billing_portal.templatetags.periods import format_period

    def at(*parts: int) -> datetime:
        return datetime(*parts, 12, tzinfo=UTC)

    assert format_period(at(2026, 11, 29), at(2026, 12, 29)) == "29 Nov \u2013 29 Dec 2026"
    assert format_period(at(2026, 12, 29), at(2027, 1, 29)) == "29 Dec 2026 \u2013 29 Jan 2027"
    assert format_period(at(2026, 11, 29), at(2026, 11, 29)) == "29 Nov 2026"
    assert format_period(None, None) == "\u2014"
    assert format_period(at(2026, 11, 29), None) == "29 Nov 2026"

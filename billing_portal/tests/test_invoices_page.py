"""The Invoices pages: finance and admins read the tenant's invoices; nobody changes anything."""

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_portal.factories import InvoiceFactory, InvoiceLineFactory
from billing_portal.invoice_pdf import invoice_pdf
from billing_portal.models import Invoice
from billing_portal.selectors import CurrencyTotals, invoice_totals, invoices_for
from tenants.factories import UserFactory
from tests.stacked import stacked_labels

pytestmark = pytest.mark.django_db

Status = Invoice.Status


def at(day: str, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def url(name: str, tenant, **kwargs) -> str:
    return reverse(name, kwargs={"slug": tenant.slug, **kwargs})


def numbers(response) -> list[str]:
    return [invoice.number for invoice in response.context["page"].object_list]


@pytest.fixture
def invoices(tenant):
    """Four invoices of Acme in two currencies, and one of Globex that must never show."""
    return {
        "jan": InvoiceFactory(
            tenant=tenant,
            number="ACME-0001",
            status=Status.PAID,
            subtotal=1000,
            tax=200,
            issued_at=at("2026-01-10"),
        ),
        "feb": InvoiceFactory(
            tenant=tenant, number="ACME-0002", status=Status.OPEN, subtotal=2500, issued_at=at("2026-02-15")
        ),
        "mar": InvoiceFactory(
            tenant=tenant,
            number="ACME-0003",
            status=Status.PAID,
            currency="eur",
            subtotal=1250,
            issued_at=at("2026-03-01", 23, 30),  # late on the last day of the range: still inside
        ),
        "apr": InvoiceFactory(
            tenant=tenant,
            number="ACME-0004",
            status=Status.VOID,
            subtotal=700,
            issued_at=at("2026-04-02", 0, 0),
        ),
    }


@pytest.fixture
def foreign_invoice(other_tenant):
    return InvoiceFactory(
        tenant=other_tenant, number="GLOBEX-0001", subtotal=99900, issued_at=at("2026-02-20")
    )


# --- access ------------------------------------------------------------------------------------


def _all_urls(tenant, invoice):
    return [
        url("invoices", tenant),
        url("invoice_csv", tenant),
        url("invoice_detail", tenant, invoice_id=invoice.pk),
        url("invoice_pdf", tenant, invoice_id=invoice.pk),
    ]


@pytest.mark.parametrize("persona", ["finance", "admin"])
def test_finance_and_admins_see_the_invoice_list(
    persona, request, tenant, invoices, foreign_invoice, client_for
):
    client = client_for(request.getfixturevalue(persona))
    response = client.get(url("invoices", tenant))
    assert response.status_code == 200
    assert numbers(response) == ["ACME-0004", "ACME-0003", "ACME-0002", "ACME-0001"]
    body = response.content.decode()
    assert "GLOBEX-0001" not in body
    assert 'aria-current="page">Invoices</a>' in body  # the navigation item lights up


def test_invoice_rows_read_as_labelled_cards_on_a_phone(tenant, finance, invoices, client_for):
    """At phone width each invoice stacks as a card (the Manage Licenses pattern): every cell after
    the number names its column, so Issued and Total are read without scrolling sideways (D05)."""
    page = client_for(finance).get(url("invoices", tenant)).content.decode()
    assert (
        stacked_labels(page, "invoice-row")
        == [[None, "Status", "Issued", "Service period", "Paid", "Total", "Remaining", "PDF"]] * 4
    )


def test_member_is_refused_every_invoice_page(tenant, member, invoices, client_for):
    client = client_for(member)
    for page in _all_urls(tenant, invoices["jan"]):
        assert client.get(page).status_code == 403, page


def test_outsider_gets_404_on_every_invoice_page(tenant, other_tenant, outsider, invoices, client_for):
    client = client_for(outsider)
    for page in _all_urls(tenant, invoices["jan"]):
        assert client.get(page).status_code == 404, page
    # Acme's invoice id under the outsider's own tenant is not found either.
    for page in _all_urls(other_tenant, invoices["jan"])[2:]:
        assert client.get(page).status_code == 404, page


def test_nothing_can_be_posted(tenant, finance, admin, invoices, client_for):
    for user in (finance, admin):
        client = client_for(user)
        for page in _all_urls(tenant, invoices["feb"]):
            assert client.post(page).status_code == 405, page
            assert client.post(page, HTTP_HX_REQUEST="true").status_code == 405, page
    assert Invoice.objects.get(pk=invoices["feb"].pk).status == Status.OPEN


# --- filters and totals --------------------------------------------------------------------------


def test_status_filter_returns_exactly_the_matching_invoices(tenant, finance, invoices, client_for):
    client = client_for(finance)
    assert numbers(client.get(url("invoices", tenant), {"status": "paid"})) == ["ACME-0003", "ACME-0001"]
    assert numbers(client.get(url("invoices", tenant), {"status": "open"})) == ["ACME-0002"]
    assert numbers(client.get(url("invoices", tenant), {"status": "uncollectible"})) == []


def test_date_range_includes_both_end_days(tenant, finance, invoices, client_for):
    client = client_for(finance)
    response = client.get(url("invoices", tenant), {"since": "2026-02-15", "until": "2026-03-01"})
    assert numbers(response) == ["ACME-0003", "ACME-0002"]
    assert numbers(client.get(url("invoices", tenant), {"since": "2026-03-02"})) == ["ACME-0004"]
    assert numbers(client.get(url("invoices", tenant), {"until": "2026-01-10"})) == ["ACME-0001"]


def test_status_and_dates_combine(tenant, finance, invoices, client_for):
    response = client_for(finance).get(
        url("invoices", tenant), {"status": "paid", "since": "2026-02-01", "until": "2026-04-30"}
    )
    assert numbers(response) == ["ACME-0003"]
    assert response.context["totals"] == [CurrencyTotals("eur", 1, 1250, 1250, 0)]


def test_reversed_date_range_shows_an_error_and_keeps_the_valid_filter(tenant, finance, invoices, client_for):
    response = client_for(finance).get(
        url("invoices", tenant), {"since": "2026-03-01", "until": "2026-02-01"}
    )
    assert response.status_code == 200
    assert "The end date is before the start date." in response.content.decode()
    assert numbers(response) == ["ACME-0004", "ACME-0003"]


def test_no_matches_shows_the_empty_state(tenant, finance, invoices, client_for):
    response = client_for(finance).get(url("invoices", tenant), {"status": "draft"})
    body = response.content.decode()
    assert "No invoices match these filters." in body
    assert 'data-testid="invoice-totals"' not in body


def test_tenant_without_invoices_shows_the_empty_state(tenant, finance, client_for):
    body = client_for(finance).get(url("invoices", tenant)).content.decode()
    assert "No invoices yet." in body
    assert 'data-testid="csv-export"' not in body


def test_totals_per_currency_are_exact(tenant, invoices, foreign_invoice):
    InvoiceFactory(
        tenant=tenant, status=Status.OPEN, subtotal=3000, amount_paid=1000, issued_at=at("2026-02-20")
    )
    assert invoice_totals(invoices_for(tenant=tenant)) == [
        CurrencyTotals(currency="eur", count=1, total=1250, amount_paid=1250, amount_remaining=0),
        # 1200 (paid) + 2500 (open) + 700 (void) + 3000 (open, 1000 paid)
        CurrencyTotals(currency="usd", count=4, total=7400, amount_paid=2200, amount_remaining=4500),
    ]
    # Sums arrive as ints (PostgreSQL would hand back Decimal for a bigint sum without the cast).
    usd = invoice_totals(invoices_for(tenant=tenant, status=Status.OPEN))[0]
    assert [type(v) for v in (usd.count, usd.total, usd.amount_paid, usd.amount_remaining)] == [int] * 4


def test_totals_card_shows_formatted_amounts(tenant, finance, invoices, client_for):
    response = client_for(finance).get(url("invoices", tenant))
    assert response.context["totals"] == [
        CurrencyTotals("eur", 1, 1250, 1250, 0),
        CurrencyTotals("usd", 3, 4400, 1200, 2500),
    ]
    body = response.content.decode()
    assert "€12.50" in body
    assert "$44.00" in body
    assert "$25.00" in body


def test_htmx_request_gets_only_the_table_partial(tenant, finance, invoices, client_for):
    response = client_for(finance).get(url("invoices", tenant), {"status": "open"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="invoices"')
    assert "<html" not in body
    assert "ACME-0002" in body
    assert "ACME-0001" not in body
    # The export link inside the swapped part keeps the filter.
    assert f'href="{url("invoice_csv", tenant)}?status=open"' in body


def test_list_is_paginated_by_25(tenant, finance, client_for):
    for day in range(1, 28):
        InvoiceFactory(tenant=tenant, number=f"P-{day:02d}", issued_at=at(f"2026-05-{day:02d}"))
    client = client_for(finance)
    first = client.get(url("invoices", tenant))
    assert len(numbers(first)) == 25
    assert numbers(first)[0] == "P-27"
    second = client.get(url("invoices", tenant), {"page": 2})
    assert numbers(second) == ["P-02", "P-01"]
    assert "Page 2 of 2" in second.content.decode()


def test_list_query_count_does_not_grow_with_invoices(tenant, finance, client_for):
    client = client_for(finance)

    def queries_for_list() -> int:
        client.get(url("invoices", tenant))  # warm the session
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url("invoices", tenant)).status_code == 200
        return len(captured)

    InvoiceFactory.create_batch(3, tenant=tenant)
    with_three = queries_for_list()
    InvoiceFactory.create_batch(27, tenant=tenant, currency="eur")
    assert queries_for_list() == with_three


def test_detail_query_count_does_not_grow_with_lines(tenant, finance, client_for):
    client = client_for(finance)
    small = InvoiceFactory(tenant=tenant)
    InvoiceLineFactory.create_batch(2, invoice=small)
    large = InvoiceFactory(tenant=tenant)
    InvoiceLineFactory.create_batch(20, invoice=large)

    def queries_for(invoice) -> int:
        client.get(url("invoice_detail", tenant, invoice_id=invoice.pk))
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url("invoice_detail", tenant, invoice_id=invoice.pk)).status_code == 200
        return len(captured)

    assert queries_for(small) == queries_for(large)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_export_is_exact_and_keeps_the_filters(tenant, finance, invoices, foreign_invoice, client_for):
    InvoiceFactory(
        tenant=tenant,
        number="ACME-0005",
        status=Status.OPEN,
        subtotal=100005,
        tax=20001,
        amount_paid=5,
        issued_at=at("2026-02-28"),
        # A subscription's first invoice at Stripe: its own period is one instant, its lines a month.
        period_start=at("2026-02-28"),
        period_end=at("2026-02-28"),
        service_period_start=at("2026-02-28"),
        service_period_end=at("2026-03-28"),
    )
    with time_machine.travel(at("2026-06-30"), tick=False):
        response = client_for(finance).get(url("invoice_csv", tenant), {"until": "2026-03-01"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="invoices-acme-2026-06-30.csv"'
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "number,status,issued_date,paid_date,service_period_start,service_period_end,gateway_period_start,"
        "gateway_period_end,currency,subtotal,tax,total,amount_paid,amount_remaining,credit_applied,credit_added,"
        "amount_refunded,amount_credited,net_paid",
        "ACME-0003,paid,2026-03-01,2026-03-01,2026-03-01,2026-03-31,2026-03-01,2026-03-31,EUR,12.50,0.00,12.50,12.50,0.00,0.00,0.00,0.00,0.00,12.50",
        "ACME-0005,open,2026-02-28,,2026-02-28,2026-03-28,2026-02-28,2026-02-28,USD,1000.05,200.01,1200.06,0.05,1200.01,0.00,0.00,0.00,0.00,0.05",
        "ACME-0002,open,2026-02-15,,2026-02-15,2026-03-17,2026-02-15,2026-03-17,USD,25.00,0.00,25.00,0.00,25.00,0.00,0.00,0.00,0.00,0.00",
        "ACME-0001,paid,2026-01-10,2026-01-10,2026-01-10,2026-02-09,2026-01-10,2026-02-09,USD,10.00,2.00,12.00,12.00,0.00,0.00,0.00,0.00,0.00,12.00",
    ]


def test_list_links_to_the_csv_with_the_same_filters(tenant, finance, invoices, client_for):
    body = (
        client_for(finance)
        .get(url("invoices", tenant), {"status": "paid", "since": "2026-01-01"})
        .content.decode()
    )
    assert f'href="{url("invoice_csv", tenant)}?status=paid&amp;since=2026-01-01"' in body


def test_csv_by_status(tenant, finance, invoices, client_for):
    response = client_for(finance).get(url("invoice_csv", tenant), {"status": "void"})
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[1:] == [
        "ACME-0004,void,2026-04-02,,2026-04-02,2026-05-02,2026-04-02,2026-05-02,USD,7.00,0.00,7.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00"
    ]


# --- detail --------------------------------------------------------------------------------------


def test_detail_shows_lines_totals_and_links(tenant, finance, client_for):
    invoice = InvoiceFactory(
        tenant=tenant,
        number="ACME-0042",
        status=Status.OPEN,
        subtotal=4500,
        tax=900,
        hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_42",
    )
    InvoiceLineFactory(invoice=invoice, position=1, description="Pro plan · monthly", amount=4000)
    InvoiceLineFactory(
        invoice=invoice, position=2, description="Extra pack of 100 sessions", quantity=2, amount=500
    )
    response = client_for(finance).get(url("invoice_detail", tenant, invoice_id=invoice.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert [line.description for line in response.context["invoice"].lines.all()] == [
        "Pro plan · monthly",
        "Extra pack of 100 sessions",
    ]
    assert body.count('data-testid="invoice-line"') == 2
    assert "Pro plan · monthly" in body
    assert "Extra pack of 100 sessions" in body
    for amount in ("$40.00", "$5.00", "$45.00", "$9.00", "$54.00"):
        assert amount in body
    assert '<span class="badge warning" data-testid="status">Open</span>' in body
    assert 'href="https://invoice.stripe.com/i/acct_1/test_42"' in body
    assert f'href="{url("invoice_pdf", tenant, invoice_id=invoice.pk)}"' in body


def test_detail_without_hosted_url_has_no_hosted_link(tenant, finance, client_for):
    invoice = InvoiceFactory(tenant=tenant)
    body = client_for(finance).get(url("invoice_detail", tenant, invoice_id=invoice.pk)).content.decode()
    assert "Hosted invoice" not in body
    assert "Download PDF" in body
    assert "This invoice has no line items." in body


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_redirects_to_the_gateways_pdf_when_there_is_one(tenant, finance, client_for):
    invoice = InvoiceFactory(tenant=tenant, pdf_url="https://pay.stripe.com/invoice/acct_1/test_1/pdf")
    response = client_for(finance).get(url("invoice_pdf", tenant, invoice_id=invoice.pk))
    assert response.status_code == 302
    assert response["Location"] == "https://pay.stripe.com/invoice/acct_1/test_1/pdf"


def test_pdf_is_rendered_by_us_without_a_gateway_pdf(tenant, finance, client_for):
    invoice = InvoiceFactory(
        tenant=tenant, number="ACME-0077", status=Status.PAID, currency="eur", subtotal=4200
    )
    InvoiceLineFactory(invoice=invoice, position=1, description="Pro plan", amount=4200)
    response = client_for(finance).get(url("invoice_pdf", tenant, invoice_id=invoice.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="ACME-0077.pdf"'
    assert response.content.startswith(b"%PDF")
    assert b"ACME-0077" in response.content
    assert b"Acme Corp" in response.content
    assert b"Pro plan" in response.content
    assert b"(PAID)" in response.content


def test_pdf_of_an_open_invoice_has_no_paid_stamp(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="ACME-0078", status=Status.OPEN)
    pdf = invoice_pdf(invoice=invoice)
    assert pdf.startswith(b"%PDF")
    assert b"ACME-0078" in pdf
    assert b"(PAID)" not in pdf


def test_pdf_of_a_refunded_invoice_says_so(tenant):
    """The PDF we render says what the Invoices list says of a refund and a credit note."""
    plain = invoice_pdf(invoice=InvoiceFactory(tenant=tenant, number="ACME-0080", status=Status.PAID))
    assert b"(Refunded)" not in plain
    refunded = InvoiceFactory(
        tenant=tenant,
        number="ACME-0081",
        status=Status.PAID,
        subtotal=19900,
        amount_paid=19900,
        amount_refunded=19900,
        amount_credited=1500,
    )
    pdf = invoice_pdf(invoice=refunded)
    assert b"(Refunded)" in pdf
    assert b"(Credit notes)" in pdf
    assert b"($199.00)" in pdf


def test_pdf_of_an_invoice_with_many_lines_spans_pages(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="ACME-0079")
    InvoiceLineFactory.create_batch(80, invoice=invoice)
    pdf = invoice_pdf(invoice=invoice)
    assert b"(Page 2)" in pdf


# --- platform admin ------------------------------------------------------------------------------


def test_platform_staff_see_every_tenants_invoices_read_only(tenant, other_tenant, client_for):
    staff = UserFactory(email="ops@allowance.test", is_staff=True, is_superuser=True)
    acme = InvoiceFactory(tenant=tenant, number="ACME-0100", gateway_invoice_id="in_acme_0100")
    InvoiceLineFactory(invoice=acme, description="Pro plan")
    InvoiceFactory(tenant=other_tenant, number="GLOBEX-0100", amount_paid=4900, amount_refunded=4900)
    client = client_for(staff)

    listing = client.get("/admin/billing_portal/invoice/").content.decode()
    assert "ACME-0100" in listing
    assert "GLOBEX-0100" in listing
    assert '<th scope="col" class="sortable column-refunded_display">' in listing
    assert re.search(r"GLOBEX-0100.*?<td class=\"field-refunded_display\">\$49\.00</td>", listing, re.S)
    found = client.get("/admin/billing_portal/invoice/", {"q": "in_acme_0100"}).content.decode()
    assert "ACME-0100" in found
    assert "GLOBEX-0100" not in found

    change = client.get(f"/admin/billing_portal/invoice/{acme.pk}/change/")
    assert change.status_code == 200
    assert "Pro plan" in change.content.decode()
    assert (
        client.post(f"/admin/billing_portal/invoice/{acme.pk}/change/", {"status": "void"}).status_code == 403
    )
    assert client.get("/admin/billing_portal/invoice/add/").status_code == 403
    for model in ("webhookevent", "billingcustomer", "checkoutsession"):
        assert client.get(f"/admin/billing_portal/{model}/").status_code == 200, model
        assert client.get(f"/admin/billing_portal/{model}/add/").status_code == 403, model


def test_a_downgrade_credit_and_its_use_show_on_the_list_the_detail_and_the_csv(tenant, finance, client_for):
    """S18: a downgrade's invoice (negative total, nothing paid) says what went to the credit
    balance, and the next invoice what it took from it, as the gateway's starting and ending
    balances have it."""
    down = InvoiceFactory(
        tenant=tenant, number="ACME-0010", status="paid", currency="usd", subtotal=-2997, total=-2997,
        amount_due=0, amount_paid=0, amount_remaining=0, starting_balance=0, ending_balance=-2997,
    )  # fmt: skip
    InvoiceFactory(
        tenant=tenant, number="ACME-0011", status="paid", currency="usd", subtotal=4900, total=4900,
        amount_due=1903, amount_paid=1903, amount_remaining=0, starting_balance=-2997, ending_balance=0,
    )  # fmt: skip
    client = client_for(finance)
    listing = client.get(url("invoices", tenant)).content.decode()
    assert "Credit $29.97 to balance" in listing
    assert "$29.97 paid from credit" in listing
    # Totals: what went to the credit balance beside the totals, so Total + To credit balance
    # reconciles with what was charged (an outsider probe read "Total $169.15 · Paid $258.92").
    assert 'data-testid="totals-credited">$29.97<' in listing
    detail = client.get(url("invoice_detail", tenant, invoice_id=down.pk)).content.decode()
    assert 'data-testid="credit-added">$29.97<' in detail
    assert b"(Added to your credit balance)" in invoice_pdf(invoice=down)
    used = Invoice.objects.get(number="ACME-0011")
    assert b"(Paid from your credit balance)" in invoice_pdf(invoice=used)
    rows = csv_rows(client.get(url("invoice_csv", tenant)))
    columns = ("total", "amount_paid", "amount_remaining", "credit_applied", "credit_added")
    assert [[row[c] for c in columns] for row in rows if row["number"] in ("ACME-0010", "ACME-0011")] == [
        ["49.00", "19.03", "0.00", "29.97", "0.00"],
        ["-29.97", "0.00", "0.00", "0.00", "29.97"],
    ]


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- money back after payment: refunds and credit notes -------------------------------------------


@pytest.fixture
def refunded(tenant):
    """The quill repro (a finance tester): two subscriptions paid at once, the duplicate canceled and
    refunded in full; its invoice stays paid, as at Stripe since API 2025-03-31 (the refund is on the
    charge). Beside them: one partly refunded, one with a $50.00 credit note credited to the balance
    and then refunded in full (the credit note's amount is not taken off: see Invoice.net_paid), and
    one in euros."""
    return {
        "kept": InvoiceFactory(tenant=tenant, number="ACME-0001", subtotal=4900, issued_at=at("2026-04-01", 9)),
        "duplicate": InvoiceFactory(
            tenant=tenant, number="ACME-0002", subtotal=19900, amount_refunded=19900, issued_at=at("2026-04-01", 10)
        ),
        "partly": InvoiceFactory(
            tenant=tenant, number="ACME-0003", subtotal=9900, amount_refunded=2501, issued_at=at("2026-04-02")
        ),
        "credited": InvoiceFactory(
            tenant=tenant, number="ACME-0004", subtotal=19900, amount_refunded=19900, amount_credited=5000,
            issued_at=at("2026-04-03"),
        ),
        "euro": InvoiceFactory(
            tenant=tenant, number="ACME-0005", currency="eur", subtotal=1250, amount_credited=300,
            issued_at=at("2026-04-04"),
        ),
    }  # fmt: skip


def test_totals_add_what_was_refunded_and_what_stayed_paid(tenant, refunded, foreign_invoice):
    """Failed before the fix: the totals had no refunded figure (CurrencyTotals had no such field)."""
    assert invoice_totals(invoices_for(tenant=tenant)) == [
        CurrencyTotals("eur", 1, 1250, 1250, 0, amount_refunded=0, amount_credited=300),
        CurrencyTotals("usd", 4, 54600, 54600, 0, amount_refunded=42301, amount_credited=5000),
    ]
    usd = invoice_totals(invoices_for(tenant=tenant))[1]
    assert usd.net_paid == 12299  # 4900 + 0 + (9900 - 2501) + 0
    assert [type(v) for v in (usd.amount_refunded, usd.amount_credited, usd.net_paid)] == [int] * 3


def test_the_totals_card_shows_refunded_and_net_paid_to_finance_and_admins(
    tenant, finance, admin, client_for
):
    """The quill repro: Paid $248.00, Refunded $199.00, Net paid $49.00. Failed before the fix: the
    card said "Paid $248.00" and nothing else."""
    InvoiceFactory(tenant=tenant, number="ACME-0001", subtotal=4900, issued_at=at("2026-04-01", 9))
    InvoiceFactory(
        tenant=tenant,
        number="ACME-0002",
        subtotal=19900,
        amount_refunded=19900,
        issued_at=at("2026-04-01", 10),
    )
    for user in (finance, admin):
        body = client_for(user).get(url("invoices", tenant)).content.decode()
        assert 'data-testid="totals-paid">$248.00<' in body
        assert 'data-testid="totals-refunded">$199.00<' in body
        assert 'data-testid="totals-net-paid">$49.00<' in body
        assert 'data-testid="totals-credit-notes">$0.00<' in body
        assert "Net paid: paid less refunded." in body


def test_list_rows_badge_each_refund_and_credit_with_its_amount(tenant, finance, refunded, client_for):
    response = client_for(finance).get(url("invoices", tenant))
    body = response.content.decode()
    row = r'<a href="/t/acme/invoices/\d+/">([^<]+)</a>.*?(?:data-testid="money-back">([^<]*)<|</tr>)'
    badges = dict(re.findall(row, body, re.S))
    assert (
        badges
        == {
            "ACME-0005": "Credited €3.00",
            "ACME-0004": "Refunded $199.00",  # refunded is what the badge tells; the note's $50.00 is on the detail
            "ACME-0003": "Partially refunded $25.01",
            "ACME-0002": "Refunded $199.00",
            "ACME-0001": "",
        }
    )
    # The gateway's status stays paid: the badge says so, beside the money back.
    assert body.count('data-testid="status">Paid<') == 5


def test_csv_has_the_refunded_credited_and_net_paid_columns_exact(
    tenant, finance, admin, refunded, client_for
):
    """Failed before the fix: no such columns, and the refunded invoice read as paid 199.00."""
    for user in (finance, admin):
        rows = csv_rows(client_for(user).get(url("invoice_csv", tenant)))
        columns = ("number", "currency", "amount_paid", "amount_refunded", "amount_credited", "net_paid")
        assert [tuple(r[c] for c in columns) for r in rows] == [
            ("ACME-0005", "EUR", "12.50", "0.00", "3.00", "12.50"),
            ("ACME-0004", "USD", "199.00", "199.00", "50.00", "0.00"),
            ("ACME-0003", "USD", "99.00", "25.01", "0.00", "73.99"),
            ("ACME-0002", "USD", "199.00", "199.00", "0.00", "0.00"),
            ("ACME-0001", "USD", "49.00", "0.00", "0.00", "49.00"),
        ]


def test_a_zero_decimal_currency_exports_refunds_in_whole_units(tenant, finance, client_for):
    InvoiceFactory(tenant=tenant, number="ACME-0009", currency="jpy", subtotal=1200, amount_refunded=200)
    (row,) = csv_rows(client_for(finance).get(url("invoice_csv", tenant)))
    assert (row["amount_paid"], row["amount_refunded"], row["net_paid"]) == ("1200", "200", "1000")


def test_member_is_still_refused_the_list_and_the_csv_with_refunds(tenant, member, refunded, client_for):
    client = client_for(member)
    assert client.get(url("invoices", tenant)).status_code == 403
    assert client.get(url("invoice_csv", tenant)).status_code == 403

"""The Invoices page and its CSV with dates at the ends of the calendar (issue 6: `?until=9999-12-31`
was an OverflowError, a 500, on both). A date the calendar holds filters exactly; one it does not
is the field's error on the page and filters nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from billing_portal.factories import InvoiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoices(tenant):
    return [
        InvoiceFactory(tenant=tenant, number="ACME-0001", issued_at=datetime(2026, 1, 10, 12, tzinfo=UTC)),
        # The last microsecond of 1 March, and the first of 2 March: `until=2026-03-01` splits them.
        InvoiceFactory(
            tenant=tenant, number="ACME-0002", issued_at=datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
        ),
        InvoiceFactory(tenant=tenant, number="ACME-0003", issued_at=datetime(2026, 3, 2, tzinfo=UTC)),
    ]


def _page(client, tenant, **query) -> tuple[int, list[str], dict]:
    response = client.get(reverse("invoices", kwargs={"slug": tenant.slug}), query)
    numbers = [i.number for i in response.context["page"].object_list] if response.status_code == 200 else []
    errors = response.context["form"].errors if response.status_code == 200 else {}
    return response.status_code, numbers, errors


def _csv(client, tenant, **query) -> tuple[int, list[str]]:
    response = client.get(reverse("invoice_csv", kwargs={"slug": tenant.slug}), query)
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    return response.status_code, [row[0] for row in rows[1:]]


ALL = ["ACME-0003", "ACME-0002", "ACME-0001"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"until": "9999-12-31"}, ALL),
        ({"since": "0001-01-01"}, ALL),
        ({"since": "0001-01-01", "until": "9999-12-31"}, ALL),
        ({"since": "9999-12-31"}, []),
        ({"until": "0001-01-01"}, []),
        ({"since": "9999-12-31", "until": "9999-12-31"}, []),
        ({"until": "2026-03-01"}, ["ACME-0002", "ACME-0001"]),  # the whole last day, to the microsecond
        ({"since": "2026-03-02", "until": "9999-12-31"}, ["ACME-0003"]),
    ],
)
def test_the_first_and_last_days_of_the_calendar_filter_exactly(
    query, expected, tenant, finance, client_for, invoices
):
    client = client_for(finance)

    assert _page(client, tenant, **query) == (200, expected, {})
    assert _csv(client, tenant, **query) == (200, expected)


@pytest.mark.parametrize(
    "until", ["10000-01-01", "99999999-12-31", "9999-12-32", "0000-01-01", "2026-02-30", "-1-01-01", "1e308"]
)
def test_a_date_the_calendar_does_not_hold_is_a_form_error_that_filters_nothing(
    until, tenant, finance, client_for, invoices
):
    client = client_for(finance)

    assert _page(client, tenant, until=until) == (200, ALL, {"until": ["Enter a valid date."]})
    assert _csv(client, tenant, until=until) == (200, ALL)


def test_a_huge_page_number_shows_the_last_page(tenant, finance, client_for, invoices):
    assert _page(client_for(finance), tenant, page=str(10**30)) == (200, ALL, {})

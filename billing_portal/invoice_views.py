"""The Invoices pages: finance (and admins) review the tenant's invoices. Read-only: GET only.

Thin views: access check → filter form → selectors → render. An invoice's detail, its PDF and the
CSV export are never stored by the browser or a proxy (`Cache-Control: no-store`): billing data
stays off shared machines' disks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billing_portal import selectors
from billing_portal.invoice_forms import InvoiceFilterForm
from billing_portal.invoice_pdf import invoice_pdf as render_invoice_pdf
from billing_portal.models import Invoice
from plans.money import decimal_string
from tenants.access import BILLING_READERS, TenantRequest, tenant_view
from tenants.csv_export import csv_response
from tenants.models import Tenant

PAGE_SIZE = 25
# service_period_*: what the lines pay for (the period the pages show); gateway_period_*: the
# gateway's own invoice period (at Stripe, the window in which items could be added to the invoice).
CSV_HEADER = (
    "number",
    "status",
    "issued_date",
    "paid_date",
    "service_period_start",
    "service_period_end",
    "gateway_period_start",
    "gateway_period_end",
    "currency",
    "subtotal",
    "tax",
    "total",
    "amount_paid",
    "amount_remaining",
    "credit_applied",  # of the customer's credit balance, paid into this invoice
    "credit_added",  # to the customer's credit balance (a downgrade's negative total)
    # Money back after payment (the status stays "paid"; the refund is on the invoice's charges):
    # refunded of amount_paid, and the credit notes' total (see Invoice.net_paid for why it is not
    # taken off); net_paid = amount_paid - amount_refunded. Appended, so the columns before keep their
    # places for existing imports.
    "amount_refunded",
    "amount_credited",
    "net_paid",
)


def _filtered(
    request: HttpRequest, tenant: Tenant
) -> tuple[InvoiceFilterForm, dict[str, Any], QuerySet[Invoice]]:
    form = InvoiceFilterForm(request.GET or None)
    filters = form.filters()
    return form, filters, selectors.invoices_for(tenant=tenant, **filters)


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@tenant_view(BILLING_READERS)
@require_GET
def invoices(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    form, filters, found = _filtered(request, tenant)
    context = {
        "form": form,
        "filtered": bool(filters),
        "page": Paginator(found, PAGE_SIZE).get_page(request.GET.get("page")),
        "totals": selectors.invoice_totals(found),
        "query": _query_without_page(request),
    }
    template = "billing_portal/invoices.html#table" if request.htmx else "billing_portal/invoices.html"
    return render(request, template, context)


def _day(value: datetime | None) -> str:
    return timezone.localtime(value).date().isoformat() if value else ""


def _csv_rows(found: QuerySet[Invoice]) -> Iterator[tuple[object, ...]]:
    yield CSV_HEADER
    for invoice in found.iterator(chunk_size=500):
        currency = invoice.currency
        yield (
            str(invoice),
            invoice.status,
            _day(invoice.issued_at),
            _day(invoice.paid_at),
            _day(invoice.service_period_start),
            _day(invoice.service_period_end),
            _day(invoice.period_start),
            _day(invoice.period_end),
            currency.upper(),
            decimal_string(invoice.subtotal, currency),
            decimal_string(invoice.tax, currency),
            decimal_string(invoice.total, currency),
            decimal_string(invoice.amount_paid, currency),
            decimal_string(invoice.amount_remaining, currency),
            decimal_string(invoice.credit_applied, currency),
            decimal_string(invoice.credit_added, currency),
            decimal_string(invoice.amount_refunded, currency),
            decimal_string(invoice.amount_credited, currency),
            decimal_string(invoice.net_paid, currency),
        )


@tenant_view(BILLING_READERS)
@never_cache
@require_GET
def invoice_csv(request: TenantRequest, tenant: Tenant) -> StreamingHttpResponse:
    """The filtered list as CSV, amounts as decimal strings made from the integer minor units."""
    _form, _filters, found = _filtered(request, tenant)
    filename = f"invoices-{tenant.slug}-{timezone.localdate().isoformat()}.csv"
    return csv_response(_csv_rows(found), filename=filename)


def _invoice_or_404(tenant: Tenant, invoice_id: int) -> Invoice:
    try:
        return selectors.invoice_detail(tenant=tenant, invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice.") from None


@tenant_view(BILLING_READERS)
@never_cache
@require_GET
def invoice_detail(request: TenantRequest, tenant: Tenant, invoice_id: int) -> HttpResponse:
    return render(
        request, "billing_portal/invoice_detail.html", {"invoice": _invoice_or_404(tenant, invoice_id)}
    )


@tenant_view(BILLING_READERS)
@never_cache
@require_GET
def invoice_pdf(request: TenantRequest, tenant: Tenant, invoice_id: int) -> HttpResponse:
    """The gateway's PDF when it has one (Stripe's is the document of record); otherwise ours."""
    invoice = _invoice_or_404(tenant, invoice_id)
    if invoice.pdf_url:
        return HttpResponseRedirect(invoice.pdf_url)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", str(invoice)) + ".pdf"
    return HttpResponse(
        render_invoice_pdf(invoice=invoice),
        content_type="application/pdf",
        headers={"Content-Disposition": content_disposition_header(False, filename)},
    )

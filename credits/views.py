"""The Marketplace, the AI Credits page and AI Statistics (with its CSV export). Read-only pages
for every role: thin views, access check → selectors → render. What a member may buy is decided by
the plan-offer rule (`plans.offers`), never here; the purchases post to the billing portal."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from credits import selectors
from tenants.access import ALL_ROLES, TenantRequest, tenant_view
from tenants.csv_export import csv_response
from tenants.models import Tenant
from tenants.text import ascii_digits

RANGES = (7, 30, 90)  # days the statistics can cover
DEFAULT_RANGE = 30


def _days(request: TenantRequest) -> int:
    value = request.GET.get("days", "")
    return int(value) if ascii_digits(value) and int(value) in RANGES else DEFAULT_RANGE


@tenant_view(ALL_ROLES)
@require_GET
def marketplace(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """The Marketplace home: the AI Credits banner is always there (C02)."""
    return render(
        request,
        "credits/marketplace.html",
        {"summary": selectors.summary(tenant_id=tenant.pk), "products": selectors.marketplace_products()},
    )


@tenant_view(ALL_ROLES)
@require_GET
def ai_credits(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """The AI Credits page: the plans and what each includes, the current one marked, the balance,
    the next renewal and the active extra pack (C01, C05 to C08, C13 to C15)."""
    overview = selectors.overview(tenant=tenant)
    return render(
        request,
        "credits/ai_credits.html",
        {
            "ov": overview,
            "offers": selectors.plan_cards(tenant=tenant, ents=overview.ents, role=request.membership.role),
            "pack_offer": selectors.page_pack_offer(ov=overview, role=request.membership.role),
            "costs": selectors.feature_costs(),
        },
    )


@tenant_view(ALL_ROLES)
@require_GET
def ai_statistics(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """AI Statistics: consumption per feature over time, the balance, credits by source and expiry,
    the top clients, the CSV export, and the permanent way to the purchase page (C04)."""
    days = _days(request)
    stats = selectors.statistics(tenant=tenant, days=days)
    return render(
        request,
        "credits/statistics.html",
        {
            "stats": stats,
            "ov": selectors.overview(tenant=tenant),
            "days": days,
            "ranges": RANGES,
            "chart": stats.chart(),
        },
    )


@tenant_view(ALL_ROLES)
@require_GET
def ai_statistics_csv(request: TenantRequest, tenant: Tenant) -> StreamingHttpResponse:
    """Every consumption of the range, one row each (streamed: no row count limit in memory)."""
    days = _days(request)
    now = timezone.now()
    start = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), tzinfo=now.tzinfo)
    rows = selectors.consumption_rows(tenant=tenant, start=start, end=now + timedelta(microseconds=1))
    return csv_response(rows, filename=f"ai-credits-{tenant.slug}-{start:%Y-%m-%d}-to-{now:%Y-%m-%d}.csv")

"""The credits app's sidebar entries and Overview tile (registered from CreditsConfig.ready).

The three ways into the AI Credits page (C02 to C04): the Marketplace's banner, always there; a
sidebar quick access that appears only when consumption makes it relevant (C03); and the AI
Statistics page's permanent link."""

from __future__ import annotations

from typing import Any

from credits.selectors import Summary, summary
from tenants import dashboard
from tenants.access import ALL_ROLES, TenantRequest
from tenants.models import Membership
from tenants.navigation import NavItem
from tenants.navigation import register as register_items


def _summary(membership: Membership) -> Summary:
    """The tenant's credit summary, read once per request: the sidebar and the Overview tile share
    it (the request's membership object carries it; the next request reads it afresh)."""
    found = getattr(membership, "_credits_summary", None)
    if found is None:
        found = summary(tenant_id=membership.tenant_id)
        membership._credits_summary = found  # type: ignore[attr-defined]
    return found


def nudge_shown(membership: Membership) -> bool:
    """C03: at least CREDITS_NUDGE_USED_PERCENT of the period's credits used, or the balance under
    CREDITS_LOW_BALANCE (one query, on every tenant page)."""
    return _summary(membership).low


def credits_tile(request: TenantRequest) -> dict[str, Any] | None:
    """The Overview's AI credits tile: the available credits (and the reserved ones, with the balance,
    when work in progress holds some) and the period's use, for a tenant that has credits."""
    found = _summary(request.membership)
    if not found.has_credits:
        return None
    return {"slug": request.tenant.slug, "summary": found}


def register() -> None:
    register_items(
        NavItem("Marketplace", "marketplace", ALL_ROLES, order=30, icon="shop"),
        NavItem("AI Credits", "ai_credits", ALL_ROLES, order=31, icon="spark", shown_for=nudge_shown),
        NavItem("AI Statistics", "ai_statistics", ALL_ROLES, order=32, icon="chart"),
    )
    dashboard.register(dashboard.Tile("credits", "credits/tiles/credits.html", credits_tile, order=30))

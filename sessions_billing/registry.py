"""What sessions_billing adds to the shared registries, from SessionsBillingConfig.ready: the AI
Agents admission check (plans.admission), the sidebar entries and the Overview's usage tile."""

from __future__ import annotations

from typing import Any

from plans import admission
from sessions_billing.selectors import (
    USAGE_COMPANION,
    USAGE_COMPANION_SQL,
    Usage,
    admission_check,
    usage_for,
)
from sessions_billing.terms import PRODUCT
from tenants import audit, dashboard, navigation
from tenants.access import ALL_ROLES, TenantRequest
from tenants.services import register_key_companion

_USAGE = "_sessions_usage"


def overview_usage(request: TenantRequest) -> Usage:
    """The tenant's AI Agents usage, read once for every Overview tile that shows it (the usage tile
    and the billing alerts' Trial sessions left say the same number, for the price of one read)."""
    found = getattr(request, _USAGE, None)
    if found is None:
        found = usage_for(tenant=request.tenant)
        setattr(request, _USAGE, found)
    return found


def usage_tile(request: TenantRequest) -> dict[str, Any] | None:
    """The Overview's AI Agents usage: this period's billable sessions against the limit."""
    usage = overview_usage(request)
    if usage.ent.state == "none":
        return None
    return {"slug": request.tenant.slug, "usage": usage}


SENTENCES = {
    "session_limit.set": "{actor} set the session limit to {to} billable sessions a period (it was {from})",
    "session_limit.reset": "{actor} reset the session limit to the plan's base limit (it was {from})",
    "agent.registered": "{actor} registered the agent {target}",
    "agent.renamed": "{actor} renamed the agent {target}",
}
LABELS = {
    "session_limit.set": "Session limit set",
    "session_limit.reset": "Session limit reset",
    "agent.registered": "Agent registered",
    "agent.renamed": "Agent renamed",
}


def register() -> None:
    audit.register_sentences(SENTENCES, labels=LABELS)
    admission.register(PRODUCT, admission_check)
    register_key_companion(USAGE_COMPANION, USAGE_COMPANION_SQL)
    navigation.register(
        navigation.NavItem("Sessions", "sessions", ALL_ROLES, order=20, icon="chat"),
        navigation.NavItem("Agents", "agents", ALL_ROLES, order=25, icon="bot"),
    )
    dashboard.register(
        dashboard.Tile("sessions_usage", "sessions_billing/tiles/usage.html", usage_tile, order=10)
    )

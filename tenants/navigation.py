"""The tenant navigation, in one place: label, URL name, and the roles that may see the item.

Pages that a later issue builds appear here already; until their URL exists they show as
"soon" and link nowhere."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from tenants.access import ADMIN_ONLY, ALL_ROLES, BILLING_READERS
from tenants.models import Membership, Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: tuple[Role, ...]
    icon: str


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("Overview", "tenant_home", ALL_ROLES, "home"),
    NavItem("Billing", "billing", ALL_ROLES, "card"),
    NavItem("Plans & Licenses", "plans_and_licenses", ALL_ROLES, "key"),
    NavItem("AI Credits", "ai_credits", ALL_ROLES, "spark"),
    NavItem("Sessions", "sessions", ALL_ROLES, "chat"),
    NavItem("Invoices", "invoices", BILLING_READERS, "doc"),
    NavItem("Team", "team", ADMIN_ONLY, "people"),
    NavItem("API keys", "api_keys", ADMIN_ONLY, "lock"),
    NavItem("Activity", "activity", ADMIN_ONLY, "list"),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str | None
    active: bool
    icon: str


def nav_for(membership: Membership, current_path: str) -> list[NavLink]:
    """The items this member may see; the active one is the longest whose URL starts the current
    path, so an invoice's detail page highlights Invoices (and Overview only the overview)."""
    found: list[tuple[NavItem, str | None]] = []
    for item in NAVIGATION:
        if membership.role not in item.roles:
            continue
        if item.url_name == "billing" and not settings.BILLING_TAB_ENABLED:
            continue  # billing happens outside the portal on this deployment (S03)
        try:
            url: str | None = reverse(item.url_name, kwargs={"slug": membership.tenant.slug})
        except NoReverseMatch:
            url = None  # built by a later issue
        found.append((item, url))
    matches = [url for _, url in found if url and current_path.startswith(url)]
    active = max(matches, key=len, default=None)
    return [NavLink(item.label, url, url is not None and url == active, item.icon) for item, url in found]

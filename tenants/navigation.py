"""The sidebar: a registry each app fills from its `AppConfig.ready` with the pages it owns, so
tenants (the lowest layer) names no URL of the apps above it.

An item is a label, a URL name under /t/<slug>/, the roles that see it, a position, and optionally
a condition (a deployment setting, say) that hides it, or a condition on the member's tenant (the AI
Credits quick access shows only when consumption makes it relevant)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.urls import reverse

from tenants.models import Membership, Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: tuple[Role, ...]
    order: int
    icon: str = ""
    shown: Callable[[], bool] = field(default=lambda: True, compare=False)
    # Asked with the membership when set (keep it to one query: it runs on every page).
    shown_for: Callable[[Membership], bool] | None = field(default=None, compare=False)


_REGISTRY: dict[str, NavItem] = {}


def register(*items: NavItem) -> None:
    """Add sidebar entries (idempotent: registering a URL name again replaces its entry)."""
    for item in items:
        _REGISTRY[item.url_name] = item


def registered() -> list[NavItem]:
    return sorted(_REGISTRY.values(), key=lambda item: (item.order, item.label))


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    active: bool
    icon: str


def nav_for(
    membership: Membership, current_path: str, items: Iterable[NavItem] | None = None
) -> list[NavLink]:
    """The items this member may see; the active one is the longest whose URL starts the current
    path, so an invoice's detail page highlights Invoices (and Overview only the overview)."""
    found: list[tuple[NavItem, str]] = [
        (item, reverse(item.url_name, kwargs={"slug": membership.tenant.slug}))
        for item in (registered() if items is None else items)
        if membership.role in item.roles
        and item.shown()
        and (item.shown_for is None or item.shown_for(membership))
    ]
    matches = [url for _, url in found if current_path.startswith(url)]
    active = max(matches, key=len, default=None)
    return [NavLink(item.label, url, url == active, item.icon) for item, url in found]

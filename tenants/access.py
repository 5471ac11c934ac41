"""Resolving the tenant and the membership for a page: the first line of every tenant view.

Not a member → 404 (the tenant's existence is not revealed); a member without the role → 403."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from tenants.models import Membership, Role, Tenant, User


class TenantRequest(HttpRequest):
    """What a view under `tenant_view` receives: a signed-in member, their tenant and membership."""

    user: User
    htmx: HtmxDetails
    tenant: Tenant
    membership: Membership


class HtmxRequest(HttpRequest):
    htmx: HtmxDetails


ALL_ROLES = (Role.ADMIN, Role.MEMBER, Role.FINANCE)
ADMIN_ONLY = (Role.ADMIN,)
BILLING_READERS = (Role.ADMIN, Role.FINANCE)


def resolve_membership(request: HttpRequest, slug: str) -> Membership:
    if not request.user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("tenant", "user")
        .filter(tenant__slug=slug, user=request.user)
        .first()
    )
    if membership is None:
        raise Http404("No such tenant.")
    return membership


def tenant_view(roles: Iterable[Role] = ALL_ROLES) -> Callable:
    """Decorate a view `view(request, tenant, **kwargs)` under `/t/<slug>/`.

    Sets `request.tenant` and `request.membership`; answers 404 to non-members and 403 to members
    whose role is not in `roles`. Anonymous users are sent to the login page."""
    allowed = frozenset(Role(r) for r in roles)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = resolve_membership(request, slug)
            if membership.role not in allowed:
                raise PermissionDenied("Your role does not allow this.")
            request.tenant = membership.tenant  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            request.session["last_tenant"] = membership.tenant.slug
            return view(request, membership.tenant, *args, **kwargs)

        wrapper.tenant_roles = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorator


def can(membership: Membership | None, roles: Iterable[Role]) -> bool:
    return membership is not None and membership.role in set(roles)


__all__ = [
    "ADMIN_ONLY",
    "ALL_ROLES",
    "BILLING_READERS",
    "HtmxRequest",
    "Tenant",
    "TenantRequest",
    "can",
    "resolve_membership",
    "tenant_view",
]

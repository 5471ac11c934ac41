"""Resolving the tenant and the membership for a page: the first line of every tenant view.

Not a member → 404 (the tenant's existence is not revealed); a member without the role → 403."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any
from urllib.parse import unquote, urlsplit

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails

from tenants.models import Membership, Role, Tenant, User

ALL_ROLES = (Role.ADMIN, Role.MEMBER, Role.FINANCE)
ADMIN_ONLY = (Role.ADMIN,)
BILLING_READERS = (Role.ADMIN, Role.FINANCE)

MSG_ROLE = "Your role does not allow this."


class TenantRequest(HttpRequest):
    """What a tenant view receives: a signed-in member, their tenant and membership, htmx details."""

    user: User
    htmx: HtmxDetails
    tenant: Tenant
    membership: Membership


def member_access(request: HttpRequest, roles: Iterable[Role], **tenant_lookup: Any) -> Membership:
    """The signed-in user's membership of the tenant `tenant_lookup` names (`slug=…` or `tenant=…`),
    set on the request as `request.tenant` and `request.membership`. Raises Http404 for anyone who
    is not a member (or not signed in) and PermissionDenied for a member without one of `roles`."""
    if not request.user.is_authenticated:
        raise Http404
    lookup = {f"tenant__{k}" if k != "tenant" else k: v for k, v in tenant_lookup.items()}
    membership = (
        Membership.objects.select_related("tenant", "user").filter(user=request.user, **lookup).first()
    )
    if membership is None:
        raise Http404("No such tenant.")
    # Set before the role check too: the 403 page shows the member's own navigation and the way
    # back to the tenant's Overview.
    request.tenant = membership.tenant  # type: ignore[attr-defined]
    request.membership = membership  # type: ignore[attr-defined]
    if membership.role not in {Role(r) for r in roles}:
        raise PermissionDenied(MSG_ROLE)
    return membership


def tenant_view(roles: Iterable[Role] = ALL_ROLES) -> Callable:
    """Decorate a view `view(request: TenantRequest, tenant, **kwargs)` under `/t/<slug>/`.

    Answers 404 to non-members and 403 to members whose role is not in `roles`. Anonymous users are
    sent to the login page."""
    allowed = tuple(Role(r) for r in roles)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = member_access(request, allowed, slug=slug)
            if request.session.get("last_tenant") != membership.tenant.slug:
                # Written only when it changes: an unchanged session is not saved again.
                request.session["last_tenant"] = membership.tenant.slug
            return view(request, membership.tenant, *args, **kwargs)

        wrapper.tenant_roles = frozenset(allowed)  # type: ignore[attr-defined]
        return wrapper

    return decorator


def return_path_within(request: HttpRequest, target: str, prefix: str) -> str:
    """`target` (a form's `next`) when it is a path under `prefix` on this site, else "": never an
    open redirect, and never out of `prefix` by dot segments, which the browser resolves
    ("/t/acme/licenses/../../admin/" starts with the prefix and lands on /admin/; "%2e%2e" too)."""
    if not target.startswith(prefix) or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return ""
    segments = unquote(urlsplit(target).path).replace("\\", "/").split("/")
    if any(segment in (".", "..") for segment in segments):
        return ""
    return target

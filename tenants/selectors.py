"""Every read of the tenants app that a view, task or other app needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from tenants import audit
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Tenant, User

if TYPE_CHECKING:
    from tenants.access import TenantRequest


def memberships_of(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name")


def members_of(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")


def pending_invitations(*, tenant: Tenant) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(
            tenant=tenant, status=Invitation.Status.PENDING, expires_at__gt=timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at")
    )


def admin_count(*, tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


def api_keys_of(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(tenant=tenant)
        .select_related("created_by")
        .order_by("revoked_at", "-created_at")
    )


@dataclass(frozen=True)
class ActivityFilter:
    action: str = ""
    actor: str = ""  # matches the actor's label (an email or a key name)
    since: date | None = None
    until: date | None = None


def activity(*, tenant: Tenant, filters: ActivityFilter) -> QuerySet[AuditEvent]:
    """The tenant's audit events as the Activity page lists them: newest first, one row per action
    (an event that repeats another of the same step is folded into it, `tenants.audit.Fold`)."""
    events = AuditEvent.objects.filter(tenant=tenant).exclude(audit.folded_q())
    if filters.action:
        events = events.filter(action__startswith=filters.action)
    if filters.actor:
        events = events.filter(actor_label__icontains=filters.actor)
    if filters.since:
        events = events.filter(created_at__gte=datetime.combine(filters.since, time.min, tzinfo=UTC))
    if filters.until:
        events = events.filter(created_at__lte=datetime.combine(filters.until, time.max, tzinfo=UTC))
    return events.order_by("-created_at", "-id")


def activity_actions(*, tenant: Tenant) -> list[str]:
    return list(
        AuditEvent.objects.filter(tenant=tenant)
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )


def team_tile(request: TenantRequest) -> dict[str, Any]:
    """The Overview's team tile (admins): members and pending invitations, in one query."""
    tenant = request.tenant
    counts = Tenant.objects.filter(pk=tenant.pk).aggregate(
        member_count=Count("memberships", distinct=True),
        pending_invitations=Count(
            "invitations",
            filter=Q(
                invitations__status=Invitation.Status.PENDING, invitations__expires_at__gt=timezone.now()
            ),
            distinct=True,
        ),
    )
    return {"slug": tenant.slug, **counts}

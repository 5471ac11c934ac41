"""Writing the audit log. Services call `audit(...)` inside their transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models

from tenants.models import ActorType, ApiKey, AuditEvent, Tenant, User


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in user, an API key, or the system (a job, a webhook, a command)."""

    type: str
    user: User | None = None
    api_key: ApiKey | None = None
    label: str = "system"

    @classmethod
    def of(cls, who: User | ApiKey | Actor | None) -> Actor:
        if isinstance(who, Actor):
            return who
        if isinstance(who, User):
            return cls(type=ActorType.USER, user=who, label=who.email)
        if isinstance(who, ApiKey):
            return cls(type=ActorType.API_KEY, api_key=who, label=f"API key {who.name} ({who.prefix})")
        return SYSTEM


SYSTEM = Actor(type=ActorType.SYSTEM, label="system")


def audit(
    *,
    tenant: Tenant,
    actor: User | ApiKey | Actor | None,
    action: str,
    target: models.Model | None = None,
    target_label: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    who = Actor.of(actor)
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_type=who.type,
        actor_user=who.user,
        actor_api_key=who.api_key,
        actor_label=who.label[:200],
        action=action,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:200],
        data=data or {},
    )

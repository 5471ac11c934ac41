"""`{{ event|sentence }}` and `{{ action|action_label }}`: the audit log as people read it."""

from __future__ import annotations

from django import template

from tenants import audit
from tenants.models import AuditEvent

register = template.Library()


@register.filter
def sentence(event: AuditEvent) -> str:
    return audit.sentence(event)


@register.filter
def action_label(action: str) -> str:
    return audit.action_label(str(action))


@register.filter
def details(event: AuditEvent) -> list[tuple[str, str]]:
    return audit.details(event)

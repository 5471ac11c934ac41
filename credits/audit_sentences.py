"""How the Activity page reads the credits app's audit events (registered from CreditsConfig.ready)."""

from __future__ import annotations

from tenants.audit import Fields, Sentence
from tenants.models import AuditEvent

# What a staff adjustment moved (its `unit`; events written before it was recorded were AI credits).
_UNITS = {"ai_credit": "AI credits", "ticket_credit": "ticket credits"}


def _adjusted(event: AuditEvent, fields: Fields) -> str:
    amount, reason = fields.get("amount"), fields.get("reason")
    units = _UNITS.get(str((event.data or {}).get("unit", "ai_credit")), "credits")
    if amount is None:
        return f"{fields['actor']} adjusted the {units}"
    verb = f"took {amount.lstrip('-')} {units}" if amount.startswith("-") else f"added {amount} {units}"
    return f"{fields['actor']} {verb}" + (f": {reason}" if reason else "")


def _deactivated(event: AuditEvent, fields: Fields) -> str:
    reason = fields.get("reason")
    return "{actor} deactivated the package {target}".format_map(fields) + (f": {reason}" if reason else "")


SENTENCES: dict[str, Sentence] = {
    "credits.granted": "{actor} granted {target}",
    "credits.adjusted": _adjusted,
    "credits.package_deactivated": _deactivated,
    "credits.withdrawn": "{actor} withdrew {target}: the plan changed within the billing cycle",
}
LABELS = {
    "credits.granted": "Credits granted",
    "credits.adjusted": "Credits adjusted",
    "credits.package_deactivated": "Package deactivated",
    "credits.withdrawn": "Credits withdrawn",
}

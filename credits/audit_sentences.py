"""How the Activity page reads the credits app's audit events (registered from CreditsConfig.ready)."""

from __future__ import annotations

from credits.models import UNIT_PLURAL, Unit
from tenants.audit import Fields, Sentence
from tenants.models import AuditEvent


def _adjusted(event: AuditEvent, fields: Fields) -> str:
    amount, reason = fields.get("amount"), fields.get("reason")
    # Its `unit` (events written before the unit was recorded were AI credits).
    unit = str((event.data or {}).get("unit", Unit.AI_CREDIT))
    units = UNIT_PLURAL[Unit(unit)] if unit in Unit.values else "credits"
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

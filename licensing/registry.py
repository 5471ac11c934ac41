"""What licensing adds to the shared registries, from LicensingConfig.ready: the Helpdesk AI
admission check (plans.admission), the sidebar entry of the Plans & Licenses page, the Activity
page's sentences and the clients' names for AI Statistics (credits)."""

from __future__ import annotations

from credits.selectors import register_client_name
from licensing.rules import PRODUCT
from licensing.selectors import admission_check, client_name
from plans import admission
from tenants import audit, navigation
from tenants.access import ALL_ROLES
from tenants.models import AuditEvent


def _updated(event: AuditEvent, fields: dict[str, str]) -> str:
    changed = fields.get("fields")
    return (
        f"{fields['actor']} changed the {changed} of the client {fields['target']}"
        if changed
        else (f"{fields['actor']} changed the client {fields['target']}")
    )


def _imported(event: AuditEvent, fields: dict[str, str]) -> str:
    counts = ", ".join(f"{fields[k]} {k}" for k in ("new", "updated") if k in fields)
    return f"{fields['actor']} imported clients from {fields['target']}" + (f": {counts}" if counts else "")


def _license(verb: str) -> audit.Sentence:
    def read(event: AuditEvent, fields: dict[str, str]) -> str:
        kind = fields.get("kind", "")
        article = "an" if kind == "AI" else "a"
        what = f"{article} {kind} license" if kind in ("AI", "Chat") else "a license"
        if verb == "assigned":
            return f"{fields['actor']} assigned {what} to {fields['target']}"
        why = " (inactive client)" if fields.get("reason") == "inactive client" else ""
        return f"{fields['actor']} removed {what} from {fields['target']}{why}"

    return read


SENTENCES: dict[str, audit.Sentence] = {
    "client.created": "{actor} added the client {target}",
    "client.updated": _updated,
    "clients.imported": _imported,
    "license.assigned": _license("assigned"),
    "license.removed": _license("removed"),
}
LABELS = {
    "client.created": "Client added",
    "client.updated": "Client changed",
    "clients.imported": "Clients imported",
    "license.assigned": "License assigned",
    "license.removed": "License removed",
}


def register() -> None:
    audit.register_sentences(SENTENCES, labels=LABELS)
    admission.register(PRODUCT, admission_check)
    register_client_name(client_name)  # AI Statistics' top clients by name (L08, L10)
    navigation.register(
        navigation.NavItem("Plans & Licenses", "plans_and_licenses", ALL_ROLES, order=15, icon="key"),
    )

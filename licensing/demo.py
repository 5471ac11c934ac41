"""Demo data for `seed_demo` (DEBUG only): an MSP partner's client companies, imported from a CSV
file as a partner would, some holding AI and Chat licenses (two of them inactive but still holding
theirs), tickets that qualified through licenses and ticket credits, and AI credits used by some
clients — all written through the services, so the page, the ledger and the audit log are what real
use would have left."""

from __future__ import annotations

import random
from datetime import datetime

from django.utils import timezone

from credits import services as credit_services
from licensing import services
from licensing.models import Client
from licensing.rules import ClientFields
from tenants.errors import BusinessError
from tenants.models import ApiKey, Tenant, User

PREFIXES = [
    "Alder", "Birch", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper", "Keystone",
    "Lumen", "Maple", "Nimbus", "Orchid", "Pioneer", "Quarry", "Redwood", "Summit", "Tidal", "Umber",
    "Vertex", "Willow", "Yarrow", "Zephyr", "Atlas", "Beacon", "Cobalt", "Drift", "Evergreen",
]  # fmt: skip
SUFFIXES = [
    "Dental", "Logistics", "Legal", "Accounting", "Clinic", "Construction", "Realty", "Foods", "Motors",
    "Design", "Labs", "Insurance", "Travel", "Schools",
]  # fmt: skip
COMPANY_TYPES = ["Customer"] * 8 + ["Prospect", "Partner"]
AGREEMENTS = ["Managed services"] * 5 + ["Break-fix"] * 3 + ["Block hours", "Project"]


def _csv(rows: list[tuple[str, str, str, str, str]]) -> str:
    lines = ["external_id,name,status,company_type,agreement_type"]
    lines += [",".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def demo_partner(
    *, tenant: Tenant, admin: User, api_key: ApiKey, clients: int = 300, now: datetime | None = None
) -> dict[str, int]:
    """`clients` client companies (about one in eight inactive) from a CSV import; 9 of the plan's AI
    licenses and 6 Chat licenses assigned (two to clients that became inactive since: flagged);
    tickets through the API's service — the licensed clients' via license, others' via a ticket
    credit — and a few AI credits consumed per client."""
    now = now or timezone.now()
    rng = random.Random(f"demo:{tenant.slug}:clients")
    names = [f"{p} {s}" for p in PREFIXES for s in SUFFIXES]
    rng.shuffle(names)
    rows = [
        (
            f"{4100 + i}",
            names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}"),
            "inactive" if rng.random() < 0.12 else "active",
            rng.choice(COMPANY_TYPES),
            rng.choice(AGREEMENTS),
        )
        for i in range(clients)
    ]
    upload = services.client_import_create(
        tenant=tenant, filename="northwind-psa-export.csv", content=_csv(rows), actor=admin
    )
    services.client_import_check(import_id=upload.pk)
    services.client_import_start(tenant=tenant, import_id=upload.pk, actor=admin)

    active = list(Client.objects.filter(tenant=tenant, status=Client.Status.ACTIVE).order_by("external_id"))
    licensed = active[:9]
    for client in licensed:
        services.license_assign(tenant=tenant, client=client, kind="ai", actor=admin, now=now)
    for client in active[3:9]:
        services.license_assign(tenant=tenant, client=client, kind="chat", actor=admin, now=now)
    # Two licensed clients ended their contract since: inactive, still holding licenses (L20).
    for client in licensed[-2:]:
        fields = ClientFields(client.name, Client.Status.INACTIVE, client.company_type, "Ended")
        services.client_update(tenant=tenant, client=client, fields=fields, actor=admin)

    tickets = 0
    walk_ins = [c for c in active[20:] if c.agreement_type == "Break-fix"][:23]
    for n, client in enumerate([*licensed[:7], *walk_ins]):
        try:
            services.ticket_qualify(
                tenant=tenant,
                ticket_id=f"HD-{20500 + n}",
                client_id=client.external_id,
                actor=api_key,
                now=now,
            )
        except BusinessError:
            break
        tickets += 1

    consumed = 0
    for n, client in enumerate(licensed[:5] + active[10:13]):
        try:
            credit_services.credits_consume(
                tenant=tenant,
                feature="smart_response" if n % 2 else "ai_review",
                quantity=rng.randint(2, 6) if n % 2 else rng.randint(10, 40),
                idempotency_key=f"demo-partner-{n}",
                client_id=client.external_id,
                actor=api_key,
                now=now,
            )
        except BusinessError:
            break
        consumed += 1
    return {"clients": clients, "tickets": tickets, "consumptions": consumed}

"""The partner's client companies, their AI and Chat licenses, the tickets the AI product asked
about, and CSV imports of clients.

A license is a field of its client (`ai_license_since`, `chat_license_since`: when it was assigned,
empty when the client holds none): the page filters, sorts and counts on it directly. How many a
tenant may assign comes from its plan (`plans.selectors.entitlements`), never from here; every
assignment and removal takes the tenant's `LicensePool` row of that kind first, so two parallel
assignments are counted one after the other and never exceed the total."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant

# A client's id in the partner's PSA: one path segment of the API (no "/"), printable.
MAX_EXTERNAL_ID = 100
MAX_NAME = 200
MAX_TYPE = 80
MAX_TICKET_ID = 190  # the ticket-credit consumption's key is "ticket:<id>" (at most 200)


class LicenseKind(models.TextChoices):
    AI = "ai", "AI"
    CHAT = "chat", "Chat"


class Client(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=MAX_EXTERNAL_ID, help_text="The client's id in your PSA.")
    name = models.CharField(max_length=MAX_NAME)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    company_type = models.CharField(max_length=MAX_TYPE, blank=True)
    agreement_type = models.CharField(max_length=MAX_TYPE, blank=True)
    ai_license_since = models.DateTimeField(null=True, blank=True)
    chat_license_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="client_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_id=""), name="client_external_id_not_empty"),
            models.CheckConstraint(condition=~Q(name=""), name="client_name_not_empty"),
            # What a ticket refers to: a client together with its tenant (migration 0005).
            models.UniqueConstraint(fields=["id", "tenant"], name="client_id_tenant_unique"),
        ]
        indexes = [
            models.Index(fields=["tenant", "name", "id"]),
            models.Index(fields=["tenant", "status", "name"]),
            # The filter bar's choices: the distinct types, read from the index alone.
            models.Index(fields=["tenant", "company_type", "agreement_type"]),
            models.Index(
                fields=["tenant"], condition=Q(ai_license_since__isnull=False), name="client_ai_licensed_idx"
            ),
            models.Index(
                fields=["tenant"],
                condition=Q(chat_license_since__isnull=False),
                name="client_chat_licensed_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def ai_license(self) -> bool:
        return self.ai_license_since is not None

    @property
    def chat_license(self) -> bool:
        return self.chat_license_since is not None

    def has_license(self, kind: str) -> bool:
        return self.ai_license if kind == LicenseKind.AI else self.chat_license

    @property
    def flagged(self) -> bool:
        """L20: an inactive client that still holds a license."""
        return not self.active and (self.ai_license or self.chat_license)


class LicensePool(models.Model):
    """One row per tenant and license kind: the row every assignment and removal of that kind locks
    first (the count is taken under it). It holds no number: the clients' fields are the truth."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=LicenseKind.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "kind"], name="license_pool_one_per_kind")]

    def __str__(self) -> str:
        return f"{self.tenant} · {self.get_kind_display()} licenses"


class Ticket(models.Model):
    """A ticket the AI product asked about (POST /api/v1/tickets) that qualified for AI, with the
    answer it got: the same ticket id answers the same again and never consumes twice. Tickets that
    did not qualify are not kept (asking again later may qualify, e.g. once a license is assigned)."""

    class Via(models.TextChoices):
        LICENSE = "license", "AI license"
        UNLIMITED = "unlimited", "Unlimited AI access"
        TICKET_CREDIT = "ticket_credit", "Ticket credit"

    # db_index=False: indexed first in ticket_once_per_tenant and (client, created_at).
    # db_constraint=False: on PostgreSQL one foreign key checks both, (client, tenant) -> the client's
    # (id, tenant) (migration 0005): the ticket's tenant is its client's, and the insert locks no row
    # of the tenant that every other write of the tenant locks too.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    ticket_id = models.CharField(max_length=MAX_TICKET_ID)
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="tickets", db_index=False, db_constraint=False
    )
    via = models.CharField(max_length=16, choices=Via.choices)
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "ticket_id"], name="ticket_once_per_tenant")]
        indexes = [models.Index(fields=["client", "created_at"])]

    def __str__(self) -> str:
        return f"Ticket {self.ticket_id} ({self.via})"


class ClientImport(models.Model):
    """A CSV file of clients: checked first (every bad row reported with its line number), then
    applied as a whole or not at all. Large files are checked and applied by a Celery task;
    `processed` says how far the check has gone."""

    class Status(models.TextChoices):
        CHECKING = "checking", "Checking"
        READY = "ready", "Ready to import"
        INVALID = "invalid", "Has errors"
        APPLYING = "applying", "Importing"
        APPLIED = "applied", "Imported"
        FAILED = "failed", "Failed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=200, blank=True)
    content = models.TextField(help_text="The file as uploaded (UTF-8).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHECKING)
    total = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    processed = models.PositiveIntegerField(default=0, help_text="Rows checked (or applied) so far.")
    new = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, help_text='[{"line": 7, "message": "..."}]')
    # What the preview shows before anything is imported: the first rows that change a client, each
    # with its fields before and after: [{"line", "client_id", "name", "changes": {field: [from, to]}}].
    changes = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"Import {self.filename or self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return self.processed * 100 // self.total if self.total else 0

    @property
    def running(self) -> bool:
        return self.status in (self.Status.CHECKING, self.Status.APPLYING)

    FIELD_LABELS = {
        "name": "Client name",
        "status": "Status",
        "company_type": "Company type",
        "agreement_type": "Agreement type",
    }

    @property
    def change_rows(self) -> list[dict[str, object]]:
        """The preview's changes in the page's words: each field's label, before and after (a status
        by its label), and whether the row marks an active client inactive."""
        statuses = dict(Client.Status.choices)
        rows = []
        for row in self.changes:
            fields = [
                {
                    "label": self.FIELD_LABELS.get(name, name),
                    "before": statuses.get(before, before) if name == "status" else before,
                    "after": statuses.get(after, after) if name == "status" else after,
                }
                for name, (before, after) in row["changes"].items()
            ]
            deactivates = row["changes"].get("status", [None, None])[1] == Client.Status.INACTIVE
            rows.append({**row, "fields": fields, "deactivates": deactivates})
        return rows

"""Every write of licensing: clients (create, edit, the API's upsert, CSV imports), AI and Chat
license assignment and removal, ticket qualification, and the ticket-credit cycle it asks the
credits ledger for.

Licenses: every assignment and removal locks the tenant's pool row of that kind first, then the
client's row, then counts and checks against the plan's total (entitlements) and writes: 50
parallel assignments with 3 licenses left give exactly 3, the others a clear refusal. A refusal
changes nothing. Ticket credits are granted and spent only through `credits.services`."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.models import Grant
from licensing import db_functions, imports, rules
from licensing.models import Client, ClientImport, LicenseKind, LicensePool, Ticket
from licensing.rules import KIND_LABEL, PRODUCT, ClientFields
from plans.models import Plan, Subscription
from plans.selectors import ProductEntitlement, entitlements
from tenants.audit import SYSTEM, Actor, audit
from tenants.cache import Versions
from tenants.errors import BusinessError
from tenants.models import ApiKey, Tenant, User

Who = User | ApiKey | Actor | None

FIELDS = ("name", "status", "company_type", "agreement_type")
LICENSE_FIELD = {LicenseKind.AI: "ai_license_since", LicenseKind.CHAT: "chat_license_since"}


# --- clients -----------------------------------------------------------------------------------


def _changes(client: Client, fields: ClientFields, given: Collection[str] = FIELDS) -> dict[str, list[str]]:
    """{field: [before, after]} of the `given` fields that differ (an import may leave some out)."""
    return {
        name: [getattr(client, name), getattr(fields, name)]
        for name in FIELDS
        if name in given and getattr(client, name) != getattr(fields, name)
    }


def _audit_client(tenant: Tenant, client: Client, actor: Who, action: str, **data: Any) -> None:
    audit(
        tenant=tenant,
        actor=actor or SYSTEM,
        action=action,
        target=client,
        target_label=client.name,
        data=data,
    )


def _exists(external_id: str) -> BusinessError:
    return BusinessError("client_exists", f"A client with the id {external_id} already exists.", status=409)


@transaction.atomic
def client_create(
    *, tenant: Tenant, external_id: str, fields: ClientFields, actor: Who, now: datetime | None = None
) -> Client:
    """A new client (the page's Add client). Its id must be new to the tenant (409 otherwise)."""
    external_id = rules.clean_external_id(external_id, field="external_id")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            client = Client.objects.create(
                tenant=tenant,
                external_id=external_id,
                name=fields.name,
                status=fields.status,
                company_type=fields.company_type,
                agreement_type=fields.agreement_type,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        raise _exists(external_id) from None
    _audit_client(tenant, client, actor, "client.created", client_id=external_id)
    return client


def _lock_client(tenant: Tenant, pk: int) -> Client:
    client = Client.objects.select_for_update().filter(tenant=tenant, pk=pk).first()
    if client is None:
        raise BusinessError("not_found", "No client has this id.", status=404)
    return client


def _apply(tenant: Tenant, client: Client, fields: ClientFields, actor: Who, now: datetime) -> Client:
    changes = _changes(client, fields)
    if not changes:
        return client
    for name in changes:
        setattr(client, name, getattr(fields, name))
    client.updated_at = now
    client.save(update_fields=[*changes, "updated_at"])
    _audit_client(
        tenant, client, actor, "client.updated", fields=", ".join(k.replace("_", " ") for k in changes)
    )
    return client


@transaction.atomic
def client_update(
    *, tenant: Tenant, client: Client, fields: ClientFields, actor: Who, now: datetime | None = None
) -> Client:
    """Edit a client's name, status, company type and agreement type. Its licenses stay: an
    inactive client that holds one is flagged on the page (L20) until an admin removes it."""
    locked = _lock_client(tenant, client.pk)
    return _apply(tenant, locked, fields, actor, now or timezone.now())


@transaction.atomic
def client_upsert(
    *, tenant: Tenant, external_id: str, fields: ClientFields, actor: Who, now: datetime | None = None
) -> tuple[Client, bool]:
    """PUT /clients/{client_id}: create the client, or bring it to these fields. Returns (client,
    created). Two at once for a new id: one creates, the other waits for it and updates."""
    external_id = rules.clean_external_id(external_id)
    now = now or timezone.now()
    client = Client.objects.select_for_update().filter(tenant=tenant, external_id=external_id).first()
    if client is None:
        try:
            with transaction.atomic():
                client = Client.objects.create(
                    tenant=tenant,
                    external_id=external_id,
                    name=fields.name,
                    status=fields.status,
                    company_type=fields.company_type,
                    agreement_type=fields.agreement_type,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            client = Client.objects.select_for_update().get(tenant=tenant, external_id=external_id)
        else:
            _audit_client(tenant, client, actor, "client.created", client_id=external_id)
            return client, True
    return _apply(tenant, client, fields, actor, now), False


# --- licenses ----------------------------------------------------------------------------------


def _lock_pool(tenant: Tenant, kind: str) -> None:
    """Serialize the tenant's assignments and removals of `kind` (always taken before a client's row,
    AI before Chat)."""
    LicensePool.objects.bulk_create([LicensePool(tenant=tenant, kind=kind)], ignore_conflicts=True)
    LicensePool.objects.select_for_update().filter(tenant=tenant, kind=kind).values_list("pk").first()


def _used(tenant: Tenant, kind: str) -> int:
    return Client.objects.filter(
        tenant=tenant, **{f"{LICENSE_FIELD[LicenseKind(kind)]}__isnull": False}
    ).count()


def _check_room(tenant: Tenant, ent: ProductEntitlement, kind: str, adding: int) -> None:
    """Under the pool's lock: the plan admits new work and has `adding` licenses of `kind` left."""
    refused = rules.refusal_error(ent)
    if refused is not None:
        raise refused
    total, used = rules.total_of(ent, kind), _used(tenant, kind)
    if used + adding > total:
        raise rules.limit_reached(kind=kind, total=total, used=used, plan_name=ent.plan_name, adding=adding)


def _set_license(
    tenant: Tenant, client: Client, kind: str, since: datetime | None, actor: Who, **data: Any
) -> None:
    field = LICENSE_FIELD[LicenseKind(kind)]
    setattr(client, field, since)
    client.save(update_fields=[field])
    _audit_client(
        tenant,
        client,
        actor,
        "license.assigned" if since else "license.removed",
        kind=KIND_LABEL[LicenseKind(kind)],
        **data,
    )


@transaction.atomic
def license_assign(
    *, tenant: Tenant, client: Client, kind: str, actor: Who, now: datetime | None = None
) -> Client:
    """Add AI license / Add Chat license (L13, L14): at once, audited. Already assigned: nothing
    changes (a double click, a retried API call). Refused (402 license_limit_reached) when the
    plan's total is used up or passed after a downgrade; 409 for an inactive client."""
    kind = rules.license_kind(kind)
    now = now or timezone.now()
    _lock_pool(tenant, kind)
    locked = _lock_client(tenant, client.pk)
    if locked.has_license(kind):
        return locked
    if not locked.active:
        raise rules.client_inactive(locked, kind)
    _check_room(tenant, entitlements(tenant=tenant, now=now)[PRODUCT], kind, 1)
    _set_license(tenant, locked, kind, now, actor)
    return locked


@transaction.atomic
def licenses_assign(
    *, tenant: Tenant, client_ids: Iterable[int], kind: str, actor: Who, now: datetime | None = None
) -> list[Client]:
    """The "Assign AI license" picker (L12): every chosen client gets the license, or none does
    (the message says how many are left). Clients that hold it already are left as they are."""
    kind = rules.license_kind(kind)
    now = now or timezone.now()
    ids = sorted(set(client_ids))
    if not ids:
        raise BusinessError("nothing_chosen", "Pick at least one client.", status=422)
    _lock_pool(tenant, kind)
    chosen = list(Client.objects.select_for_update().filter(tenant=tenant, pk__in=ids).order_by("pk"))
    if len(chosen) != len(ids):
        raise BusinessError("not_found", "A chosen client no longer exists.", status=404)
    inactive = [c for c in chosen if not c.active and not c.has_license(kind)]
    if inactive:
        raise rules.client_inactive(inactive[0], kind)
    new = [c for c in chosen if not c.has_license(kind)]
    if new:
        _check_room(tenant, entitlements(tenant=tenant, now=now)[PRODUCT], kind, len(new))
    for client in new:
        _set_license(tenant, client, kind, now, actor)
    return chosen


@transaction.atomic
def license_remove(*, tenant: Tenant, client: Client, kind: str, actor: Who) -> Client:
    """Remove AI license / Remove Chat license (L13, L14): at once, audited; nothing to remove:
    nothing changes. Always allowed (a removal resolves an overage)."""
    kind = rules.license_kind(kind)
    _lock_pool(tenant, kind)
    locked = _lock_client(tenant, client.pk)
    if locked.has_license(kind):
        _set_license(tenant, locked, kind, None, actor)
    return locked


@transaction.atomic
def licenses_release_inactive(*, tenant: Tenant, actor: Who) -> int:
    """L20's one click: every license held by an inactive client is removed (audited per client and
    license). Returns how many licenses were removed."""
    removed = 0
    for kind in (LicenseKind.AI, LicenseKind.CHAT):
        _lock_pool(tenant, kind)
    field = {LicenseKind.AI: "ai_license_since__isnull", LicenseKind.CHAT: "chat_license_since__isnull"}
    for kind in (LicenseKind.AI, LicenseKind.CHAT):
        for client in (
            Client.objects.select_for_update()
            .filter(tenant=tenant, status=Client.Status.INACTIVE, **{field[kind]: False})
            .order_by("pk")
        ):
            _set_license(tenant, client, kind, None, actor, reason="inactive client")
            removed += 1
    return removed


# --- tickets (L15, L16) --------------------------------------------------------------------------

MSG_NOT_ACTIVE = "{name} is inactive: its tickets do not get AI."
MSG_NO_CREDITS = (
    "No ticket credits left: they refresh at the start of the next billing cycle. Assign an AI license to "
    "{name}, or upgrade your plan."
)


class _Answered(Exception):
    """The ticket was answered by a request that committed first: roll this attempt back."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer


_LOOKUP_SQL = (
    f"SELECT c.id, c.name, c.status, c.ai_license_since IS NOT NULL, "  # noqa: S608
    f"(SELECT t.response FROM {Ticket._meta.db_table} t WHERE t.tenant_id = c.tenant_id AND t.ticket_id = %s) "
    f"FROM {Client._meta.db_table} c WHERE c.tenant_id = %s AND c.external_id = %s"
)
_RECORD_SQL = (
    f"INSERT INTO {Ticket._meta.db_table} (tenant_id, ticket_id, client_id, via, response, created_at) "  # noqa: S608
    f"VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, ticket_id) DO NOTHING RETURNING id"
)
_ANSWER_SQL = f"SELECT response FROM {Ticket._meta.db_table} WHERE tenant_id = %s AND ticket_id = %s"  # noqa: S608


@dataclass(frozen=True)
class _Found:
    pk: int
    name: str
    active: bool
    ai_license: bool


def _loads(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # SQLite (and jsonb read as text) hands back text
        return json.loads(value)
    return value


def _lookup(tenant: Tenant, client_id: str, ticket_id: str) -> tuple[_Found, dict[str, Any] | None]:
    """The client and the answer its ticket already got, in one plain query (the hot path)."""
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP_SQL, [ticket_id, tenant.pk, client_id])
        row = cursor.fetchone()
    if row is None:
        raise BusinessError("unknown_client", rules.MSG_UNKNOWN_CLIENT, status=404)
    pk, name, status, ai_license, answer = row
    found = _Found(pk, name, status == Client.Status.ACTIVE, bool(ai_license))
    return found, (_loads(answer) if answer is not None else None)


def _record(tenant: Tenant, ticket_id: str, client: _Found, answer: dict[str, Any], now: datetime) -> None:
    """Keep the ticket's answer; a ticket answered meanwhile by another request wins (_Answered)."""
    response = Ticket._meta.get_field("response").get_db_prep_save(answer, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_SQL,
            [
                tenant.pk,
                ticket_id,
                client.pk,
                answer["via"],
                response,
                connection.ops.adapt_datetimefield_value(now),
            ],
        )
        inserted = cursor.fetchone()
        if inserted is None:
            cursor.execute(_ANSWER_SQL, [tenant.pk, ticket_id])
            raise _Answered(_loads(cursor.fetchone()[0]))


def _answer(
    ticket_id: str, client_id: str, *, via: str | None, remaining: int, reason: str = "", message: str = ""
) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "client_id": client_id,
        "ai": via is not None,
        "via": via,
        "reason": reason or None,
        "message": message or None,
        "ticket_credits_remaining": remaining,
    }


def _no_ticket_credits(ticket_id: str, client_id: str, client_name: str) -> dict[str, Any]:
    """The answer to a ticket that no license covers when no ticket credit is left."""
    return _answer(
        ticket_id,
        client_id,
        via=None,
        remaining=0,
        reason="no_ticket_credits",
        message=MSG_NO_CREDITS.format(name=client_name),
    )


def _qualify_in_one_statement(
    *, tenant: Tenant, ticket_id: str, client_id: str, actor: Who, now: datetime
) -> tuple[_Found, dict[str, Any] | None]:
    """PostgreSQL, when the plan admits new work without Unlimited AI access: the client, the
    ticket's first answer and, for an active client without an AI license, the ticket credit, in
    one statement (the function of migration 0004; the credit is credits' own function, in the same
    statement, and the ticket's answer is kept with it). The same outcomes as `_lookup` and the
    plain path below: the answer, or the client (inactive, or licensed) for the caller to answer."""
    credit = credit_services.ticket_credit_args(
        idempotency_key=f"ticket:{ticket_id}", client_id=client_id, actor=actor, now=now
    )
    answer = _answer(ticket_id, client_id, via=Ticket.Via.TICKET_CREDIT, remaining=0)
    del answer["ticket_credits_remaining"]  # the function sets it from the credits left
    # Outside a transaction, its durable procedure: the ticket wallet's lock is released before the
    # WAL flush, and the answer waits for the flush (tenants.durable_call).
    outcome, stored, feature, first_client, _available, pk, name, active, ai_license = (
        db_functions.QUALIFY.call(
            [
                tenant.pk,
                ticket_id,
                client_id,
                Client.Status.ACTIVE,
                now,
                credit.answer,
                json.dumps(answer),
                *credit.actor,
            ]
        )
    )
    if outcome == "unknown_client":
        raise BusinessError("unknown_client", rules.MSG_UNKNOWN_CLIENT, status=404)
    client = _Found(pk, name, active, ai_license)
    if outcome == "not_credit":
        return client, None
    if outcome == "insufficient":
        return client, _no_ticket_credits(ticket_id, client_id, name)
    if outcome == "exists":  # the key was used by another request: nothing was written
        if feature == credit_services.TICKET_FEATURE and first_client:
            # The same ticket for another client, sent at the same moment: the first took the
            # credit (the key) before this one could read the ticket. The ticket's own 409, as it
            # answers once the first's answer is kept.
            _of_client({"client_id": first_client}, client_id)
        raise BusinessError("idempotency_conflict", credit_services.MSG_IDEMPOTENCY_CONFLICT, status=409)
    return client, _loads(stored)  # created, or answered (by this ticket's first request)


def _remaining(tenant: Tenant, now: datetime) -> int:
    return credit_selectors.ticket_credits(tenant_id=tenant.pk, now=now).remaining


def _of_client(answer: dict[str, Any], client_id: str) -> dict[str, Any]:
    """A ticket's first answer, when asked again about the same client; a ticket belongs to one
    client, so the same ticket_id with another is a 409 (nothing changes), as an idempotency key
    sent with another request is."""
    if answer["client_id"] != client_id:
        raise BusinessError(
            "idempotency_conflict",
            rules.MSG_TICKET_OTHER_CLIENT.format(client=answer["client_id"]),
            status=409,
        )
    return answer


def ticket_qualify(
    *,
    tenant: Tenant,
    ticket_id: str,
    client_id: str,
    actor: Who = None,
    now: datetime | None = None,
    versions: Versions | None = None,
) -> dict[str, Any]:
    """Does this ticket get AI? (POST /api/v1/tickets)
    - unknown client: 404 (nothing changes);
    - the plan admits no new work (ended, overdue, none), or the client is inactive: ai false, with
      the reason;
    - the client holds an AI license: via license (L15); Unlimited AI access: via unlimited (L06);
    - otherwise one ticket credit is consumed: via ticket_credit (L16); none left: ai false.
    A ticket that qualified answers its first answer again and never consumes twice (also when the
    same ticket arrives ten times at once); one that did not is asked afresh next time. `versions`:
    the API request's cache versions (the plan may come from the cached entitlements)."""
    ticket_id = rules.clean_ticket_id(ticket_id)
    client_id = rules.clean_external_id(client_id)
    now = now or timezone.now()
    ent = entitlements(tenant=tenant, now=now, versions=versions)[PRODUCT]
    if connection.vendor == "postgresql" and ent.refusal is None and not ent.limits.unlimited_ai:
        client, answered = _qualify_in_one_statement(
            tenant=tenant, ticket_id=ticket_id, client_id=client_id, actor=actor, now=now
        )
    else:
        client, answered = _lookup(tenant, client_id, ticket_id)
    if answered is not None:
        return _of_client(answered, client_id)
    if ent.refusal is not None or not client.active:
        reason, message = (
            (ent.refusal.code, ent.refusal.message)
            if ent.refusal is not None
            else ("client_inactive", MSG_NOT_ACTIVE.format(name=client.name))
        )
        return _answer(
            ticket_id, client_id, via=None, remaining=_remaining(tenant, now), reason=reason, message=message
        )
    try:
        with transaction.atomic():
            if client.ai_license or ent.limits.unlimited_ai:
                via = Ticket.Via.LICENSE if client.ai_license else Ticket.Via.UNLIMITED
                answer = _answer(ticket_id, client_id, via=via, remaining=_remaining(tenant, now))
            else:
                spent = credit_services.ticket_credit_consume(
                    tenant=tenant,
                    idempotency_key=f"ticket:{ticket_id}",
                    client_id=client_id,
                    actor=actor,
                    now=now,
                )
                answer = _answer(
                    ticket_id, client_id, via=Ticket.Via.TICKET_CREDIT, remaining=spent.answer["remaining"]
                )
            _record(tenant, ticket_id, client, answer, now)
    except _Answered as first:
        return _of_client(first.answer, client_id)
    except BusinessError as exc:
        if exc.code == "idempotency_conflict":
            # The same ticket for another client at the same moment took the credit first: its
            # answer is kept with it, and this one gets the ticket's own 409.
            kept = Ticket.objects.filter(tenant=tenant, ticket_id=ticket_id).values_list(
                "response", flat=True
            )
            if kept:
                return _of_client(_loads(kept[0]), client_id)
        if exc.code != "insufficient_credits":
            raise
        return _no_ticket_credits(ticket_id, client_id, client.name)
    return answer


# --- ticket-credit cycles (L17, L18) -------------------------------------------------------------


def ticket_credits_refresh(*, tenant: Tenant, now: datetime | None = None) -> Grant | None:
    """Grant the current billing cycle's ticket credits — three for every license of the plan, AI
    and Chat (entitlements' `ticket_credits`) — valid until the cycle ends, once per cycle (a plan
    change within it tops it up to the new plan's amount). Nothing for a plan that admits no new
    work. billing_portal calls it when a subscription starts or changes; the sweeper at each
    cycle's start."""
    now = now or timezone.now()
    ent = entitlements(tenant=tenant, now=now)[PRODUCT]
    if (
        ent.refusal is not None
        or ent.subscription_id is None
        or ent.limits.ticket_credits <= 0
        or ent.period_start is None
        or ent.period_end is None
        or ent.plan_code is None
    ):
        return None
    return credit_services.ticket_credits_grant_cycle(
        tenant=tenant,
        subscription_id=ent.subscription_id,
        plan=Plan.objects.get(code=ent.plan_code),
        period_start=ent.period_start,
        period_end=ent.period_end,
        credits=ent.limits.ticket_credits,
        now=now,
    )


def ticket_credits_refresh_due(*, now: datetime, limit: int = 1000) -> int:
    """Sweeper (billing_tick, the beat): each Helpdesk AI subscription whose current cycle has no
    ticket-credit grant yet gets it. Safe to run twice: the second run grants nothing. `limit` caps
    the cycles one run grants, not the subscriptions it looks at: the live ones are read in batches
    by id, so those already granted (or refused: an overdue plan) never hide a later one (L18)."""
    live = (
        Subscription.objects.filter(
            product__code=PRODUCT, current_period_start__lte=now, current_period_end__gt=now
        )
        .exclude(state=Subscription.State.EXPIRED)
        .order_by("pk")
    )
    done = after = 0
    while done < limit:
        batch = list(live.filter(pk__gt=after).values_list("pk", "tenant_id", "current_period_start")[:limit])
        if not batch:
            break
        after = batch[-1][0]
        granted = credit_selectors.ticket_cycles_granted(tenant_ids=[t for _, t, _ in batch], now=now)
        for _, tenant_id, start in batch:
            if (tenant_id, start) in granted:
                continue
            with transaction.atomic():
                if ticket_credits_refresh(tenant=Tenant.objects.get(pk=tenant_id), now=now) is not None:
                    done += 1
            if done >= limit:
                break
    return done


def licensing_sweep(*, now: datetime) -> dict[str, int]:
    """Every licensing sweeper once (billing_tick and the beat call them)."""
    return {"ticket_credit_cycles": ticket_credits_refresh_due(now=now)}


__all__: Sequence[str] = (
    "client_create",
    "client_update",
    "client_upsert",
    "license_assign",
    "license_remove",
    "licenses_assign",
    "licenses_release_inactive",
    "ticket_credits_refresh",
    "ticket_qualify",
)


# --- CSV imports -------------------------------------------------------------------------------------

# Files up to this many rows are checked and applied in the request; larger ones by a Celery task,
# with the progress on the page.
IMPORT_INLINE_ROWS = 1000
CHUNK = 1000


def _data_rows(text: str) -> int:
    """About how many rows a file has (its lines less the header), to choose inline or a task."""
    return max(0, text.count("\n") - 1)


@transaction.atomic
def client_import_create(*, tenant: Tenant, filename: str, content: str, actor: User) -> ClientImport:
    """Keep an uploaded file, to be checked (in the request when small, else by a task)."""
    found = ClientImport.objects.create(
        tenant=tenant, created_by=actor, filename=filename[:200], content=content, total=_data_rows(content)
    )
    if found.total > IMPORT_INLINE_ROWS:
        from licensing.tasks import check_client_import

        transaction.on_commit(lambda: check_client_import.delay(found.pk))
    return found


IMPORT_CHANGES_SHOWN = 100  # rows that change a client, listed in the preview (the counts are whole)


def _compare(tenant: Tenant, rows: Sequence[imports.Row]) -> tuple[int, int, int, list[dict[str, Any]]]:
    """(new, updated, unchanged) of the rows against the tenant's clients, and the first rows that
    change a client with what they change (the preview: "what it would add and change")."""
    new = updated = 0
    shown: list[dict[str, Any]] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        existing = {
            c.external_id: c
            for c in Client.objects.filter(
                tenant=tenant, external_id__in=[r.external_id for r in chunk]
            ).only("external_id", *FIELDS)
        }
        for row in chunk:
            client = existing.get(row.external_id)
            if client is None:
                new += 1
            elif changes := _changes(client, row.fields, row.given):
                updated += 1
                if len(shown) < IMPORT_CHANGES_SHOWN:
                    shown.append(
                        {
                            "line": row.line,
                            "client_id": row.external_id,
                            "name": client.name,
                            "changes": changes,
                        }
                    )
    return new, updated, len(rows) - new - updated, shown


def client_import_check(*, import_id: int) -> ClientImport:
    """Check every row of the file (the task's first step, or inline for a small file): the errors
    with their line numbers, and how many clients it would add, change and leave as they are. Its
    progress is committed as it goes (it writes nothing else), so the page can show it."""
    found = ClientImport.objects.get(pk=import_id)
    if found.status != ClientImport.Status.CHECKING:
        return found

    def progress(done: int) -> None:
        ClientImport.objects.filter(pk=import_id).update(processed=done)

    checked = imports.check(found.content, progress=progress if found.total > IMPORT_INLINE_ROWS else None)
    new, updated, unchanged, changes = (
        (0, 0, 0, []) if checked.error_count else _compare(found.tenant, checked.rows)
    )
    ClientImport.objects.filter(pk=import_id, status=ClientImport.Status.CHECKING).update(
        status=ClientImport.Status.INVALID if checked.error_count else ClientImport.Status.READY,
        total=checked.total,
        processed=checked.total,
        errors=checked.errors,
        error_count=checked.error_count,
        new=new,
        updated=updated,
        unchanged=unchanged,
        changes=changes,
        finished_at=timezone.now(),
    )
    found.refresh_from_db()
    return found


MSG_IMPORT_NOT_READY = "This file cannot be imported: it has errors, or it was imported already."


@transaction.atomic
def client_import_start(*, tenant: Tenant, import_id: int, actor: User) -> ClientImport:
    """Import (the preview's button, admins): a small file is applied now; a large one is handed to
    a task and the page shows its progress. A second click finds it importing or imported."""
    found = ClientImport.objects.select_for_update().filter(tenant=tenant, pk=import_id).first()
    if found is None:
        raise BusinessError("not_found", "No import has this id.", status=404)
    if found.status in (ClientImport.Status.APPLYING, ClientImport.Status.APPLIED):
        return found
    if found.status not in (ClientImport.Status.READY, ClientImport.Status.FAILED):
        raise BusinessError("import_not_ready", MSG_IMPORT_NOT_READY, status=409)
    found.status = ClientImport.Status.APPLYING
    found.processed = 0
    found.save(update_fields=["status", "processed"])
    if found.total > IMPORT_INLINE_ROWS:
        from licensing.tasks import apply_client_import

        transaction.on_commit(lambda: apply_client_import.delay(found.pk, actor.pk))
        return found
    return client_import_apply(import_id=found.pk, actor=actor)


@transaction.atomic
def client_import_apply(*, import_id: int, actor: User | None, now: datetime | None = None) -> ClientImport:
    """Apply a checked file as a whole, in one transaction: every row becomes a new client or
    changes one, or — should anything fail — nothing does (nothing is half imported). Audited once,
    with the counts."""
    now = now or timezone.now()
    found = ClientImport.objects.select_for_update().select_related("tenant").get(pk=import_id)
    if found.status != ClientImport.Status.APPLYING:
        return found
    tenant = found.tenant
    checked = imports.check(found.content)
    if checked.error_count:  # checked before; only a changed rule could get here
        found.status = ClientImport.Status.INVALID
        found.errors, found.error_count = checked.errors, checked.error_count
        found.save(update_fields=["status", "errors", "error_count"])
        return found
    new = updated = 0
    for start in range(0, len(checked.rows), CHUNK):
        chunk = checked.rows[start : start + CHUNK]
        existing = {
            c.external_id: c
            for c in Client.objects.select_for_update().filter(
                tenant=tenant, external_id__in=[r.external_id for r in chunk]
            )
        }
        changed: list[Client] = []
        created: list[Client] = []
        for row in chunk:
            client = existing.get(row.external_id)
            if client is None:
                created.append(
                    Client(
                        tenant=tenant,
                        external_id=row.external_id,
                        created_at=now,
                        updated_at=now,
                        **vars(row.fields),
                    )
                )
            elif changes := _changes(client, row.fields, row.given):
                for name in changes:
                    setattr(client, name, getattr(row.fields, name))
                client.updated_at = now
                changed.append(client)
        # A client the API added meanwhile is updated rather than refused, in the file's columns.
        Client.objects.bulk_create(
            created,
            update_conflicts=True,
            unique_fields=["tenant", "external_id"],
            update_fields=[*(n for n in FIELDS if n in checked.columns), "updated_at"],
        )
        Client.objects.bulk_update(changed, [*FIELDS, "updated_at"])
        new, updated = new + len(created), updated + len(changed)
    found.status = ClientImport.Status.APPLIED
    found.processed = checked.total
    found.new, found.updated, found.unchanged = new, updated, len(checked.rows) - new - updated
    found.finished_at = now
    found.save(update_fields=["status", "processed", "new", "updated", "unchanged", "finished_at"])
    audit(
        tenant=tenant,
        actor=actor or SYSTEM,
        action="clients.imported",
        target=found,
        target_label=found.filename or "a CSV file",
        data={"new": new, "updated": updated, "unchanged": found.unchanged},
    )
    return found


def client_import_failed(*, import_id: int, error: str) -> None:
    """The task's apply raised (its transaction rolled back: nothing was imported): say so, so an
    admin may try again."""
    ClientImport.objects.filter(pk=import_id, status=ClientImport.Status.APPLYING).update(
        status=ClientImport.Status.FAILED,
        errors=[{"line": 0, "message": f"The import failed and nothing was imported: {error[:300]}"}],
        finished_at=timezone.now(),
    )

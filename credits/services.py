"""Every write of the credit ledger.

Each write locks the wallet row first (one short transaction; one hot tenant is serialized on its
own wallet, never on a global lock), then checks, then writes grants and append-only entries. An
idempotent operation looks its key up after taking the lock, so a retry that arrives while the
first attempt is still running waits for it and then answers with the first answer. A refused
operation raises BusinessError and, the transaction rolling back, stores nothing — not even its key.

Quantities are integer thousandths of a unit (`plans.money.CREDIT` = 1000 = one credit)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from credits import db_functions
from credits.models import (
    DEFAULT_PRIORITY,
    PLAN_SOURCES,
    TICKET_CYCLE_WITHDRAWAL,
    UNIT_PLURAL,
    Consumption,
    Entry,
    ExtraPack,
    FeatureCost,
    Grant,
    Hold,
    Source,
    Unit,
    Wallet,
)
from credits.selectors import (
    ZERO,
    Figures,
    LowBalance,
    held_in,
    live_q,
    low_balance_candidates,
    open_hold_q,
    summary,
    wallet_figures,
)
from plans.models import Plan
from plans.money import credits_figure, credits_string
from plans.selectors import MSG_ENDED, Refusal, entitlements
from tenants.audit import SYSTEM, Actor, audit
from tenants.cache import Versions
from tenants.errors import BusinessError
from tenants.models import ApiKey, Membership, Notification, Role, Tenant, User
from tenants.notifications import notify

Who = User | ApiKey | Actor | None

# The product whose plan admits new AI-credit work (entitlements' refusal decides).
UNIT_PRODUCT = {Unit.AI_CREDIT: "ai_credits"}


MAX_TTL_SECONDS = 86_400

MSG_IDEMPOTENCY_CONFLICT = "This idempotency key was already used with a different request."


# --- reading under the lock --------------------------------------------------------------------


# Consumption order: plan credits before staff credits before extra packs; within each, the soonest
# expiring first (never-expiring last), then the oldest.
DRAW_ORDER = ("priority", F("expires_at").asc(nulls_last=True), "valid_from", "pk")


@dataclass(frozen=True)
class LiveGrant:
    pk: int
    source: str
    remaining: int


def _grants_and_figures(wallet: Wallet, now: datetime) -> tuple[list[LiveGrant], Figures]:
    """The live grants in draw order and the wallet's figures, in one statement (read after the
    wallet lock, so it sees every write committed before it). Without a live grant the balance is
    0 and nothing can be drawn, whatever is held."""
    held = (
        Hold.objects.filter(open_hold_q(now), wallet=wallet)
        .values("wallet")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    rows = list(
        Grant.objects.filter(live_q(now), wallet=wallet, remaining__gt=0)
        .annotate(held=Coalesce(Subquery(held), 0))
        .order_by(*DRAW_ORDER)
        .values_list("pk", "source", "remaining", "held")
    )
    grants = [LiveGrant(pk, source, remaining) for pk, source, remaining, _ in rows]
    held_total = rows[0][3] if rows else held_in(wallet, now)
    return grants, Figures(balance=sum(g.remaining for g in grants), held=held_total)


def _lock_wallet(tenant: Tenant, unit: str, *, create: bool = False) -> Wallet | None:
    if create:
        # INSERT … ON CONFLICT DO NOTHING: two first grants at once both find the one wallet.
        Wallet.objects.bulk_create([Wallet(tenant=tenant, unit=unit)], ignore_conflicts=True)
    return Wallet.objects.select_for_update().filter(tenant=tenant, unit=unit).first()


def _actor_fields(who: Who) -> dict[str, Any]:
    actor = Actor.of(who)
    return {
        "actor_type": actor.type,
        "actor_user": actor.user,
        "actor_api_key": actor.api_key,
        "actor_label": actor.label[:200],
    }


def _admit(tenant: Tenant, unit: str, now: datetime) -> None:
    """New AI-credit work needs a plan that admits it: expired or no plan → 402 subscription_ended
    (the spec's message), overdue → 402 payment_overdue."""
    product = UNIT_PRODUCT.get(Unit(unit))
    if product is None:
        return
    ent = entitlements(tenant=tenant, now=now).get(product)
    refusal = ent.refusal if ent is not None else None
    if refusal is not None:
        raise _refusal_error(refusal)


def _insufficient(unit: str, need: int, available: int) -> BusinessError:
    return BusinessError(
        "insufficient_credits",
        f"Not enough {UNIT_PLURAL[Unit(unit)]}: {credits_string(need)} needed, {credits_string(available)} available.",
        status=402,
    )


def _draw(grants: Sequence[LiveGrant], amount: int) -> list[tuple[LiveGrant, int]]:
    """Which grants give how much of `amount`, in draw order. The caller has checked there is enough."""
    taken: list[tuple[LiveGrant, int]] = []
    left = amount
    for grant in grants:
        if left == 0:
            break
        take = min(grant.remaining, left)
        if take:
            taken.append((grant, take))
            left -= take
    if left:
        raise AssertionError("drew more than the grants hold")  # the caller checked availability
    return taken


def _move(grant_id: int, delta: int) -> None:
    """Move a grant's remaining; the wallet lock is held, and the check constraints keep
    0 <= remaining <= amount whatever happens."""
    Grant.objects.filter(pk=grant_id).update(remaining=F("remaining") + delta)


def _take_by_adjustment(
    wallet: Wallet, parts: list[tuple[int, int]], *, note: str, who: Who, now: datetime, key: str = ""
) -> list[Entry]:
    """Adjust entries taking `take` from each (grant id, take) of the wallet, and the grants' moves
    (a staff adjustment's take, a cycle's withdrawal). The wallet lock is held."""
    entries = [
        Entry(
            wallet=wallet,
            tenant_id=wallet.tenant_id,
            grant_id=grant_id,
            kind=Entry.Kind.ADJUST,
            quantity=-take,
            idempotency_key=key[:200],
            note=note[:200],
            created_at=now,
            **_actor_fields(who),
        )
        for grant_id, take in parts
    ]
    for entry in entries:
        assert entry.grant_id is not None
        _move(entry.grant_id, entry.quantity)
    Entry.objects.bulk_create(entries)
    return entries


# --- features ----------------------------------------------------------------------------------


def feature_cost(feature: str) -> FeatureCost:
    cost = FeatureCost.objects.filter(feature=feature, active=True).first()
    if cost is None:
        known = ", ".join(FeatureCost.objects.filter(active=True).values_list("feature", flat=True))
        raise BusinessError(
            "unknown_feature", f"Unknown feature {feature!r}. Use one of: {known}.", status=422
        )
    return cost


# --- grants ------------------------------------------------------------------------------------


def _create_grant(
    *,
    wallet: Wallet,
    source: str,
    amount: int,
    valid_from: datetime,
    expires_at: datetime | None,
    reference: str,
    now: datetime,
    who: Who,
    plan: Plan | None = None,
    priority: int | None = None,
    note: str = "",
) -> Grant:
    if amount <= 0:
        raise BusinessError("invalid_amount", "A grant must be of a positive quantity.", status=422)
    if expires_at is not None and expires_at <= valid_from:
        raise BusinessError("invalid_expiry", "A grant must expire after it starts.", status=422)
    grant = Grant.objects.create(
        wallet=wallet,
        tenant_id=wallet.tenant_id,
        source=source,
        priority=DEFAULT_PRIORITY[Source(source)] if priority is None else priority,
        amount=amount,
        remaining=amount,
        valid_from=valid_from,
        expires_at=expires_at,
        reference=reference,
        plan=plan,
        note=note[:200],
        created_at=now,
    )
    Entry.objects.create(
        wallet=wallet,
        tenant_id=wallet.tenant_id,
        grant=grant,
        kind=Entry.Kind.GRANT,
        quantity=amount,
        idempotency_key=reference[:200],
        note=note[:200],
        created_at=now,
        **_actor_fields(who),
    )
    return grant


def _close_grant(grant: Grant, *, now: datetime, who: Who, note: str) -> None:
    """End a live grant now: its remaining leaves the balance with an EXPIRE entry."""
    if grant.remaining:
        Entry.objects.create(
            wallet_id=grant.wallet_id,
            tenant_id=grant.tenant_id,
            grant=grant,
            kind=Entry.Kind.EXPIRE,
            quantity=-grant.remaining,
            note=note[:200],
            created_at=now,
            **_actor_fields(who),
        )
    Grant.objects.filter(pk=grant.pk).update(remaining=0, expires_at=now)
    grant.remaining, grant.expires_at = 0, now


def _end_grant_at(grant: Grant, moment: datetime, *, now: datetime, note: str) -> None:
    """End a grant at `moment`: now (an EXPIRE entry for what is left) when that is already past,
    else by moving its expiry earlier (the sweeper writes the entry when it comes)."""
    if moment <= now:
        if grant.is_live(now):
            _close_grant(grant, now=now, who=SYSTEM, note=note)
        elif grant.valid_from > now:
            Grant.objects.filter(pk=grant.pk).update(expires_at=grant.valid_from)  # never to start
    elif grant.expires_at is None or grant.expires_at > moment:
        Grant.objects.filter(pk=grant.pk).update(expires_at=moment)


@transaction.atomic
def credits_grant(
    *,
    tenant: Tenant,
    unit: str = Unit.AI_CREDIT,
    source: str,
    amount: int,
    valid_from: datetime | None = None,
    expires_at: datetime | None,
    reference: str = "",
    plan: Plan | None = None,
    priority: int | None = None,
    note: str = "",
    actor: Who = None,
    now: datetime | None = None,
) -> Grant:
    """Grant `amount` thousandths. With a `reference` (an invoice, a payment, a cycle) it is made
    once: granting the same reference again returns the first grant."""
    wallet = _lock_wallet(tenant, unit, create=True)
    assert wallet is not None
    now = now or timezone.now()
    if reference:
        existing = Grant.objects.filter(reference=reference).first()
        if existing is not None:
            if existing.wallet_id != wallet.pk:
                raise BusinessError(
                    "reference_taken", "This reference was granted to another wallet.", status=409
                )
            return existing
    grant = _create_grant(
        wallet=wallet,
        source=source,
        amount=amount,
        valid_from=valid_from or now,
        expires_at=expires_at,
        reference=reference,
        now=now,
        who=actor,
        plan=plan,
        priority=priority,
        note=note,
    )
    audit(
        tenant=tenant,
        actor=actor or SYSTEM,
        action="credits.granted",
        target=grant,
        target_label=f"{credits_figure(amount)} {UNIT_PLURAL[Unit(unit)]} ({grant.get_source_display()})",
        data={"source": source, "amount": credits_string(amount), "reference": reference},
    )
    return grant


@transaction.atomic
def credits_grant_plan_period(
    *,
    tenant: Tenant,
    plan: Plan,
    period_start: datetime,
    period_end: datetime,
    reference: str,
    now: datetime | None = None,
    amount: int | None = None,
) -> Grant | None:
    """The credits a plan includes for one period (AI Free: 50 for its 3 months, C05; AI Plus: 2,000
    each monthly period, C06), valid from the period's start to its end, granted once per
    `reference` (the paid invoice, or the free plan's subscription).

    A plan period replaces the plan credits before it:
    - of the same plan, the earlier periods end where this one starts (at renewal the previous
      month's credits expire); a period older than one already granted (a late invoice) ends where
      the newer one starts and never shortens it;
    - of another plan (AI Free when AI Plus starts), what is live when this period is current
      ends then. Gateway period starts are whole seconds, so they are not compared with the
      other plan's start: a Free plan begun a moment later is still the one being replaced.

    `amount` (thousandths): a contract's credits for the period (AI Ultra, C07), instead of the
    plan's `included_credits`."""
    amount = plan.included_credits if amount is None else amount
    if amount <= 0:
        return None
    wallet = _lock_wallet(tenant, Unit.AI_CREDIT, create=True)
    assert wallet is not None
    now = now or timezone.now()
    existing = Grant.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    plan_grants = Grant.objects.filter(wallet=wallet, source__in=PLAN_SOURCES)
    same_plan = plan_grants.filter(plan=plan)
    renewal = same_plan.filter(valid_from__lt=period_start).exists()
    newer_start = (
        same_plan.filter(valid_from__gt=period_start)
        .order_by("valid_from")
        .values_list("valid_from", flat=True)
        .first()
    )
    expires_at = min(period_end, newer_start) if newer_start else period_end
    if expires_at <= period_start:
        return None  # wholly covered by a newer period: nothing of it was ever usable
    label = f"{plan.name} · {period_start:%-d %b %Y} to {period_end:%-d %b %Y}"
    grant = _create_grant(
        wallet=wallet,
        source=Source.PLAN_RENEWAL if renewal else Source.PLAN_INCLUDED,
        amount=amount,
        valid_from=period_start,
        expires_at=expires_at,
        reference=reference,
        now=now,
        who=SYSTEM,
        plan=plan,
        note=label,
    )
    unexpired = live_q(now) | Q(valid_from__gt=now)
    replaced = list(same_plan.filter(unexpired, valid_from__lte=period_start).exclude(pk=grant.pk))
    if expires_at > now:  # this period is current (or to come): other plans' credits give way
        replaced += list(plan_grants.filter(unexpired).exclude(plan=plan))
    for older in replaced:
        _end_grant_at(older, max(period_start, older.valid_from), now=now, note=f"Replaced by {label}")
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="credits.granted",
        target=grant,
        target_label=f"{credits_figure(amount)} AI credits ({label})",
        data={"source": grant.source, "amount": credits_string(amount), "reference": reference},
    )
    return grant


@transaction.atomic
def credits_grant_extra_pack(
    *,
    tenant: Tenant,
    pack: ExtraPack,
    reference: str,
    credits: int | None = None,
    validity_days: int | None = None,
    actor: Who = None,
    now: datetime | None = None,
) -> Grant:
    """The credits of a paid extra pack, valid its validity (30 days, C13) from now; once per
    payment (`reference`, e.g. "invoice:in_…"). `credits` (thousandths) and `validity_days` are
    what was bought when the caller kept them; the pack's current definition otherwise."""
    now = now or timezone.now()
    return credits_grant(
        tenant=tenant,
        source=Source.EXTRA_PACK,
        amount=pack.credits if credits is None else credits,
        valid_from=now,
        expires_at=now + timedelta(days=pack.validity_days if validity_days is None else validity_days),
        reference=reference,
        note=pack.name,
        actor=actor,
        now=now,
    )


# --- staff -------------------------------------------------------------------------------------


@transaction.atomic
def credits_adjust(
    *,
    tenant: Tenant,
    unit: str = Unit.AI_CREDIT,
    amount: int,
    reason: str,
    actor: User,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> list[Entry] | Grant:
    """A staff adjustment (audited): a positive amount is a new grant (source staff adjustment);
    a negative one takes that much from the live grants in draw order, all or nothing."""
    reason = reason.strip()
    if not reason:
        raise BusinessError("reason_required", "Say why the credits are adjusted.", status=422)
    if amount == 0:
        raise BusinessError("invalid_amount", "Adjust by a non-zero quantity.", status=422)
    if amount > 0:
        grant = credits_grant(
            tenant=tenant,
            unit=unit,
            source=Source.STAFF_ADJUSTMENT,
            amount=amount,
            expires_at=expires_at,
            note=reason,
            actor=actor,
            now=now,
        )
        audit(
            tenant=tenant,
            actor=actor,
            action="credits.adjusted",
            target=grant,
            data={"amount": credits_string(amount), "reason": reason, "unit": str(unit)},
        )
        return grant
    wallet = _lock_wallet(tenant, unit)
    now = now or timezone.now()
    grants, found = _grants_and_figures(wallet, now) if wallet is not None else ([], ZERO)
    if -amount > found.available:
        # Credit reserved by open holds is not staff's to take: the hold's commit must find it.
        raise BusinessError(
            "insufficient_credits",
            f"Cannot take {credits_string(-amount)} {UNIT_PLURAL[Unit(unit)]}: only "
            f"{credits_string(found.available)} available (balance {credits_string(found.balance)}, "
            f"{credits_string(found.held)} held by open holds).",
            status=402,
        )
    assert wallet is not None
    entries = _take_by_adjustment(
        wallet, [(grant.pk, take) for grant, take in _draw(grants, -amount)], note=reason, who=actor, now=now
    )
    audit(
        tenant=tenant,
        actor=actor,
        action="credits.adjusted",
        target=wallet,
        data={"amount": credits_string(amount), "reason": reason, "unit": str(unit)},
    )
    return entries


@transaction.atomic
def credits_grant_deactivate(*, grant: Grant, actor: User, reason: str, now: datetime | None = None) -> Grant:
    """Package deactivation by platform staff (C20; never self-service): the grant ends now and its
    remaining credit leaves the balance. Idempotent: an ended grant stays as it is."""
    locked = _lock_wallet(grant.tenant, Wallet.objects.values_list("unit", flat=True).get(pk=grant.wallet_id))
    assert locked is not None
    now = now or timezone.now()
    grant = Grant.objects.select_related("tenant").get(pk=grant.pk)
    if grant.deactivated_at is not None or not grant.is_live(now):
        return grant
    _close_grant(grant, now=now, who=actor, note=f"Deactivated by staff: {reason}"[:200])
    Grant.objects.filter(pk=grant.pk).update(deactivated_at=now)
    grant.deactivated_at = now
    audit(
        tenant=grant.tenant,
        actor=actor,
        action="credits.package_deactivated",
        target=grant,
        data={"source": grant.source, "reason": reason},
    )
    return grant


# --- consumption -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """An answer of an idempotent operation: `created` False when it repeats the first answer."""

    answer: dict[str, Any]
    created: bool


def _key_owner(wallet: Wallet, key: str) -> tuple[str, int] | None:
    """What this idempotency key already names in the wallet: ("consumption", id), ("hold", id) or
    None, in one statement over both tables (one key names one operation)."""
    consumption = Consumption.objects.filter(wallet=wallet, idempotency_key=key).values_list(
        Value("consumption"), "pk"
    )
    hold = Hold.objects.filter(wallet=wallet, idempotency_key=key).values_list(Value("hold"), "pk")
    found = list(consumption.union(hold, all=True)[:1])
    return (found[0][0], found[0][1]) if found else None


def credits_consume(
    *,
    tenant: Tenant,
    feature: str,
    quantity: int,
    idempotency_key: str,
    client_id: str = "",
    actor: Who = None,
    now: datetime | None = None,
    versions: Versions | None = None,
) -> Outcome:
    """Take the cost of `quantity` uses of `feature` from the tenant's live grants, all or nothing:
    plan credits before extra packs, each soonest-expiring first. The same key again answers the
    first answer (also while the first is still running: it waits for the wallet lock); the same
    key with another request is a 409; a refusal stores nothing. `versions`: the API request's cache
    versions (the plan's refusal may come from the cached entitlements).

    On PostgreSQL it is one statement, its own transaction (the function of migration 0003); the
    embedded SQLite default runs the same rules statement by statement."""
    if quantity < 1:
        raise BusinessError("invalid_quantity", "quantity must be at least 1.", status=422)
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        return _consume_in_one_statement(
            tenant=tenant, feature=feature, quantity=quantity, idempotency_key=idempotency_key,
            client_id=client_id, actor=actor, now=now, versions=versions,
        )  # fmt: skip
    return _consume_plain(
        tenant=tenant, feature=feature, quantity=quantity, idempotency_key=idempotency_key,
        client_id=client_id, actor=actor, now=now,
    )  # fmt: skip


def _refusal_error(refusal: Refusal) -> BusinessError:
    if refusal.code == "payment_overdue":
        return BusinessError(refusal.code, refusal.message, status=402)
    return BusinessError("subscription_ended", MSG_ENDED, status=402)


def _consume_in_one_statement(
    *,
    tenant: Tenant,
    feature: str,
    quantity: int,
    idempotency_key: str,
    client_id: str,
    actor: Who,
    now: datetime,
    versions: Versions | None,
) -> Outcome:
    ent = entitlements(tenant=tenant, now=now, versions=versions)
    # The plan's refusal (as `_admit`), checked by the function after the idempotency key.
    refused = {
        unit.value: refusal
        for unit, product in UNIT_PRODUCT.items()
        if (found := ent.get(product)) is not None and (refusal := found.refusal) is not None
    }
    refused_unit = next(iter(refused), None)
    who = Actor.of(actor)
    known = {"feature": feature, "quantity": quantity, "idempotency_key": idempotency_key}
    answer = {**known, "client_id": client_id or None, "created_at": now.isoformat()}
    # Outside a transaction, its durable procedure: the wallet's lock is released before the WAL
    # flush, and the answer waits for the flush (tenants.durable_call).
    args = [tenant.pk, feature, quantity, idempotency_key, client_id, now, refused_unit, json.dumps(answer),
            who.type, who.user.pk if who.user else None, who.api_key.pk if who.api_key else None,
            who.label[:200]]  # fmt: skip
    outcome, unit, amount, available, stored, hold_id, first_feature, first_quantity, first_client = (
        db_functions.CONSUME.call(args)
    )
    if outcome == "created":
        return Outcome(json.loads(stored), created=True)
    if outcome == "exists":
        if (hold_id, first_feature, first_quantity, first_client) != (None, feature, quantity, client_id):
            raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
        return Outcome(json.loads(stored), created=False)
    if outcome == "conflict":
        raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
    if outcome == "unknown_feature":
        feature_cost(feature)  # raises with the features there are
    if outcome == "refused":
        raise _refusal_error(refused[unit])
    assert outcome == "insufficient", outcome
    raise _insufficient(unit, int(amount), available)


@transaction.atomic
def _consume_plain(
    *,
    tenant: Tenant,
    feature: str,
    quantity: int,
    idempotency_key: str,
    client_id: str,
    actor: Who,
    now: datetime,
) -> Outcome:
    cost = feature_cost(feature)
    amount = cost.cost * quantity
    wallet = _lock_wallet(tenant, cost.unit)
    owner = _key_owner(wallet, idempotency_key) if wallet is not None else None
    if owner is not None:
        table, pk = owner
        first = Consumption.objects.get(pk=pk) if table == "consumption" else None
        if first is None or (first.hold_id, first.feature, first.quantity, first.client_id) != (
            None,
            feature,
            quantity,
            client_id,
        ):
            raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
        return Outcome(first.response, created=False)
    _admit(tenant, cost.unit, now)
    if wallet is None:
        raise _insufficient(cost.unit, amount, 0)
    grants, figures = _grants_and_figures(wallet, now)
    if amount > figures.available:
        raise _insufficient(cost.unit, amount, figures.available)
    drawn = _draw(grants, amount)
    after = Figures(balance=figures.balance - amount, held=figures.held)
    answer = {
        "consumed": credits_string(amount),
        "feature": feature,
        "quantity": quantity,
        "idempotency_key": idempotency_key,
        "client_id": client_id or None,
        **after.as_strings(),
        "grants": [
            {"grant_id": g.pk, "source": g.source, "credits": credits_string(take)} for g, take in drawn
        ],
        "created_at": now.isoformat(),
    }
    who = _actor_fields(actor)
    consumption = Consumption.objects.create(
        wallet=wallet,
        tenant=tenant,
        idempotency_key=idempotency_key,
        feature=feature,
        quantity=quantity,
        amount=amount,
        client_id=client_id,
        created_at=now,
        response=answer,
        **who,
    )
    for grant, take in drawn:
        _move(grant.pk, -take)
    Entry.objects.bulk_create(
        Entry(
            wallet=wallet,
            tenant=tenant,
            grant_id=grant.pk,
            kind=Entry.Kind.CONSUME,
            quantity=-take,
            feature=feature,
            client_id=client_id,
            idempotency_key=idempotency_key,
            consumption=consumption,
            created_at=now,
            **who,
        )
        for grant, take in drawn
    )
    return Outcome(answer, created=True)


@transaction.atomic
def credits_refund(
    *,
    tenant: Tenant,
    idempotency_key: str,
    unit: str = Unit.AI_CREDIT,
    actor: Who = None,
    now: datetime | None = None,
) -> Outcome:
    """Give a consumption's credits back to the grants they came from; what came from a grant that
    has expired since stays expired. Once: a second refund answers the first refund's answer."""
    wallet = _lock_wallet(tenant, unit)
    now = now or timezone.now()
    consumption = (
        Consumption.objects.filter(wallet=wallet, idempotency_key=idempotency_key).first()
        if wallet is not None
        else None
    )
    if consumption is None:
        raise BusinessError("not_found", "No consumption has this idempotency key.", status=404)
    if consumption.refunded_at is not None:
        assert consumption.refund_response is not None
        return Outcome(consumption.refund_response, created=False)
    assert wallet is not None
    taken: dict[int, int] = {}
    for grant_id, quantity in consumption.entries.filter(
        kind__in=[Entry.Kind.CONSUME, Entry.Kind.COMMIT]
    ).values_list("grant_id", "quantity"):
        taken[grant_id] = taken.get(grant_id, 0) - quantity
    live = set(Grant.objects.filter(live_q(now), pk__in=taken).values_list("pk", flat=True))
    who = _actor_fields(actor)
    entries = [
        Entry(
            wallet=wallet,
            tenant=tenant,
            grant_id=grant_id,
            kind=Entry.Kind.REFUND,
            quantity=amount,
            feature=consumption.feature,
            client_id=consumption.client_id,
            idempotency_key=idempotency_key,
            consumption=consumption,
            created_at=now,
            **who,
        )
        for grant_id, amount in sorted(taken.items())
        if grant_id in live and amount > 0
    ]
    for entry in entries:
        assert entry.grant_id is not None
        _move(entry.grant_id, entry.quantity)
    Entry.objects.bulk_create(entries)
    refunded = sum(e.quantity for e in entries)
    answer = {
        "refunded": credits_string(refunded),
        "expired": credits_string(consumption.amount - refunded),
        "idempotency_key": idempotency_key,
        **wallet_figures(wallet, now).as_strings(),
        "refunded_at": now.isoformat(),
    }
    Consumption.objects.filter(pk=consumption.pk).update(
        refunded_at=now, refunded_amount=refunded, refund_response=answer
    )
    return Outcome(answer, created=True)


# --- holds -------------------------------------------------------------------------------------


def _hold_answer(hold: Hold, figures: Figures) -> dict[str, Any]:
    return {
        "id": hold.pk,
        "idempotency_key": hold.idempotency_key,
        "feature": hold.feature or None,
        "quantity": hold.quantity,
        "client_id": hold.client_id or None,
        "credits": credits_string(hold.amount),
        "status": Hold.Status(hold.status).value,
        "expires_at": hold.expires_at.isoformat(),
        **figures.as_strings(),
    }


@transaction.atomic
def credits_hold(
    *,
    tenant: Tenant,
    idempotency_key: str,
    feature: str | None = None,
    quantity: int | None = None,
    amount: int | None = None,
    ttl_seconds: int | None = None,
    client_id: str = "",
    actor: Who = None,
    now: datetime | None = None,
) -> Outcome:
    """Reserve credit for work whose cost is known only afterwards: `feature` times `quantity`, or
    `amount` thousandths. All or nothing against the available credit; it lapses after
    `ttl_seconds` (1 to 86,400, default 900). Idempotent like a consumption."""
    ttl = settings.CREDITS_HOLD_TTL_DEFAULT if ttl_seconds is None else ttl_seconds
    if not 1 <= ttl <= MAX_TTL_SECONDS:
        raise BusinessError("invalid_ttl", "ttl_seconds must be between 1 and 86400.", status=422)
    if (feature is None) == (amount is None):
        raise BusinessError("invalid_request", "Send either feature and quantity, or credits.", status=422)
    if feature is not None:
        if quantity is None:
            raise BusinessError(
                "quantity_required",
                "quantity is required with feature: how many uses to hold for.",
                status=422,
            )
        if quantity < 1:
            raise BusinessError("invalid_quantity", "quantity must be at least 1.", status=422)
        cost = feature_cost(feature)
        unit, need = cost.unit, cost.cost * quantity
    else:
        assert amount is not None
        if quantity is not None:
            raise BusinessError(
                "invalid_request", "quantity goes with feature, not with credits.", status=422
            )
        if amount <= 0:
            raise BusinessError("invalid_amount", "credits must be more than 0.", status=422)
        unit, need = Unit.AI_CREDIT, amount
    wallet = _lock_wallet(tenant, unit)
    now = now or timezone.now()
    if wallet is not None:
        first = Hold.objects.filter(wallet=wallet, idempotency_key=idempotency_key).first()
        if first is not None:
            # By feature, the request is the feature and quantity (a cost changed since is no new
            # request); by credits, it is the amount.
            same = (
                first.feature,
                first.quantity,
                first.amount if amount is not None else None,
                first.client_id,
                first.ttl_seconds,
            ) == (feature or "", quantity, amount, client_id, ttl)
            if not same:
                raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
            return Outcome(first.response, created=False)
        if Consumption.objects.filter(wallet=wallet, idempotency_key=idempotency_key).exists():
            raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
    _admit(tenant, unit, now)
    if wallet is None:
        raise _insufficient(unit, need, 0)
    figures = wallet_figures(wallet, now)
    if need > figures.available:
        raise _insufficient(unit, need, figures.available)
    who = _actor_fields(actor)
    hold = Hold.objects.create(
        wallet=wallet,
        tenant=tenant,
        idempotency_key=idempotency_key,
        feature=feature or "",
        quantity=quantity,
        amount=need,
        client_id=client_id,
        ttl_seconds=ttl,
        expires_at=now + timedelta(seconds=ttl),
        created_at=now,
        **who,
    )
    answer = _hold_answer(hold, Figures(balance=figures.balance, held=figures.held + need))
    Hold.objects.filter(pk=hold.pk).update(response=answer)
    Entry.objects.create(
        wallet=wallet,
        tenant=tenant,
        kind=Entry.Kind.HOLD,
        quantity=-need,
        feature=feature or "",
        client_id=client_id,
        idempotency_key=idempotency_key,
        hold=hold,
        created_at=now,
        **who,
    )
    return Outcome(answer, created=True)


def _locked_hold(tenant: Tenant, hold_id: int) -> tuple[Wallet, Hold]:
    unit = Hold.objects.filter(pk=hold_id, tenant=tenant).values_list("wallet__unit", flat=True).first()
    if unit is None:
        raise BusinessError("not_found", "No hold has this id.", status=404)
    wallet = _lock_wallet(tenant, unit)
    assert wallet is not None
    return wallet, Hold.objects.get(pk=hold_id, wallet=wallet)


def _release_entry(hold: Hold, wallet: Wallet, *, now: datetime, who: Who, note: str) -> Entry:
    return Entry(
        wallet=wallet,
        tenant_id=wallet.tenant_id,
        kind=Entry.Kind.RELEASE,
        quantity=hold.amount,
        feature=hold.feature,
        client_id=hold.client_id,
        idempotency_key=hold.idempotency_key,
        hold=hold,
        note=note,
        created_at=now,
        **_actor_fields(who),
    )


def _expire_hold(hold: Hold, wallet: Wallet, *, now: datetime) -> None:
    _release_entry(hold, wallet, now=now, who=SYSTEM, note="expired").save()
    Hold.objects.filter(pk=hold.pk).update(status=Hold.Status.EXPIRED, resolved_at=now)
    hold.status, hold.resolved_at = Hold.Status.EXPIRED, now


MSG_HOLD_EXPIRED = "This hold expired: its credits were released. Place a new hold."
MSG_HOLD_RELEASED = "This hold was released: it can no longer be committed."
MSG_HOLD_COMMITTED = "This hold was committed: it can no longer be released."


@transaction.atomic
def credits_hold_commit(
    *, tenant: Tenant, hold_id: int, amount: int | None = None, actor: Who = None, now: datetime | None = None
) -> Outcome:
    """Consume the actual cost of held work (at most the hold; the whole hold when `amount` is
    None) from the live grants in draw order, and release the rest. A repeated commit answers the
    first commit's answer."""
    wallet, hold = _locked_hold(tenant, hold_id)
    now = now or timezone.now()
    if hold.status == Hold.Status.COMMITTED:
        # A repeat is the same commit: without an amount it asks for the whole hold, so after a
        # partial commit it is another request (409), as an explicit amount that differs is.
        if (hold.amount if amount is None else amount) != hold.committed_amount:
            raise BusinessError(
                "hold_committed",
                f"This hold was already committed for {credits_string(hold.committed_amount or 0)} credits.",
                status=409,
            )
        assert hold.resolve_response is not None
        return Outcome(hold.resolve_response, created=False)
    if hold.status == Hold.Status.RELEASED:
        raise BusinessError("hold_released", MSG_HOLD_RELEASED, status=409)
    if hold.status == Hold.Status.EXPIRED or hold.expires_at <= now:
        raise BusinessError("hold_expired", MSG_HOLD_EXPIRED, status=409)
    actual = hold.amount if amount is None else amount
    if actual < 0 or actual > hold.amount:
        raise BusinessError(
            "commit_exceeds_hold",
            f"Commit at most the {credits_string(hold.amount)} credits held.",
            status=422,
        )
    grants, figures = _grants_and_figures(wallet, now)
    # What this hold may draw: everything not reserved by the other open holds. Less than the hold
    # only when grants expired while it was open (expired credit is never consumed).
    may_draw = max(0, figures.balance - (figures.held - hold.amount))
    if actual > may_draw:
        raise _insufficient(wallet.unit, actual, may_draw)
    drawn = _draw(grants, actual)
    after = Figures(balance=figures.balance - actual, held=figures.held - hold.amount)
    answer = {
        "id": hold.pk,
        "idempotency_key": hold.idempotency_key,
        "status": Hold.Status.COMMITTED.value,
        "credits": credits_string(hold.amount),
        "committed": credits_string(actual),
        "released": credits_string(hold.amount - actual),
        **after.as_strings(),
        "grants": [
            {"grant_id": g.pk, "source": g.source, "credits": credits_string(take)} for g, take in drawn
        ],
    }
    who = _actor_fields(actor)
    consumption = Consumption.objects.create(
        wallet=wallet,
        tenant=tenant,
        idempotency_key=hold.idempotency_key,
        feature=hold.feature,
        quantity=hold.quantity if actual == hold.amount else None,
        amount=actual,
        client_id=hold.client_id,
        hold=hold,
        created_at=now,
        response=answer,
        **who,
    )
    for grant, take in drawn:
        _move(grant.pk, -take)
    Entry.objects.bulk_create(
        [
            _release_entry(hold, wallet, now=now, who=actor, note="committed"),
            *(
                Entry(
                    wallet=wallet,
                    tenant=tenant,
                    grant_id=grant.pk,
                    kind=Entry.Kind.COMMIT,
                    quantity=-take,
                    feature=hold.feature,
                    client_id=hold.client_id,
                    idempotency_key=hold.idempotency_key,
                    consumption=consumption,
                    hold=hold,
                    created_at=now,
                    **who,
                )
                for grant, take in drawn
            ),
        ]
    )
    Hold.objects.filter(pk=hold.pk).update(
        status=Hold.Status.COMMITTED, committed_amount=actual, resolved_at=now, resolve_response=answer
    )
    return Outcome(answer, created=True)


@transaction.atomic
def credits_hold_release(
    *, tenant: Tenant, hold_id: int, actor: Who = None, now: datetime | None = None
) -> Outcome:
    """Give back held credit unused. Releasing again answers the same; a hold that expired has
    released itself (answered as such); a committed hold cannot be released (409)."""
    wallet, hold = _locked_hold(tenant, hold_id)
    now = now or timezone.now()
    if hold.status == Hold.Status.COMMITTED:
        raise BusinessError("hold_committed", MSG_HOLD_COMMITTED, status=409)
    if hold.status == Hold.Status.RELEASED:
        assert hold.resolve_response is not None
        return Outcome(hold.resolve_response, created=False)
    created = True
    if hold.status == Hold.Status.EXPIRED:
        created = False
    elif hold.expires_at <= now:
        _expire_hold(hold, wallet, now=now)  # what the sweeper would have written
    else:
        _release_entry(hold, wallet, now=now, who=actor, note="released").save()
        hold.status = Hold.Status.RELEASED
        Hold.objects.filter(pk=hold.pk).update(status=hold.status, resolved_at=now)
    answer = {
        "id": hold.pk,
        "idempotency_key": hold.idempotency_key,
        "status": Hold.Status(hold.status).value,
        "credits": credits_string(hold.amount),
        "released": credits_string(hold.amount),
        **wallet_figures(wallet, now).as_strings(),
    }
    if hold.status == Hold.Status.RELEASED:
        Hold.objects.filter(pk=hold.pk).update(resolve_response=answer)
    return Outcome(answer, created=created)


# --- sweepers ------------------------------------------------------------------------------------


def _by_wallet(ids: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for wallet_id, pk in ids:
        grouped.setdefault(wallet_id, []).append(pk)
    return grouped


def grants_expire_due(*, now: datetime, limit: int = 1000) -> int:
    """Sweeper: an EXPIRE entry for what is left of each grant past its expiry (extra packs after
    30 days, plan credits at renewal, AI Free after 3 months). The balance stopped counting them
    at the moment they expired; this writes down why. Each grant past its expiry is then marked
    swept (one used up before it expired too, with no entry), so the next run reads only grants
    still to sweep. Safe to run twice. Returns the EXPIRE entries written."""
    due = Grant.objects.filter(swept_at__isnull=True, expires_at__lte=now).order_by("expires_at")
    done = 0
    for wallet_id, ids in _by_wallet(due.values_list("wallet_id", "pk")[:limit]).items():
        with transaction.atomic():
            Wallet.objects.select_for_update().filter(pk=wallet_id).first()
            for grant in Grant.objects.filter(pk__in=ids, swept_at__isnull=True, expires_at__lte=now):
                if grant.remaining > 0:
                    Entry.objects.create(
                        wallet_id=wallet_id,
                        tenant_id=grant.tenant_id,
                        grant=grant,
                        kind=Entry.Kind.EXPIRE,
                        quantity=-grant.remaining,
                        note="expired",
                        created_at=now,
                    )
                    done += 1
                Grant.objects.filter(pk=grant.pk).update(remaining=0, swept_at=now)
    return done


def holds_expire_due(*, now: datetime, limit: int = 1000) -> int:
    """Sweeper: open holds past their expiry release themselves (a RELEASE entry). The figures
    stopped counting them at the moment they expired."""
    due = Hold.objects.filter(status=Hold.Status.HELD, expires_at__lte=now).order_by("expires_at")
    done = 0
    for wallet_id, ids in _by_wallet(due.values_list("wallet_id", "pk")[:limit]).items():
        with transaction.atomic():
            wallet = Wallet.objects.select_for_update().filter(pk=wallet_id).first()
            assert wallet is not None
            for hold in Hold.objects.filter(pk__in=ids, status=Hold.Status.HELD, expires_at__lte=now):
                _expire_hold(hold, wallet, now=now)
                done += 1
    return done


def low_balance_notify_due(*, now: datetime) -> int:
    """Sweeper: the low-balance email to the admins of each tenant whose AI credits run low, once
    per plan period (the notification log's key names the period's grant)."""
    sent = 0
    for candidate in low_balance_candidates(now=now):
        with transaction.atomic():
            sent += _notify_low_balance(candidate, now=now)
    return sent


def _notify_low_balance(candidate: LowBalance, *, now: datetime) -> int:
    """The email says what the AI Credits page and the sidebar say, from the same one-query
    summary: the available credits (balance less what open holds reserve), the held ones as the
    page words them, and the period's use. It is sent only when that summary runs low
    (`balance_runs_low`, the sidebar's rule): the candidates' SQL finds tenants per plan grant, and
    the summary, which sums the period's plan grants, is the one that decides."""
    emails = list(
        Membership.objects.filter(tenant_id=candidate.tenant_id, role=Role.ADMIN)
        .order_by("pk")
        .values_list("user__email", flat=True)
    )
    keys = {
        email: f"credits-low:{candidate.tenant_id}:{candidate.period_grant_id}:{email}" for email in emails
    }
    done = set(Notification.objects.filter(key__in=keys.values()).values_list("key", flat=True))
    owed = [email for email, key in keys.items() if key not in done]
    if not owed:
        return 0
    found = summary(tenant_id=candidate.tenant_id, now=now)
    if not found.runs_low:
        return 0
    tenant = Tenant.objects.get(pk=candidate.tenant_id)
    queued = 0
    for email in owed:
        if notify(
            key=keys[email],
            tenant=tenant,
            to=email,
            template="credits_low",
            context={
                "tenant": tenant,
                "available": found.available,  # thousandths, as the page's "Available"
                "held": found.held,  # thousandths, the page's "Reserved by work in progress"
                "period_amount": found.period_amount,
                "period_used": found.period_used,
                "period_used_share": found.period_used_share,
                "period_end": candidate.period_end,
            },
        ):
            queued += 1
    return 1 if queued else 0


def credits_sweep(*, now: datetime) -> dict[str, int]:
    """Every credits sweeper once (billing_tick and the beat call them)."""
    return {
        "credit_grants_expired": grants_expire_due(now=now),
        "credit_holds_expired": holds_expire_due(now=now),
        "credit_low_balance_emails": low_balance_notify_due(now=now),
    }


# --- ticket credits (Helpdesk AI: L16 to L18) ---------------------------------------------------
# A ticket credit is spent whole: one per ticket of a client without an AI license. The cycle's
# grant is made by `licensing` (asked by billing_portal's subscription sync and the sweeper) with
# the amount the plan's entitlements give; this ledger makes it once per cycle and spends it.

TICKET_CREDIT = 1000  # thousandths in one ticket credit
TICKET_FEATURE = "ticket"  # the consumption's feature: one ticket


def _cycle_prefix(subscription_id: int, period_start: datetime) -> str:
    return f"ticket-cycle:{subscription_id}:{int(period_start.timestamp())}:"


def ticket_cycle_reference(*, subscription_id: int, period_start: datetime, plan_code: str) -> str:
    """The grant's reference: one per subscription, cycle (its start) and plan."""
    return f"{_cycle_prefix(subscription_id, period_start)}{plan_code}"


@transaction.atomic
def ticket_credits_grant_cycle(
    *,
    tenant: Tenant,
    subscription_id: int,
    plan: Plan,
    period_start: datetime,
    period_end: datetime,
    credits: int,
    now: datetime | None = None,
) -> Grant | None:
    """One billing cycle's ticket credits (L17, L18): the cycle's allowance is `credits` whole ticket
    credits, valid from the cycle's start until its end. The first call for a cycle grants it; a
    plan change within the cycle brings the allowance to the new plan's — an upgrade grants the
    difference, a downgrade withdraws what is left beyond it (never what was already used: the
    remaining goes to the new allowance less the cycle's use, or to nothing). Calling it again for
    the same plan changes nothing (it compares the cycle with the plan under the wallet's lock).
    Returns the grant it made, if any. A cycle that has ended is never granted."""
    now = now or timezone.now()
    if credits <= 0 or period_end <= period_start or period_end <= now:
        return None
    wallet = _lock_wallet(tenant, Unit.TICKET_CREDIT, create=True)
    assert wallet is not None
    prefix = _cycle_prefix(subscription_id, period_start)
    cycle = list(
        Grant.objects.filter(
            wallet=wallet, source=Source.TICKET_CYCLE, reference__startswith=prefix
        ).order_by("pk")
    )
    withdrawn = -(
        Entry.objects.filter(
            wallet=wallet,
            kind=Entry.Kind.ADJUST,
            grant__in=[g.pk for g in cycle],
            idempotency_key__startswith=TICKET_CYCLE_WITHDRAWAL,
        ).aggregate(s=Sum("quantity"))["s"]
        or 0
    )
    allowance = sum(g.amount for g in cycle) - withdrawn
    target = credits * TICKET_CREDIT
    label = f"{plan.name} · {period_start:%-d %b %Y} to {period_end:%-d %b %Y}"
    if target < allowance:
        _ticket_cycle_withdraw(tenant, wallet, cycle, min(allowance - target, sum(g.remaining for g in cycle)),
                               prefix=prefix, plan=plan, label=label, now=now)  # fmt: skip
        return None
    if target == allowance:
        return None
    reference = ticket_cycle_reference(
        subscription_id=subscription_id, period_start=period_start, plan_code=plan.code
    )
    if any(g.reference == reference for g in cycle):  # back on a plan the cycle had: its own reference
        reference = f"{reference}#{len(cycle)}"
    top_up = target - allowance
    grant = _create_grant(
        wallet=wallet,
        source=Source.TICKET_CYCLE,
        amount=top_up,
        valid_from=period_start,
        expires_at=period_end,
        reference=reference,
        now=now,
        who=SYSTEM,
        plan=plan,
        note=label if not cycle else f"{label} (plan changed)",
    )
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="credits.granted",
        target=grant,
        target_label=f"{credits_figure(top_up)} ticket credits ({label})",
        data={"source": grant.source, "amount": credits_string(top_up), "reference": reference},
    )
    return grant


def _ticket_cycle_withdraw(
    tenant: Tenant, wallet: Wallet, cycle: list[Grant], take: int, *, prefix: str, plan: Plan, label: str,
    now: datetime,
) -> None:  # fmt: skip
    """Withdraw `take` of the cycle's remaining ticket credits (a downgrade within the cycle): adjust
    entries on the cycle's grants, keyed so the cycle's allowance can be told from its use."""
    if take <= 0:
        return
    parts: list[tuple[int, int]] = []
    left = take
    for grant in reversed(cycle):  # the latest top-up first: the plan's change that made it
        if (part := min(grant.remaining, left)) > 0:
            parts.append((grant.pk, part))
            left -= part
    _take_by_adjustment(
        wallet,
        parts,
        note=f"{label}: plan changed, ticket credits beyond the plan's withdrawn",
        who=SYSTEM,
        now=now,
        key=f"{TICKET_CYCLE_WITHDRAWAL}{prefix}{plan.code}",
    )
    audit(
        tenant=tenant,
        actor=SYSTEM,
        action="credits.withdrawn",
        target=wallet,
        target_label=f"{credits_figure(take)} ticket credits ({label})",
        data={"amount": credits_string(take), "reason": "plan changed within the cycle"},
    )


# The ticket hot path in plain statements (DESIGN "The hot path": the ORM's SQL compilation stays
# off it): the same rows credits_consume writes, one wallet lock, one read, then the writes.
_ACTOR_COLUMNS = "actor_type, actor_user_id, actor_api_key_id, actor_label"


@functools.cache
def _ticket_sql() -> dict[str, str]:
    wallet, consumption, entry, grant = (
        Wallet._meta.db_table,
        Consumption._meta.db_table,
        Entry._meta.db_table,
        Grant._meta.db_table,
    )
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return {
        "lock": f"SELECT id FROM {wallet} WHERE tenant_id = %s AND unit = '{Unit.TICKET_CREDIT.value}'{lock}",  # noqa: S608
        "consumption": (
            f"INSERT INTO {consumption} ({_ACTOR_COLUMNS}, wallet_id, tenant_id, idempotency_key, feature, "  # noqa: S608
            "quantity, amount, client_id, created_at, response) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
        ),
        "move": f"UPDATE {grant} SET remaining = remaining - %s WHERE id = %s",  # noqa: S608
        "entry": (
            f"INSERT INTO {entry} ({_ACTOR_COLUMNS}, wallet_id, tenant_id, grant_id, kind, quantity, feature, "  # noqa: S608
            "client_id, idempotency_key, consumption_id, note, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
    }


def _lock_ticket_wallet(tenant_id: int) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_ticket_sql()["lock"], [tenant_id])
        row = cursor.fetchone()
    return row[0] if row else None


def _write_ticket_consumption(
    *,
    tenant_id: int,
    wallet_id: int,
    key: str,
    client_id: str,
    drawn: list[tuple[LiveGrant, int]],
    answer: dict[str, Any],
    who: dict[str, Any],
    now: datetime,
) -> None:
    sql = _ticket_sql()
    actor = [
        who["actor_type"],
        who["actor_user"].pk if who["actor_user"] is not None else None,
        who["actor_api_key"].pk if who["actor_api_key"] is not None else None,
        who["actor_label"],
    ]
    at = connection.ops.adapt_datetimefield_value(now)
    response = Consumption._meta.get_field("response").get_db_prep_save(answer, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            sql["consumption"],
            [*actor, wallet_id, tenant_id, key, TICKET_FEATURE, 1, TICKET_CREDIT, client_id, at, response],
        )
        consumption_id = cursor.fetchone()[0]
        for grant, take in drawn:
            cursor.execute(sql["move"], [take, grant.pk])
            cursor.execute(
                sql["entry"],
                [
                    *actor,
                    wallet_id,
                    tenant_id,
                    grant.pk,
                    Entry.Kind.CONSUME.value,
                    -take,
                    TICKET_FEATURE,
                    client_id,
                    key,
                    consumption_id,
                    "",
                    at,
                ],
            )


@functools.cache
def _ticket_state_sql() -> str:
    grant, consumption, hold = Grant._meta.db_table, Consumption._meta.db_table, Hold._meta.db_table
    return (
        "SELECT g.id, g.source, g.remaining, k.response, k.feature, k.client_id, "  # noqa: S608
        f"(SELECT COALESCE(SUM(h.amount), 0) FROM {hold} h "
        "WHERE h.wallet_id = x.wid AND h.status = 'held' AND h.expires_at > %s) "
        "FROM (SELECT %s AS wid) x "
        f"LEFT JOIN {consumption} k ON k.wallet_id = x.wid AND k.idempotency_key = %s "
        f"LEFT JOIN {grant} g ON g.wallet_id = x.wid AND g.remaining > 0 "
        "AND g.valid_from <= %s AND (g.expires_at IS NULL OR g.expires_at > %s) "
        # DRAW_ORDER: priority, soonest expiring first (never expiring last), oldest, id
        "ORDER BY g.priority, g.expires_at IS NULL, g.expires_at, g.valid_from, g.id"
    )


def _ticket_state(
    wallet_id: int, key: str, now: datetime
) -> tuple[dict[str, Any] | None, list[LiveGrant], Figures]:
    """Under the wallet lock, in one statement (the ticket hot path): the consumption this key
    already names (its answer), the live grants in draw order, and what open holds reserve."""
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(_ticket_state_sql(), [at, wallet_id, key, at, at])
        rows = cursor.fetchall()
    first = None
    if rows and rows[0][3] is not None:
        response = rows[0][3]
        first = {
            "response": json.loads(response) if isinstance(response, str) else response,
            "feature": rows[0][4],
            "client_id": rows[0][5],
        }
    grants = [LiveGrant(pk, source, remaining) for pk, source, remaining, *_ in rows if pk is not None]
    held = int(rows[0][6]) if rows else 0
    return first, grants, Figures(balance=sum(g.remaining for g in grants), held=held)


# savepoint=False: inside a caller's transaction (licensing keeps the ticket's answer in the same
# one) a refusal rolls the caller back too, and the hot path saves a SAVEPOINT and its RELEASE.
@transaction.atomic(savepoint=False)
def ticket_credit_consume(
    *,
    tenant: Tenant,
    idempotency_key: str,
    client_id: str = "",
    actor: Who = None,
    now: datetime | None = None,
) -> Outcome:
    """Take one ticket credit for one ticket (L16) from the live ticket-credit grants, soonest
    expiring first. Idempotent like a consumption: the same key answers the first answer (also
    while the first is still running: it waits for the wallet lock) and takes nothing again; none
    left is a 402 insufficient_credits that stores nothing.

    On PostgreSQL it is one statement (the function of migration 0004), in the caller's
    transaction; the embedded SQLite default runs the same rules statement by statement."""
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        return _ticket_in_one_statement(
            tenant=tenant, idempotency_key=idempotency_key, client_id=client_id, actor=actor, now=now
        )
    wallet_id = _lock_ticket_wallet(tenant.pk)
    if wallet_id is None:
        raise _insufficient(Unit.TICKET_CREDIT, TICKET_CREDIT, 0)
    first, grants, figures = _ticket_state(wallet_id, idempotency_key, now)
    if first is not None:
        if (first["feature"], first["client_id"]) != (TICKET_FEATURE, client_id):
            raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
        return Outcome(first["response"], created=False)
    if figures.available < TICKET_CREDIT:
        raise _insufficient(Unit.TICKET_CREDIT, TICKET_CREDIT, figures.available)
    drawn = _draw(grants, TICKET_CREDIT)
    balance = figures.balance - TICKET_CREDIT
    answer = {
        "consumed": credits_string(TICKET_CREDIT),
        "idempotency_key": idempotency_key,
        "client_id": client_id or None,
        "balance": credits_string(balance),
        "remaining": max(0, balance - figures.held) // TICKET_CREDIT,  # whole ticket credits left
        "created_at": now.isoformat(),
    }
    _write_ticket_consumption(
        tenant_id=tenant.pk,
        wallet_id=wallet_id,
        key=idempotency_key,
        client_id=client_id,
        drawn=drawn,
        answer=answer,
        who=_actor_fields(actor),
        now=now,
    )
    return Outcome(answer, created=True)


_TICKET_SQL = (
    "SELECT * FROM allowance_ticket_credit_consume(%s::bigint, %s::text, %s::text, %s::timestamptz, "
    "%s::jsonb, %s::text, %s::bigint, %s::bigint, %s::text)"
)


@dataclass(frozen=True)
class TicketCreditArgs:
    """What allowance_ticket_credit_consume (migration 0004) is called with, for a caller whose own
    statement wraps it (licensing's ticket, in one statement): the answer's known part as JSON, the
    actor's four fields."""

    answer: str
    actor: list[Any]


def ticket_credit_args(
    *, idempotency_key: str, client_id: str, actor: Who, now: datetime
) -> TicketCreditArgs:
    who = Actor.of(actor)
    answer = {
        "consumed": credits_string(TICKET_CREDIT),
        "idempotency_key": idempotency_key,
        "client_id": client_id or None,
        "created_at": now.isoformat(),
    }
    return TicketCreditArgs(
        answer=json.dumps(answer),
        actor=[
            who.type,
            who.user.pk if who.user else None,
            who.api_key.pk if who.api_key else None,
            who.label[:200],
        ],
    )


def _ticket_in_one_statement(
    *, tenant: Tenant, idempotency_key: str, client_id: str, actor: Who, now: datetime
) -> Outcome:
    args = ticket_credit_args(idempotency_key=idempotency_key, client_id=client_id, actor=actor, now=now)
    with connection.cursor() as cursor:
        cursor.execute(_TICKET_SQL, [tenant.pk, idempotency_key, client_id, now, args.answer, *args.actor])
        outcome, stored, first_feature, first_client, available = cursor.fetchone()
    if outcome == "insufficient":
        raise _insufficient(Unit.TICKET_CREDIT, TICKET_CREDIT, available)
    if outcome == "exists" and (first_feature, first_client) != (TICKET_FEATURE, client_id):
        raise BusinessError("idempotency_conflict", MSG_IDEMPOTENCY_CONFLICT, status=409)
    return Outcome(json.loads(stored), created=outcome == "created")

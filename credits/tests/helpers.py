"""Helpers of the credits tests (not a test module): the ledger's invariants, checked against the
rows themselves, and short ways to call the services."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import F, Sum
from django.test import Client
from django.utils import timezone

from credits import services
from credits.models import Consumption, Entry, Grant, Hold, Unit, Wallet
from credits.selectors import figures, ledger_as_of
from tenants.errors import BusinessError
from tenants.models import Tenant
from tenants.services import api_key_create

K = 1000


def check_invariants(tenant: Tenant, now: datetime | None = None) -> None:
    """The issue's invariants, from the rows:
    - a grant's remaining = its amount + the sum of its entries (its GRANT entry is +amount, so
      remaining = the sum of all its entries); 0 <= remaining <= amount;
    - the wallet balance = the sum of unexpired remaining, and equals the ledger replayed at now;
    - each consumption's grant entries sum to -amount (+ what its refund returned);
    - each hold has one HOLD entry of -amount and, once resolved, one RELEASE entry of +amount;
    - no grant was drawn from (consume, commit, adjust) at or after its expiry."""
    now = now or timezone.now()
    wallet = Wallet.objects.filter(tenant=tenant, unit=Unit.AI_CREDIT).first()
    if wallet is None:
        return
    sums = dict(
        Entry.objects.filter(wallet=wallet, grant__isnull=False)
        .values("grant_id")
        .annotate(s=Sum("quantity"))
        .values_list("grant_id", "s")
    )
    grant_entries = dict(
        Entry.objects.filter(wallet=wallet, kind=Entry.Kind.GRANT).values_list("grant_id", "quantity")
    )
    live_total = 0
    for g in Grant.objects.filter(wallet=wallet):
        assert grant_entries[g.pk] == g.amount, f"grant {g.pk}: GRANT entry != amount"
        assert sums[g.pk] == g.remaining, f"grant {g.pk}: remaining {g.remaining} != entries {sums[g.pk]}"
        assert 0 <= g.remaining <= g.amount
        if g.is_live(now):
            live_total += g.remaining
    drawn = Entry.objects.filter(
        wallet=wallet, kind__in=[Entry.Kind.CONSUME, Entry.Kind.COMMIT, Entry.Kind.ADJUST]
    )
    late = drawn.filter(grant__expires_at__isnull=False, created_at__gte=F("grant__expires_at"))
    assert not late.exists(), f"drawn after expiry: {list(late.values_list('grant_id', 'kind'))}"
    assert not drawn.filter(created_at__lt=F("grant__valid_from")).exists(), "drawn before a grant started"
    shown = figures(tenant_id=tenant.pk, now=now)
    assert shown.balance == live_total
    assert ledger_as_of(tenant=tenant, as_of=now).balance == live_total
    per_consumption: dict[int, dict[str, int]] = defaultdict(dict)
    for consumption_id, kind, total in (
        Entry.objects.filter(wallet=wallet, consumption__isnull=False)
        .values("consumption_id", "kind")
        .annotate(s=Sum("quantity"))
        .values_list("consumption_id", "kind", "s")
    ):
        per_consumption[consumption_id][kind] = total
    for pk, key, amount, refunded in Consumption.objects.filter(wallet=wallet).values_list(
        "pk", "idempotency_key", "amount", "refunded_amount"
    ):
        kinds = per_consumption.get(pk, {})
        taken = -(kinds.get(Entry.Kind.CONSUME, 0) + kinds.get(Entry.Kind.COMMIT, 0))
        assert taken == amount, f"consumption {key}: entries {taken} != {amount}"
        assert kinds.get(Entry.Kind.REFUND, 0) == (refunded or 0)
    reservations: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for hold_id, kind, quantity in Entry.objects.filter(wallet=wallet, grant__isnull=True).values_list(
        "hold_id", "kind", "quantity"
    ):
        reservations[hold_id].append((kind, quantity))
    for pk, status, amount in Hold.objects.filter(wallet=wallet).values_list("pk", "status", "amount"):
        expected = (
            [("hold", -amount)] if status == Hold.Status.HELD else [("hold", -amount), ("release", amount)]
        )
        assert sorted(reservations[pk]) == sorted(expected), f"hold {pk} ({status}): {reservations[pk]}"


def consume(
    tenant: Tenant, key: str, *, feature: str = "smart_response", quantity: int = 1, **kw: Any
) -> dict:
    return services.credits_consume(
        tenant=tenant, feature=feature, quantity=quantity, idempotency_key=key, **kw
    ).answer


def refused(call: Any, *args: Any, **kwargs: Any) -> BusinessError:
    """The BusinessError a call raises (the test fails if it does not raise one)."""
    try:
        call(*args, **kwargs)
    except BusinessError as exc:
        return exc
    raise AssertionError(f"{call.__name__} was not refused")


def balance(tenant: Tenant, now: datetime | None = None) -> str:
    from plans.money import credits_string

    return credits_string(figures(tenant_id=tenant.pk, now=now).balance)


def entries(tenant: Tenant) -> list[tuple[str, int, int | None]]:
    """(kind, quantity, grant id) of the tenant's entries, in order."""
    return list(
        Entry.objects.filter(tenant=tenant).order_by("pk").values_list("kind", "quantity", "grant_id")
    )


def spend_through_api(tenant: Tenant, actor: Any, credits: int, key: str = "spend") -> dict[str, Any]:
    """What the AI product does: consume `credits` Smart Responses (1 credit each) through the
    integration API, with a new key of the tenant."""
    secret = api_key_create(tenant=tenant, name=f"runtime {key}", actor=actor).secret
    answer = Client().post(
        "/api/v1/credits/consume",
        json.dumps({"feature": "smart_response", "quantity": credits, "idempotency_key": key}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()

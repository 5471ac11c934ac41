"""Helpers of the credits tests (not a test module): the ledger's invariants, checked against the
rows themselves, and short ways to call the services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from credits import services
from credits.models import Consumption, Entry, Grant, Hold, Unit, Wallet
from credits.selectors import figures, ledger_as_of
from tenants.errors import BusinessError
from tenants.models import Tenant

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
        drawn_late = Entry.objects.filter(
            grant=g, kind__in=[Entry.Kind.CONSUME, Entry.Kind.COMMIT, Entry.Kind.ADJUST]
        )
        if g.expires_at is not None:
            assert not drawn_late.filter(created_at__gte=g.expires_at).exists(), (
                f"grant {g.pk} drawn after expiry"
            )
        assert not drawn_late.filter(created_at__lt=g.valid_from).exists(), f"grant {g.pk} drawn before start"
    shown = figures(tenant_id=tenant.pk, now=now)
    assert shown.balance == live_total
    assert ledger_as_of(tenant=tenant, as_of=now).balance == live_total
    for c in Consumption.objects.filter(wallet=wallet):
        drawn = -sum(
            c.entries.filter(kind__in=[Entry.Kind.CONSUME, Entry.Kind.COMMIT]).values_list(
                "quantity", flat=True
            )
        )
        assert drawn == c.amount, f"consumption {c.idempotency_key}: entries {drawn} != {c.amount}"
        refunded = sum(c.entries.filter(kind=Entry.Kind.REFUND).values_list("quantity", flat=True))
        assert refunded == (c.refunded_amount or 0)
    for h in Hold.objects.filter(wallet=wallet):
        kinds = sorted(h.entries.filter(grant__isnull=True).values_list("kind", "quantity"))
        expected = (
            [("hold", -h.amount)]
            if h.status == Hold.Status.HELD
            else [("hold", -h.amount), ("release", h.amount)]
        )
        assert kinds == sorted(expected), f"hold {h.pk} ({h.status}): {kinds}"


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

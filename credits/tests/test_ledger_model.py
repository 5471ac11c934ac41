"""A property-based test of the ledger: random sequences of grant / consume / hold / commit /
release / refund / sweep with the clock moving (and landing exactly on expiries), checked after
every step against a simple exact model written from the issue's rules, and against the
invariants read from the rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from credits import services
from credits.factories import on_plus
from credits.models import Source
from credits.selectors import figures
from credits.tests.helpers import check_invariants
from plans.money import credits_string
from tenants.errors import BusinessError
from tenants.factories import TenantFactory

COST = {"smart_response": 1000, "ai_review": 100}
PRIORITY = {Source.PLAN_INCLUDED: 10, Source.STAFF_ADJUSTMENT: 20, Source.EXTRA_PACK: 30}
KEYS = [f"k{i}" for i in range(6)]
T0 = datetime(2023, 1, 1, tzinfo=UTC)
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class MGrant:
    id: int
    priority: int
    remaining: int
    valid_from: datetime
    expires_at: datetime | None

    def live(self, t: datetime) -> bool:
        return self.valid_from <= t and (self.expires_at is None or t < self.expires_at)


@dataclass
class MHold:
    id: int
    key: str
    body: tuple
    amount: int
    expires_at: datetime
    status: str = "held"
    committed: int | None = None


@dataclass
class MConsumption:
    body: tuple | None  # None for a hold's commit
    amount: int
    taken: dict[int, int] = field(default_factory=dict)
    refunded: bool = False


class Model:
    """The issue's rules, written as plainly as possible."""

    def __init__(self) -> None:
        self.grants: dict[int, MGrant] = {}
        self.holds: dict[int, MHold] = {}
        self.consumptions: dict[str, MConsumption] = {}

    def balance(self, t: datetime) -> int:
        return sum(g.remaining for g in self.grants.values() if g.live(t))

    def held(self, t: datetime) -> int:
        return sum(h.amount for h in self.holds.values() if h.status == "held" and t < h.expires_at)

    def available(self, t: datetime) -> int:
        return max(0, self.balance(t) - self.held(t))

    def draw(self, t: datetime, amount: int) -> dict[int, int]:
        order = sorted(
            (g for g in self.grants.values() if g.live(t) and g.remaining > 0),
            key=lambda g: (g.priority, g.expires_at or NEVER, g.valid_from, g.id),
        )
        taken: dict[int, int] = {}
        for g in order:
            if amount == 0:
                break
            take = min(g.remaining, amount)
            g.remaining -= take
            amount -= take
            taken[g.id] = take
        assert amount == 0
        return taken

    def hold_by_key(self, key: str) -> MHold | None:
        return next((h for h in self.holds.values() if h.key == key), None)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        LedgerMachine.runs += 1
        self.tenant = TenantFactory(name=f"Model {LedgerMachine.runs}", slug=f"model-{LedgerMachine.runs}")
        on_plus(self.tenant, start=T0)
        self.now = T0
        self.model = Model()

    runs = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def expect(self, call: Any, code: str, **kwargs: Any) -> Any:
        """Call the service; it must succeed when the model says "ok", else raise `code`."""
        refusal = None
        try:
            outcome = call(tenant=self.tenant, now=self.now, **kwargs)
        except BusinessError as exc:
            refusal, outcome = exc.code, None
        assert (refusal or "ok") == code, (
            f"{call.__name__}{kwargs}: {refusal or 'accepted'}, the model says {code}"
        )
        return outcome

    @initialize()
    def start(self) -> None:
        pass

    # --- the clock ------------------------------------------------------------------------------

    @rule(seconds=st.integers(min_value=0, max_value=3 * 86_400))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.upcoming())
    @rule(data=st.data())
    def advance_to_an_expiry(self, data: st.DataObject) -> None:
        """Land exactly on the instant a grant or a hold expires."""
        self.now = data.draw(st.sampled_from(self.upcoming()))

    def upcoming(self) -> list[datetime]:
        moments = [
            g.expires_at for g in self.model.grants.values() if g.expires_at and g.expires_at > self.now
        ]
        moments += [h.expires_at for h in self.model.holds.values() if h.expires_at > self.now]
        return sorted(set(moments))

    # --- writes ---------------------------------------------------------------------------------

    @rule(
        amount=st.integers(min_value=1, max_value=20_000),
        source=st.sampled_from(list(PRIORITY)),
        days=st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
        starts_in=st.sampled_from([0, 0, 0, 3600, 86_400]),
    )
    def grant(self, amount: int, source: str, days: int | None, starts_in: int) -> None:
        valid_from = self.now + timedelta(seconds=starts_in)
        expires_at = valid_from + timedelta(days=days) if days else None
        g = services.credits_grant(
            tenant=self.tenant,
            source=source,
            amount=amount,
            valid_from=valid_from,
            expires_at=expires_at,
            now=self.now,
        )
        self.model.grants[g.pk] = MGrant(g.pk, PRIORITY[source], amount, valid_from, expires_at)

    @rule(
        key=st.sampled_from(KEYS),
        feature=st.sampled_from(list(COST)),
        quantity=st.integers(min_value=1, max_value=30),
        client=st.sampled_from(["", "c1"]),
    )
    def consume(self, key: str, feature: str, quantity: int, client: str) -> None:
        m, body, amount = self.model, (feature, quantity, client), COST[feature] * quantity
        first = m.consumptions.get(key)
        if first is not None:
            code = "ok" if first.body == body else "idempotency_conflict"
        elif m.hold_by_key(key) is not None:
            code = "idempotency_conflict"
        elif amount > m.available(self.now):
            code = "insufficient_credits"
        else:
            code = "ok"
        outcome = self.expect(
            services.credits_consume,
            code,
            feature=feature,
            quantity=quantity,
            idempotency_key=key,
            client_id=client,
        )
        if outcome is None:
            return
        if first is not None:
            assert outcome.created is False
            return
        expected = Model.draw(m, self.now, amount)
        m.consumptions[key] = MConsumption(body, amount, expected)
        assert {g["grant_id"]: g["credits"] for g in outcome.answer["grants"]} == {
            k: credits_string(v) for k, v in expected.items()
        }
        assert outcome.answer["balance"] == credits_string(m.balance(self.now))
        assert outcome.answer["available"] == credits_string(m.available(self.now))

    @rule(
        key=st.sampled_from(KEYS),
        amount=st.integers(min_value=1, max_value=10_000),
        ttl=st.sampled_from([1, 60, 3600, 86_400]),
    )
    def hold(self, key: str, amount: int, ttl: int) -> None:
        m, body = self.model, (amount, ttl)
        first = m.hold_by_key(key)
        if first is not None:
            code = "ok" if first.body == body else "idempotency_conflict"
        elif key in m.consumptions:
            code = "idempotency_conflict"
        elif amount > m.available(self.now):
            code = "insufficient_credits"
        else:
            code = "ok"
        outcome = self.expect(
            services.credits_hold, code, idempotency_key=key, amount=amount, ttl_seconds=ttl
        )
        if outcome is None or first is not None:
            return
        hold_id = outcome.answer["id"]
        m.holds[hold_id] = MHold(hold_id, key, body, amount, self.now + timedelta(seconds=ttl))
        assert outcome.answer["available"] == credits_string(m.available(self.now))

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), part=st.sampled_from(["all", "some", "none", "too much"]))
    def commit(self, data: st.DataObject, part: str) -> None:
        m = self.model
        h = m.holds[data.draw(st.sampled_from(sorted(m.holds)))]
        amount = {"all": None, "some": h.amount // 2, "none": 0, "too much": h.amount + 1}[part]
        actual = h.amount if amount is None else amount
        if h.status == "committed":
            code = "ok" if amount is None or amount == h.committed else "hold_committed"
        elif h.status == "released":
            code = "hold_released"
        elif h.status == "expired" or h.expires_at <= self.now:
            code = "hold_expired"
        elif actual > h.amount:
            code = "commit_exceeds_hold"
        elif actual > max(0, m.balance(self.now) - (m.held(self.now) - h.amount)):
            code = "insufficient_credits"
        else:
            code = "ok"
        outcome = self.expect(services.credits_hold_commit, code, hold_id=h.id, amount=amount)
        if outcome is None or h.status == "committed":
            return
        taken = Model.draw(m, self.now, actual)
        h.status, h.committed = "committed", actual
        m.consumptions[h.key] = MConsumption(None, actual, taken)
        assert outcome.answer["balance"] == credits_string(m.balance(self.now))

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        m = self.model
        h = m.holds[data.draw(st.sampled_from(sorted(m.holds)))]
        code = "hold_committed" if h.status == "committed" else "ok"
        outcome = self.expect(services.credits_hold_release, code, hold_id=h.id)
        if outcome is None:
            return
        if h.status == "held":
            h.status = "expired" if h.expires_at <= self.now else "released"
        assert outcome.answer["status"] == h.status

    @rule(key=st.sampled_from([*KEYS, "unknown"]))
    def refund(self, key: str) -> None:
        m = self.model
        c = m.consumptions.get(key)
        outcome = self.expect(
            services.credits_refund, "ok" if c is not None else "not_found", idempotency_key=key
        )
        if outcome is None or c is None or c.refunded:
            return
        c.refunded = True
        back = 0
        for grant_id, amount in c.taken.items():
            if m.grants[grant_id].live(self.now):
                m.grants[grant_id].remaining += amount
                back += amount
        assert outcome.answer["refunded"] == credits_string(back)

    @rule()
    def sweep(self) -> None:
        services.grants_expire_due(now=self.now)
        services.holds_expire_due(now=self.now)
        for g in self.model.grants.values():
            if g.expires_at is not None and g.expires_at <= self.now:
                g.remaining = 0
        for h in self.model.holds.values():
            if h.status == "held" and h.expires_at <= self.now:
                h.status = "expired"

    # --- after every step ---------------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        shown = figures(tenant_id=self.tenant.pk, now=self.now)
        m = self.model
        assert (shown.balance, shown.held, shown.available) == (
            m.balance(self.now),
            m.held(self.now),
            m.available(self.now),
        )
        check_invariants(self.tenant, self.now)


@pytest.mark.django_db
def test_the_ledger_matches_an_exact_model_under_random_sequences():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            derandomize=True,
        ),
    )

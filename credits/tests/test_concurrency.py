"""Concurrency, with real threads against PostgreSQL: each thread has its own connection and its
own transactions, as gunicorn workers would. PostgreSQL here serves every engineer's suites, so a
pool of 25 threads runs the 200 consumers (25 at a time, all contending for the one wallet)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from credits import services
from credits.factories import grant, on_plus
from credits.models import Consumption, Entry, Grant, Hold
from credits.selectors import figures
from credits.tests.helpers import K, check_invariants
from tenants.errors import BusinessError
from tenants.factories import TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)

POOL = 25


@pytest.fixture
def hot():
    tenant = TenantFactory(name="Hot Wallet", slug="hot-wallet")
    on_plus(tenant)
    return tenant


def _run(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except BusinessError as exc:
        return exc.code, exc
    finally:
        connection.close()


def run_all(calls: list[Callable[[], Any]], *, together: bool = False) -> list[tuple[str, Any]]:
    """Run every call on the pool; with `together`, all of them start at the same moment."""
    gate = threading.Barrier(len(calls)) if together else None

    def start(call: Callable[[], Any]) -> tuple[str, Any]:
        if gate is not None:
            gate.wait(timeout=30)
        return _run(call)

    with ThreadPoolExecutor(max_workers=len(calls) if together else POOL) as pool:
        return list(pool.map(start, calls))


def test_200_concurrent_consumers_against_100_credits_exactly_100_succeed(hot):
    grant(hot, 60)
    grant(hot, 40, days=10)
    results = run_all(
        [
            lambda i=i: services.credits_consume(
                tenant=hot, feature="smart_response", quantity=1, idempotency_key=f"c-{i}"
            )
            for i in range(200)
        ]
    )
    assert Counter(code for code, _ in results) == {"ok": 100, "insufficient_credits": 100}
    assert {exc.status for code, exc in results if code != "ok"} == {402}
    assert figures(tenant_id=hot.pk).balance == 0
    assert Consumption.objects.filter(tenant=hot).count() == 100
    assert (
        sum(Entry.objects.filter(tenant=hot, kind="consume").values_list("quantity", flat=True)) == -100 * K
    )
    assert list(Grant.objects.filter(tenant=hot).values_list("remaining", flat=True)) == [0, 0]
    # The ten-day grant was drawn before the thirty-day one: every consumption while it lasted.
    assert sorted(int(a.answer["balance"]) for code, a in results if code == "ok") == list(range(100))
    check_invariants(hot)


def test_the_same_key_from_10_threads_at_once_is_one_consumption(hot):
    grant(hot, 10)
    results = run_all(
        [
            lambda: services.credits_consume(
                tenant=hot, feature="ai_review", quantity=5, idempotency_key="same-key", client_id="c1"
            )
        ]
        * 10,
        together=True,
    )
    assert [code for code, _ in results] == ["ok"] * 10
    answers = [outcome.answer for _, outcome in results]
    assert all(answer == answers[0] for answer in answers)
    assert sorted(outcome.created for _, outcome in results) == [False] * 9 + [True]
    assert answers[0]["balance"] == "9.5"
    assert Consumption.objects.filter(tenant=hot).count() == 1
    assert figures(tenant_id=hot.pk).balance == 9500
    check_invariants(hot)


def test_the_same_refund_from_10_threads_at_once_refunds_once(hot):
    grant(hot, 10)
    services.credits_consume(tenant=hot, feature="smart_response", quantity=3, idempotency_key="k")
    results = run_all([lambda: services.credits_refund(tenant=hot, idempotency_key="k")] * 10, together=True)
    assert sorted(outcome.created for _, outcome in results) == [False] * 9 + [True]
    assert Entry.objects.filter(tenant=hot, kind="refund").count() == 1
    assert figures(tenant_id=hot.pk).balance == 10 * K
    check_invariants(hot)


def test_concurrent_holds_never_reserve_more_than_is_available(hot):
    grant(hot, 10)
    results = run_all(
        [
            lambda i=i: services.credits_hold(tenant=hot, idempotency_key=f"h-{i}", amount=1500)
            for i in range(20)
        ]
    )
    assert Counter(code for code, _ in results) == {"ok": 6, "insufficient_credits": 14}
    assert figures(tenant_id=hot.pk).held == 9000
    holds = [outcome.answer["id"] for code, outcome in results if code == "ok"]
    commits = run_all(
        [lambda h=h: services.credits_hold_commit(tenant=hot, hold_id=h, amount=1000) for h in holds] * 2
    )
    assert Counter(code for code, _ in commits) == {"ok": 12}
    assert sorted(outcome.created for _, outcome in commits) == [False] * 6 + [True] * 6
    assert (figures(tenant_id=hot.pk).balance, figures(tenant_id=hot.pk).held) == (4000, 0)
    assert Hold.objects.filter(tenant=hot, status="committed").count() == 6
    check_invariants(hot)


def test_a_grant_of_the_same_reference_from_10_threads_is_made_once(hot):
    from datetime import timedelta

    from django.utils import timezone

    from plans.factories import plan

    start = timezone.now()
    results = run_all(
        [
            lambda: services.credits_grant_plan_period(
                tenant=hot,
                plan=plan("credits-plus"),
                period_start=start,
                period_end=start + timedelta(days=30),
                reference="invoice:in_race",
            )
        ]
        * 10,
        together=True,
    )
    assert [code for code, _ in results] == ["ok"] * 10
    assert len({g.pk for _, g in results}) == 1
    assert Grant.objects.filter(tenant=hot).count() == 1
    check_invariants(hot)


def test_the_same_key_posted_from_10_threads_at_once_answers_one_201_and_nine_200_with_one_body(hot):
    """Through the API: the second request waits for the first, never a 409 "in progress"."""
    import json

    from django.test import Client

    from tenants.audit import SYSTEM
    from tenants.services import api_key_create

    grant(hot, 10)
    secret = api_key_create(tenant=hot, name="runtime", actor=SYSTEM).secret
    body = json.dumps({"feature": "ai_review", "quantity": 2, "idempotency_key": "api-same"})

    def post() -> Any:
        response = Client().post(
            "/api/v1/credits/consume",
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        return response.status_code, response.json()

    results = run_all([post] * 10, together=True)
    assert sorted(status for _, (status, _) in results) == [200] * 9 + [201]
    bodies = [payload for _, (_, payload) in results]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["balance"] == "9.8"
    assert Consumption.objects.filter(tenant=hot).count() == 1
    check_invariants(hot)

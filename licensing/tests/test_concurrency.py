"""Concurrency, with real threads against PostgreSQL: each thread has its own connection and its
own transactions, as gunicorn workers would (L04, L14, L16)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from credits.models import Consumption, Entry
from credits.selectors import ticket_credits
from licensing import services
from licensing.factories import ClientFactory, licensed, on_helpdesk
from licensing.models import Client, Ticket
from licensing.rules import ClientFields
from tenants.errors import BusinessError
from tenants.factories import TenantFactory, second_connection
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

# PostgreSQL here serves every engineer's suites: 50 callers start together, on 50 connections.
CALLERS = 50


@pytest.fixture
def partner():
    tenant = TenantFactory(name="Busy Partner", slug="busy-partner")
    on_helpdesk(tenant, start=datetime.now(UTC))
    return tenant


def assert_ticket_ledger(tenant) -> None:
    """The ticket wallet's ledger holds: each grant's remaining is the sum of its entries (its GRANT
    entry carrying +amount), and each consumption's entries take exactly one ticket credit."""
    from django.db.models import Sum

    from credits.models import Grant

    for grant in Grant.objects.filter(tenant=tenant, wallet__unit="ticket_credit"):
        assert grant.remaining == Entry.objects.filter(grant=grant).aggregate(s=Sum("quantity"))["s"]
    for consumption in Consumption.objects.filter(tenant=tenant, wallet__unit="ticket_credit"):
        taken = Entry.objects.filter(consumption=consumption).aggregate(s=Sum("quantity"))["s"]
        assert (consumption.amount, taken) == (1000, -1000)


def _run(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except BusinessError as exc:
        return exc.code, exc
    finally:
        connection.close()


def together(calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run every call on its own thread, all starting at the same moment."""
    gate = threading.Barrier(len(calls))

    def start(call: Callable[[], Any]) -> tuple[str, Any]:
        gate.wait(timeout=30)
        return _run(call)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(start, calls))


def test_l04_50_parallel_assignments_with_3_licenses_left_give_exactly_3(partner):
    licensed(partner, 7)
    waiting = ClientFactory.create_batch(CALLERS, tenant=partner)

    results = together(
        [
            lambda c=c: services.license_assign(tenant=partner, client=c, kind="ai", actor=None)
            for c in waiting
        ]
    )

    assert Counter(code for code, _ in results) == {"ok": 3, "license_limit_reached": 47}
    assert {exc.status for code, exc in results if code != "ok"} == {402}
    assert Client.objects.filter(tenant=partner, ai_license_since__isnull=False).count() == 10
    assert AuditEvent.objects.filter(tenant=partner, action="license.assigned").count() == 3


def test_parallel_assignments_to_one_client_give_one_license_and_one_audit_event(partner):
    client = ClientFactory(tenant=partner)

    results = together(
        [lambda: services.license_assign(tenant=partner, client=client, kind="chat", actor=None)] * 20
    )

    assert Counter(code for code, _ in results) == {"ok": 20}
    assert AuditEvent.objects.filter(tenant=partner, action="license.assigned").count() == 1


def test_l16_the_same_ticket_from_10_threads_consumes_one_credit(partner):
    ClientFactory(tenant=partner, external_id="walk-in")

    results = together(
        [lambda: services.ticket_qualify(tenant=partner, ticket_id="T-1", client_id="walk-in")] * 10
    )

    answers = [answer for code, answer in results]
    assert {code for code, _ in results} == {"ok"}
    assert all(a == answers[0] for a in answers)
    assert (answers[0]["via"], answers[0]["ticket_credits_remaining"]) == ("ticket_credit", 59)
    assert Consumption.objects.filter(tenant=partner).count() == 1
    assert Entry.objects.filter(tenant=partner, kind="consume").count() == 1
    assert Ticket.objects.filter(tenant=partner).count() == 1
    assert ticket_credits(tenant_id=partner.pk).remaining == 59
    assert_ticket_ledger(partner)


def test_l16_50_different_tickets_against_the_last_3_credits_give_3(partner):
    ClientFactory(tenant=partner, external_id="walk-in")
    for i in range(57):
        services.ticket_qualify(tenant=partner, ticket_id=f"early-{i}", client_id="walk-in")

    results = together(
        [
            lambda i=i: services.ticket_qualify(tenant=partner, ticket_id=f"late-{i}", client_id="walk-in")
            for i in range(CALLERS)
        ]
    )

    assert Counter(answer["ai"] for _, answer in results) == {True: 3, False: 47}
    assert {answer["reason"] for _, answer in results if not answer["ai"]} == {"no_ticket_credits"}
    assert ticket_credits(tenant_id=partner.pk).balance == 0
    assert Consumption.objects.filter(tenant=partner).count() == 60
    assert sorted(a["ticket_credits_remaining"] for _, a in results if a["ai"]) == [0, 1, 2]
    assert_ticket_ledger(partner)


def test_parallel_upserts_of_a_new_client_create_it_once(partner):
    fields = ClientFields(name="Contoso", status="active", company_type="", agreement_type="")

    results = together(
        [
            lambda: services.client_upsert(tenant=partner, external_id="new-1", fields=fields, actor=None)
            for _ in range(10)
        ]
    )

    assert Counter(created for _, (_, created) in results) == {True: 1, False: 9}
    assert Client.objects.filter(tenant=partner, external_id="new-1").count() == 1
    assert AuditEvent.objects.filter(tenant=partner, action="client.created").count() == 1


def test_l16_a_ticket_answered_via_a_license_while_its_credit_waits_takes_no_credit(partner):
    """The race the one-statement path guards, provoked through the service: the ticket's statement
    (allowance_ticket_qualify) has looked for the ticket and waits for the ticket wallet's lock
    (held by another transaction); meanwhile the other transaction answers the ticket via a license
    and commits. The statement then takes the credit, finds the ticket's row, undoes the credit and
    answers the first answer: nothing is spent, one ticket is kept."""
    import json
    import time

    ClientFactory(tenant=partner, external_id="contoso", status="active")
    client = Client.objects.get(tenant=partner, external_id="contoso")
    left = ticket_credits(tenant_id=partner.pk).remaining
    first = {"ticket_id": "T-1", "client_id": "contoso", "ai": True, "via": "license"}
    other = second_connection(autocommit=False)
    with other:
        other.execute(
            "SELECT id FROM credits_wallet WHERE tenant_id = %s AND unit = 'ticket_credit' FOR UPDATE",
            [partner.pk],
        )
        with ThreadPoolExecutor(max_workers=1) as pool:
            asked = pool.submit(
                _run, lambda: services.ticket_qualify(tenant=partner, ticket_id="T-1", client_id="contoso")
            )
            waiting = 0
            for _ in range(100):  # until the statement waits for the wallet's lock
                time.sleep(0.05)
                waiting = other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s",
                    ["%allowance_ticket_qualify%"],
                ).fetchone()[0]
                if waiting:
                    break
            assert waiting == 1
            other.execute(
                "INSERT INTO licensing_ticket (tenant_id, ticket_id, client_id, via, response, created_at) "
                "VALUES (%s, 'T-1', %s, 'license', %s, now())",
                [partner.pk, client.pk, json.dumps(first)],
            )
            other.commit()
            outcome, answer = asked.result(timeout=30)

    assert (outcome, answer) == ("ok", first)
    assert not Consumption.objects.filter(tenant=partner).exists()
    assert ticket_credits(tenant_id=partner.pk).remaining == left
    assert list(Ticket.objects.filter(tenant=partner).values_list("via", flat=True)) == ["license"]
    assert_ticket_ledger(partner)


def test_l16_the_same_ticket_for_two_clients_at_once_gets_the_tickets_own_409(partner):
    """One ticket sent for two clients at the same moment: one answer, one credit, and the other
    request the ticket's 409 naming the first client (not the credit ledger's words about an
    idempotency key, which the tickets API does not have)."""
    ClientFactory(tenant=partner, external_id="c1")
    ClientFactory(tenant=partner, external_id="c2")
    for round_ in range(4):
        ticket = f"R-{round_}"
        results = together(
            [
                lambda c=c, t=ticket: services.ticket_qualify(tenant=partner, ticket_id=t, client_id=c)
                for c in ("c1", "c2") * 4
            ]
        )
        first = Ticket.objects.get(tenant=partner, ticket_id=ticket).client.external_id
        other = "c2" if first == "c1" else "c1"
        refused = {(code, exc.status, exc.message) for code, exc in results if code != "ok"}
        assert refused == {
            (
                "idempotency_conflict",
                409,
                f"This ticket_id was already answered for the client {first}: a ticket belongs to one client.",
            )
        }, round_
        assert all(answer["client_id"] == first for code, answer in results if code == "ok")
        assert sum(1 for code, _ in results if code != "ok") == 4  # every request for the other client
        assert other not in {answer["client_id"] for code, answer in results if code == "ok"}
    assert Consumption.objects.filter(tenant=partner).count() == 4
    assert_ticket_ledger(partner)

"""Ticket qualification (L15, L16, L06): via license, via Unlimited AI access, via a ticket credit,
or not at all (none left, an inactive client, a plan that ended); unknown clients; idempotency."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from credits.models import Consumption, Entry, Grant
from credits.selectors import ticket_credits
from credits.services import ticket_credit_args
from licensing import services
from licensing.factories import ClientFactory, licensed, on_helpdesk
from licensing.models import Client, Ticket
from plans.models import Subscription
from tenants.errors import BusinessError
from tenants.factories import insert_copy

pytestmark = pytest.mark.django_db


def ask(tenant, ticket_id: str, client_id: str) -> dict:
    return services.ticket_qualify(tenant=tenant, ticket_id=ticket_id, client_id=client_id)


def test_l15_a_licensed_clients_ticket_qualifies_via_license_and_spends_nothing(essentials):
    client = licensed(essentials, 1, external_id="acme-42")[0]

    answer = ask(essentials, "T-1", "acme-42")

    assert answer == {
        "ticket_id": "T-1",
        "client_id": "acme-42",
        "ai": True,
        "via": "license",
        "reason": None,
        "message": None,
        "ticket_credits_remaining": 60,
    }
    assert ticket_credits(tenant_id=essentials.pk).remaining == 60
    assert list(Ticket.objects.values_list("ticket_id", "client_id", "via")) == [
        ("T-1", client.pk, "license")
    ]


def test_l06_with_unlimited_ai_access_every_active_client_qualifies(pro):
    ClientFactory(tenant=pro, external_id="walk-in")

    answer = ask(pro, "T-1", "walk-in")

    assert (answer["ai"], answer["via"], answer["ticket_credits_remaining"]) == (True, "unlimited", 150)
    assert not Consumption.objects.filter(tenant=pro).exists()


def test_l16_an_unlicensed_clients_ticket_consumes_one_ticket_credit(essentials):
    ClientFactory(tenant=essentials, external_id="break-fix-1")

    first = ask(essentials, "T-1", "break-fix-1")
    second = ask(essentials, "T-2", "break-fix-1")

    assert (first["ai"], first["via"], first["ticket_credits_remaining"]) == (True, "ticket_credit", 59)
    assert (second["via"], second["ticket_credits_remaining"]) == ("ticket_credit", 58)
    assert list(
        Consumption.objects.filter(tenant=essentials)
        .order_by("pk")
        .values_list("idempotency_key", "client_id", "amount", "feature")
    ) == [("ticket:T-1", "break-fix-1", 1000, "ticket"), ("ticket:T-2", "break-fix-1", 1000, "ticket")]
    assert Grant.objects.get(tenant=essentials, source="ticket_cycle").remaining == 58_000
    assert list(
        Entry.objects.filter(tenant=essentials, kind="consume").values_list("quantity", flat=True)
    ) == [
        -1000,
        -1000,
    ]


def test_the_same_ticket_asked_again_answers_the_first_answer_and_consumes_once(essentials):
    ClientFactory(tenant=essentials, external_id="break-fix-1")
    first = ask(essentials, "T-1", "break-fix-1")
    ask(essentials, "T-2", "break-fix-1")

    again = ask(essentials, "T-1", "break-fix-1")

    assert again == first  # 59 remaining, as it was then
    assert Consumption.objects.filter(tenant=essentials).count() == 2
    assert ticket_credits(tenant_id=essentials.pk).remaining == 58


def test_the_same_ticket_for_another_client_is_a_409_and_changes_nothing(essentials):
    """A ticket belongs to one client: its id sent again with another client is the client's
    mistake, refused as an idempotency key reused with another request is (it answered the first
    client's answer before, silently)."""
    ClientFactory(tenant=essentials, external_id="c1")
    ClientFactory(tenant=essentials, external_id="c2")
    ask(essentials, "T-1", "c1")

    with pytest.raises(BusinessError) as refused:
        ask(essentials, "T-1", "c2")

    assert (refused.value.code, refused.value.status) == ("idempotency_conflict", 409)
    assert refused.value.message == (
        "This ticket_id was already answered for the client c1: a ticket belongs to one client."
    )
    assert Consumption.objects.filter(tenant=essentials).count() == 1
    assert list(Ticket.objects.values_list("ticket_id", "client__external_id")) == [("T-1", "c1")]


def test_a_ticket_that_qualified_via_license_stays_so_after_the_license_is_removed(essentials, admin):
    client = licensed(essentials, 1, external_id="acme")[0]
    ask(essentials, "T-1", "acme")
    services.license_remove(tenant=essentials, client=client, kind="ai", actor=admin)

    assert ask(essentials, "T-1", "acme")["via"] == "license"
    assert ask(essentials, "T-2", "acme")["via"] == "ticket_credit"


def test_none_left_the_ticket_does_not_get_ai_and_nothing_is_kept(essentials):
    ClientFactory(tenant=essentials, external_id="break-fix-1", name="Fabrikam")
    for i in range(60):
        assert ask(essentials, f"T-{i}", "break-fix-1")["ai"] is True

    answer = ask(essentials, "T-60", "break-fix-1")

    assert answer == {
        "ticket_id": "T-60",
        "client_id": "break-fix-1",
        "ai": False,
        "via": None,
        "reason": "no_ticket_credits",
        "message": "No ticket credits left: they refresh at the start of the next billing cycle. Assign an AI "
        "license to Fabrikam, or upgrade your plan.",
        "ticket_credits_remaining": 0,
    }
    assert not Ticket.objects.filter(ticket_id="T-60").exists()
    assert Consumption.objects.filter(tenant=essentials).count() == 60


def test_a_ticket_refused_for_want_of_credits_qualifies_when_asked_again_after_a_license(essentials, admin):
    client = ClientFactory(tenant=essentials, external_id="c1")
    Grant.objects.filter(tenant=essentials).update(remaining=0)  # spent (the ledger is not under test here)
    assert ask(essentials, "T-1", "c1")["ai"] is False

    services.license_assign(tenant=essentials, client=client, kind="ai", actor=admin)

    assert ask(essentials, "T-1", "c1")["via"] == "license"


def test_an_inactive_clients_ticket_does_not_get_ai_even_with_a_license(essentials):
    licensed(essentials, 1, external_id="gone", name="Gone Ltd", status=Client.Status.INACTIVE)

    answer = ask(essentials, "T-1", "gone")

    assert (answer["ai"], answer["reason"], answer["message"]) == (
        False,
        "client_inactive",
        "Gone Ltd is inactive: its tickets do not get AI.",
    )
    assert answer["ticket_credits_remaining"] == 60
    assert not Ticket.objects.exists()


def test_an_unknown_client_is_a_404_and_changes_nothing(essentials):
    with pytest.raises(BusinessError) as caught:
        ask(essentials, "T-1", "nobody")
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        "unknown_client",
        404,
        "No client has this client_id.",
    )
    assert not Consumption.objects.exists()


def test_another_tenants_client_is_unknown(essentials, other_tenant):
    ClientFactory(tenant=other_tenant, external_id="theirs")
    with pytest.raises(BusinessError) as caught:
        ask(essentials, "T-1", "theirs")
    assert caught.value.status == 404


def test_an_ended_plan_gives_no_ai_with_the_specs_message(tenant, clock):
    on_helpdesk(tenant, state=Subscription.State.EXPIRED, grant=False)
    licensed(tenant, 1, external_id="acme")

    answer = ask(tenant, "T-1", "acme")

    assert (answer["ai"], answer["reason"], answer["message"]) == (
        False,
        "subscription_ended",
        "Your subscription has ended. Please upgrade your plan to continue.",
    )


def test_ticket_credits_past_the_cycle_end_are_never_spent(essentials, clock):
    ClientFactory(tenant=essentials, external_id="c1")
    clock.shift(timedelta(days=30))  # the cycle's grant expired; the next one is not granted yet

    answer = ask(essentials, "T-1", "c1")

    assert (answer["ai"], answer["reason"]) == (False, "no_ticket_credits")


@pytest.mark.parametrize(
    ("ticket_id", "client_id", "message"),
    [
        ("", "c1", "ticket_id: 1 to 190 printable characters, without '/'."),
        ("x" * 191, "c1", "ticket_id: 1 to 190 printable characters, without '/'."),
        ("a/b", "c1", "ticket_id: 1 to 190 printable characters, without '/'."),
        ("T-1", "", "client_id: Enter the client's id."),
        ("T-1", "bad\x00id", "client_id: Use printable characters, without '/'."),
        ("T-\u202e1", "c1", "ticket_id: 1 to 190 printable characters, without '/'."),
        ("T-1", "c\u20661", "client_id: Use printable characters, without '/'."),
    ],
)
def test_bad_ids_are_refused_as_bad_input(essentials, ticket_id, client_id, message):
    with pytest.raises(BusinessError) as caught:
        ask(essentials, ticket_id, client_id)
    assert (caught.value.status, caught.value.message) == (422, message)


def test_l16_a_ticket_answered_first_via_a_license_takes_no_credit_in_the_one_statement_path(essentials):
    """The race the one-statement path guards (PostgreSQL): the ticket is answered via a license
    between the statement's look for the ticket and its credit (another request's commit). The
    credit's part of the statement (allowance_ticket_take_credit, called here as the qualifying
    function calls it after its look) takes the credit, finds the ticket's row, undoes the credit
    and answers the first answer: nothing is spent or kept twice."""
    licensed(essentials, 1, external_id="contoso")
    first = ask(essentials, "T-1", "contoso")  # via license: the ticket's row, no credit
    client = Client.objects.get(tenant=essentials, external_id="contoso")
    now = timezone.now()
    credit = ticket_credit_args(idempotency_key="ticket:T-1", client_id="contoso", actor=None, now=now)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o_outcome, o_answer FROM allowance_ticket_take_credit(%s::bigint, %s::text, %s::bigint, "
            "%s::text, %s::timestamptz, %s::jsonb, %s::jsonb, %s::text, %s::bigint, %s::bigint, %s::text)",
            [essentials.pk, "T-1", client.pk, "contoso", now, credit.answer, json.dumps({"ticket_id": "T-1"}),
             *credit.actor],
        )  # fmt: skip
        outcome, stored = cursor.fetchone()
    answer = json.loads(stored)

    assert outcome == "answered"
    assert answer == first
    assert answer["via"] == "license"
    assert not Consumption.objects.filter(tenant=essentials).exists()
    assert ticket_credits(tenant_id=essentials.pk).remaining == 60
    assert Ticket.objects.filter(tenant=essentials).count() == 1


def test_a_ticket_key_used_by_another_request_is_a_conflict_and_takes_nothing(essentials):
    """The key "ticket:<id>" taken by a consumption of another request (another client): a 409, and
    neither a credit nor the ticket's row is written."""
    ClientFactory(tenant=essentials, external_id="walk-in")
    ClientFactory(tenant=essentials, external_id="other")
    from credits.services import ticket_credit_consume

    ticket_credit_consume(tenant=essentials, idempotency_key="ticket:T-9", client_id="other")

    with pytest.raises(BusinessError) as refused:
        ask(essentials, "T-9", "walk-in")

    assert (refused.value.code, refused.value.status) == ("idempotency_conflict", 409)
    assert Consumption.objects.filter(tenant=essentials).count() == 1
    assert ticket_credits(tenant_id=essentials.pk).remaining == 59
    assert not Ticket.objects.filter(tenant=essentials).exists()


def test_a_ticket_belongs_to_its_clients_tenant(essentials, other_tenant):
    """One foreign key holds a ticket's client and tenant together (migration 0005): a ticket naming
    another tenant's client, or a client that does not exist, is refused."""
    licensed(essentials, 1, external_id="acme-42")
    theirs = ClientFactory(tenant=other_tenant)
    ask(essentials, "T-1", "acme-42")
    for changes in ({"tenant": other_tenant}, {"client_id": theirs.pk}, {"client_id": 10**9}):
        with pytest.raises(IntegrityError, match="client_of_tenant"):
            insert_copy(Ticket.objects.get(ticket_id="T-1"), ticket_id="T-2", **changes)
    assert list(Ticket.objects.values_list("ticket_id", flat=True)) == ["T-1"]

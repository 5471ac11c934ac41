"""The hot writes' durable procedures (tenants.durable_call): outside a transaction a write commits
without waiting for the WAL flush, then waits for the flush before it answers; inside one it runs in
the caller's transaction. The consumption (C08, C11) and the ticket credit (L16) through both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from credits import db_functions as credit_functions
from credits import services as credit_services
from credits.factories import K, grant, on_plus
from credits.models import Consumption
from credits.selectors import figures
from licensing import db_functions as licensing_functions
from licensing import services as licensing_services
from licensing.factories import ClientFactory, on_helpdesk
from licensing.models import Ticket
from sessions_billing import db_functions as session_functions
from tenants.durable_call import Function
from tenants.errors import BusinessError
from tenants.factories import TenantFactory, second_connection

pytestmark = pytest.mark.django_db(transaction=True)

# A write of the test's own: one row, and the WAL position it was written at.
PROBE = Function(
    "allowance_test_durable_probe",
    (("p_note", "text"),),
    (("o_note", "text"), ("o_written_at", "pg_lsn")),
)


@pytest.fixture
def probe():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE allowance_test_durable_row (note text NOT NULL)")
        cursor.execute(
            f"""CREATE FUNCTION {PROBE.name}(p_note text) RETURNS TABLE (o_note text, o_written_at pg_lsn)
            LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO allowance_test_durable_row VALUES (p_note);
              o_note := p_note;
              o_written_at := pg_current_wal_insert_lsn();
              RETURN NEXT;
            END $$"""
        )
        cursor.execute(PROBE.create_sql())
    yield PROBE
    with connection.cursor() as cursor:
        cursor.execute(PROBE.drop_sql())
        cursor.execute(f"DROP FUNCTION {PROBE.name}(text)")
        cursor.execute("DROP TABLE allowance_test_durable_row")


def _notes_seen_elsewhere() -> list[str]:
    with second_connection() as other, other.cursor() as cursor:
        cursor.execute("SELECT note FROM allowance_test_durable_row ORDER BY note")
        return [row[0] for row in cursor.fetchall()]


def test_outside_a_transaction_the_procedure_answers_only_once_the_write_is_flushed(probe):
    """The write is committed (another connection sees it) and the WAL is flushed past it before
    the call returns, although its own commit did not wait for the flush. Twenty writes in a row:
    without the second, synchronous commit the WAL writer (every 200 ms) would be behind."""
    assert probe.statement_sql().startswith("CALL ")
    for n in range(20):
        with connection.cursor() as cursor:
            cursor.execute(probe.statement_sql(), [f"note-{n:02}"])
            note, written_at = cursor.fetchone()
            cursor.execute("SELECT pg_current_wal_flush_lsn() > %s::pg_lsn", [written_at])
            assert cursor.fetchone() == (True,), f"write {n} answered before the WAL was flushed past it"
        assert note == f"note-{n:02}"
    assert connection.connection.info.transaction_status == 0  # IDLE: nothing left open
    assert _notes_seen_elsewhere() == [f"note-{n:02}" for n in range(20)]


def test_inside_a_transaction_the_function_runs_and_rolls_back_with_it(probe):
    class Undo(Exception):
        pass

    def write_then_fail() -> None:
        with transaction.atomic():
            assert probe.statement_sql().startswith("SELECT * FROM allowance_test_durable_probe(")
            with connection.cursor() as cursor:
                cursor.execute(probe.statement_sql(), ["kept only with the caller's commit"])
            raise Undo

    with pytest.raises(Undo):
        write_then_fail()
    assert _notes_seen_elsewhere() == []


def test_the_procedure_keeps_the_sessions_own_synchronous_commit():
    """Only the write's own transaction commits without waiting; the session's setting is as it
    was afterwards (the second commit, and the next request on the kept connection, use it)."""
    tenant = TenantFactory()
    on_plus(tenant)
    grant(tenant, 5)
    credit_services.credits_consume(tenant=tenant, feature="smart_response", quantity=1, idempotency_key="k1")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


def test_the_installed_procedures_are_the_ones_the_services_call():
    """Migrations credits 0013, licensing 0009 and sessions_billing 0006 installed what `create_sql`
    makes of each."""
    with connection.cursor() as cursor:
        for function in (credit_functions.CONSUME, licensing_functions.QUALIFY, session_functions.START):
            kinds = [kind for _, kind in (*function.procedure_arguments, *function.procedure_columns)]
            cursor.execute(
                "SELECT array_to_string(p.proargtypes::regtype[], ',') = array_to_string(%s::text[]::regtype[], ','), "
                "p.prosrc "
                "FROM pg_proc p WHERE p.proname = %s AND p.prokind = 'p'",
                [kinds, function.procedure],
            )
            (same_types, source), *more = cursor.fetchall()
            assert more == []
            assert same_types
            assert source.strip() == function.create_sql().split("$$")[1].strip()


def test_c08_c11_a_consumption_through_the_procedure_is_exact_and_answers_its_first_answer_again():
    tenant = TenantFactory()
    on_plus(tenant)
    grant(tenant, 2)
    assert credit_functions.CONSUME.statement_sql().startswith("CALL ")

    first = credit_services.credits_consume(
        tenant=tenant, feature="ai_review", quantity=3, idempotency_key="r-1"
    )
    again = credit_services.credits_consume(
        tenant=tenant, feature="ai_review", quantity=3, idempotency_key="r-1"
    )

    assert (first.created, again.created) == (True, False)
    assert again.answer == first.answer
    assert (first.answer["consumed"], first.answer["balance"]) == ("0.3", "1.7")
    assert figures(tenant_id=tenant.pk).balance == 2 * K - 300
    assert Consumption.objects.filter(tenant=tenant).count() == 1
    with pytest.raises(BusinessError) as conflict:
        credit_services.credits_consume(tenant=tenant, feature="ai_review", quantity=4, idempotency_key="r-1")
    assert conflict.value.code == "idempotency_conflict"


def test_c15_a_refusal_through_the_procedure_writes_nothing_and_leaves_nothing_open():
    tenant = TenantFactory()
    on_plus(tenant)
    grant(tenant, 1)
    with pytest.raises(BusinessError) as refused:
        credit_services.credits_consume(
            tenant=tenant, feature="smart_response", quantity=2, idempotency_key="too-much"
        )
    assert (refused.value.code, refused.value.status) == ("insufficient_credits", 402)
    assert str(refused.value.message) == "Not enough AI credits: 2 needed, 1 available."
    assert Consumption.objects.filter(tenant=tenant).count() == 0
    assert connection.connection.info.transaction_status == 0
    with pytest.raises(BusinessError) as unknown:
        credit_services.credits_consume(
            tenant=tenant, feature="no_such_feature", quantity=1, idempotency_key="x"
        )
    assert unknown.value.status == 422


def test_l16_a_ticket_through_the_procedure_takes_one_ticket_credit_once():
    partner = TenantFactory()
    on_helpdesk(partner, start=datetime.now(UTC))
    client = ClientFactory(tenant=partner, external_id="acme")
    assert licensing_functions.QUALIFY.statement_sql().startswith("CALL ")

    first = licensing_services.ticket_qualify(tenant=partner, ticket_id="T-1", client_id=client.external_id)
    again = licensing_services.ticket_qualify(tenant=partner, ticket_id="T-1", client_id=client.external_id)

    assert first == again
    assert (first["ai"], first["via"]) == (True, "ticket_credit")
    assert Ticket.objects.filter(tenant=partner, ticket_id="T-1").count() == 1
    assert Consumption.objects.filter(tenant=partner, wallet__unit="ticket_credit").count() == 1
    with pytest.raises(BusinessError) as unknown:
        licensing_services.ticket_qualify(tenant=partner, ticket_id="T-2", client_id="nobody")
    assert unknown.value.status == 404

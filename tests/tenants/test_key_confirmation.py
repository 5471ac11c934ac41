"""The hot writes' remembered API keys (tenants.key_confirmation): a consumption (C08), a ticket's
question (L16) or a session start (S01) may take its key from the process's memory, and then the write's own procedure
confirms it; a key revoked, or cache versions moved, in another process are never served — the
request runs again from a fresh read. Real PostgreSQL outside a transaction (the procedures); the
"other process" is a second connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from credits import db_functions as credit_functions
from credits.factories import K, grant, on_plus
from credits.models import Consumption
from credits.selectors import figures, ticket_credits
from licensing import db_functions as licensing_functions
from licensing.factories import ClientFactory, on_helpdesk
from licensing.models import Ticket
from plans.models import Subscription
from sessions_billing import db_functions as session_functions
from sessions_billing.models import Conversation, UsagePeriod
from sessions_billing.tests.conftest import paid
from tenants import services
from tenants.factories import TenantFactory, second_connection
from tenants.models import ApiKey, CacheVersion

pytestmark = pytest.mark.django_db(transaction=True)

CONSUME = "/api/v1/credits/consume"


@pytest.fixture
def secret(tenant, admin) -> str:
    on_plus(tenant)
    grant(tenant, 5)
    return services.api_key_create(tenant=tenant, name="Agent", actor=admin).secret


def _post(secret: str, path: str, body: dict):
    return Client().post(
        path, body, content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
    )


def _consume(secret: str, key: str, quantity: int = 1):
    return _post(secret, CONSUME, {"feature": "smart_response", "quantity": quantity, "idempotency_key": key})


def _elsewhere(sql: str, params: list) -> None:
    """A change committed by another process: this one's memory does not hear of it."""
    with second_connection() as other:
        other.execute(sql, params)


def _revoke_elsewhere(secret: str) -> None:
    _elsewhere(
        f"UPDATE {ApiKey._meta.db_table} SET revoked_at = now() WHERE key_hash = %s",
        [services._sha256(secret)],
    )


def _new_request() -> None:
    """What Django does when a request starts on a kept connection (close_old_connections): the
    health check is due again. The test client skips that signal, so the test sets it."""
    assert connection.health_check_enabled
    connection.health_check_done = False


def test_c08_a_remembered_key_costs_a_consumption_no_read_of_its_own(secret, tenant):
    """One statement in all: not the key's read, nor Django's `SELECT 1` health check on the kept
    connection (the procedure is the check; is_usable's query is not in CaptureQueriesContext)."""
    assert _consume(secret, "first").status_code == 201
    _new_request()

    with (
        CaptureQueriesContext(connection) as queries,
        mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as health_check,
    ):
        response = _consume(secret, "second")

    assert response.status_code == 201, response.content
    assert [q["sql"].split("(")[0] for q in queries] == [f"CALL {credit_functions.CONSUME.procedure}"]
    assert health_check.call_count == 0
    assert connection.health_check_done
    assert response.json()["balance"] == "3"
    assert figures(tenant_id=tenant.pk).balance == 3 * K


def test_c08_a_key_revoked_in_another_process_is_refused_by_the_write_itself(secret, tenant):
    """The procedure finds the key revoked and writes nothing; the request runs again from a fresh
    read of its key, which answers the 401."""
    assert _consume(secret, "first").status_code == 201
    _revoke_elsewhere(secret)

    with CaptureQueriesContext(connection) as queries:
        response = _consume(secret, "after-revocation")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert response.json()["error"]["code"] == "unauthorized"
    assert queries[0]["sql"].startswith(f"CALL {credit_functions.CONSUME.procedure}")
    assert len(queries) == 2  # the procedure (which wrote nothing), then the key's read
    assert figures(tenant_id=tenant.pk).balance == 4 * K
    assert not Consumption.objects.filter(idempotency_key="after-revocation").exists()
    assert _consume(secret, "and-again").status_code == 401  # no longer remembered


def test_c08_an_answer_made_without_the_database_confirms_a_remembered_key_first(secret):
    """A 422 on the body touches no table: a revoked key still hears only its 401."""
    assert _consume(secret, "first").status_code == 201
    _revoke_elsewhere(secret)

    response = _consume(secret, "bad", quantity=0)

    assert response.status_code == 401


def test_c08_an_answer_made_without_the_database_for_a_key_still_valid_is_sent(secret):
    assert _consume(secret, "first").status_code == 201

    with CaptureQueriesContext(connection) as queries:
        response = _consume(secret, "bad", quantity=0)

    assert response.status_code == 422
    assert len(queries) == 1  # the key's read, before the answer


def test_c19_a_plan_ended_in_another_process_is_answered_at_once(secret, tenant):
    """The remembered versions moved (a database trigger bumped them with the change): the request
    runs again with the new ones and answers the ended plan, instead of the cached active one."""
    assert _consume(secret, "first").status_code == 201
    _elsewhere(
        f"UPDATE {Subscription._meta.db_table} SET state = %s WHERE tenant_id = %s",
        [Subscription.State.EXPIRED, tenant.pk],
    )

    response = _consume(secret, "after-the-end")

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "subscription_ended"
    assert figures(tenant_id=tenant.pk).balance == 4 * K


def test_a_catalog_change_in_another_process_is_seen_by_the_next_write(secret, tenant):
    assert _consume(secret, "first").status_code == 201
    _elsewhere(
        f"UPDATE {CacheVersion._meta.db_table} SET version = version + 1 WHERE scope = %s",
        [CacheVersion.CATALOG],
    )

    with CaptureQueriesContext(connection) as queries:
        response = _consume(secret, "after-the-change")

    assert response.status_code == 201
    assert len([q for q in queries if q["sql"].startswith("CALL ")]) == 2  # refused once, then made
    assert figures(tenant_id=tenant.pk).balance == 3 * K


def test_a_remembered_key_is_read_again_once_its_last_use_is_due(secret):
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as clock:
        assert _consume(secret, "first").status_code == 201
        clock.shift(timedelta(seconds=61))

        with CaptureQueriesContext(connection) as queries:
            assert _consume(secret, "a-minute-later").status_code == 201

    assert len(queries) == 3  # the key's read, its last use, the procedure
    key = ApiKey.objects.get(key_hash=services._sha256(secret))
    assert key.last_used_at == start + timedelta(seconds=61)


def test_a_remembered_key_write_on_a_connection_the_server_closed_runs_again_on_a_new_one(secret, tenant):
    assert _consume(secret, "first").status_code == 201
    before = connection.connection.info.backend_pid
    with second_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [before])
    _new_request()

    with (
        CaptureQueriesContext(connection) as queries,
        mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as health_check,
    ):
        response = _consume(secret, "on-a-new-connection")

    assert response.status_code == 201, response.content
    assert health_check.call_count == 0  # the procedure found the connection closed, not SELECT 1
    # The procedure failed on the closed connection (the failure is not in the log), and the request
    # ran again from the key's read, which a remembered key would not have sent.
    assert [q["sql"].split(" ")[0] for q in queries] == ["SELECT", "CALL"]
    assert connection.connection.info.backend_pid != before
    assert figures(tenant_id=tenant.pk).balance == 3 * K


def test_the_procedure_refuses_a_key_of_another_tenant_and_writes_nothing(secret, tenant):
    """The check itself: a key is current only for its own tenant, unrevoked, at both versions."""
    other = TenantFactory(slug="other")
    on_plus(other)
    grant(other, 5)
    key = ApiKey.objects.get(key_hash=services._sha256(secret))
    versions = services.api_key_authenticate(secret).versions
    args = [None] * len(credit_functions.CONSUME.arguments)
    args[:8] = [other.pk, "smart_response", 1, "forged", "", datetime.now(UTC), None, "{}"]
    args[8] = "api_key"
    args[11] = "Agent"

    def current(tenant_id: int, tenant_version: int, catalog_version: int) -> bool:
        args[0] = tenant_id
        with connection.cursor() as cursor:
            cursor.execute(
                credit_functions.CONSUME.call_sql, [*args, key.pk, tenant_version, catalog_version]
            )
            row = cursor.fetchone()
        return row[-1]

    assert current(other.pk, 0, versions.catalog) is False
    assert current(tenant.pk, versions.tenant + 1, versions.catalog) is False
    assert current(tenant.pk, versions.tenant, versions.catalog + 1) is False
    assert not Consumption.objects.filter(idempotency_key="forged").exists()
    assert current(tenant.pk, versions.tenant, versions.catalog) is True
    assert Consumption.objects.filter(idempotency_key="forged", tenant=tenant).count() == 1


def test_l16_a_ticket_with_a_key_revoked_elsewhere_takes_no_ticket_credit(tenant, admin):
    on_helpdesk(tenant, start=datetime.now(UTC))
    ClientFactory(tenant=tenant, external_id="fabrikam")
    secret = services.api_key_create(tenant=tenant, name="PSA", actor=admin).secret
    ask = {"ticket_id": "HD-1", "client_id": "fabrikam"}
    first = _post(secret, "/api/v1/tickets", ask)
    assert (first.status_code, first.json()["via"]) == (200, "ticket_credit")
    left = ticket_credits(tenant_id=tenant.pk, now=datetime.now(UTC)).remaining

    with CaptureQueriesContext(connection) as queries:
        second = _post(secret, "/api/v1/tickets", {**ask, "ticket_id": "HD-2"})
    assert second.status_code == 200
    assert len(queries) == 1  # the procedure alone

    _revoke_elsewhere(secret)
    third = _post(secret, "/api/v1/tickets", {**ask, "ticket_id": "HD-3"})

    assert third.status_code == 401
    assert ticket_credits(tenant_id=tenant.pk, now=datetime.now(UTC)).remaining == left - 1
    assert not Ticket.objects.filter(ticket_id="HD-3").exists()


def test_s01_a_session_start_with_a_key_revoked_elsewhere_admits_nothing(tenant, admin):
    paid(tenant)
    secret = services.api_key_create(tenant=tenant, name="Agents", actor=admin).secret
    assert (
        _post(secret, "/api/v1/sessions", {"conversation_id": "c-1", "direction": "inbound"}).status_code
        == 201
    )

    with CaptureQueriesContext(connection) as queries:
        second = _post(secret, "/api/v1/sessions", {"conversation_id": "c-2", "direction": "inbound"})
    assert second.status_code == 201, second.content
    assert [q["sql"].split("(")[0] for q in queries] == [f"CALL {session_functions.START.procedure}"]

    _revoke_elsewhere(secret)
    third = _post(secret, "/api/v1/sessions", {"conversation_id": "c-3", "direction": "inbound"})

    assert third.status_code == 401
    assert not Conversation.objects.filter(conversation_id="c-3").exists()
    assert UsagePeriod.objects.get(tenant=tenant).billable_sessions == 2


def test_l15_l16_a_remembered_ticket_via_a_license_and_asked_again_send_no_read_of_the_key(tenant, admin):
    """The README's round trips with a remembered key: a licensed client's ticket is the procedure
    (which confirms the key), the ticket credits left and the ticket's row; a ticket asked again is
    the procedure alone."""
    on_helpdesk(tenant, start=datetime.now(UTC))
    ClientFactory(tenant=tenant, external_id="fabrikam", ai_license_since=datetime.now(UTC))
    secret = services.api_key_create(tenant=tenant, name="PSA", actor=admin).secret
    assert _post(secret, "/api/v1/tickets", {"ticket_id": "HD-0", "client_id": "fabrikam"}).status_code == 200

    with CaptureQueriesContext(connection) as licensed:
        first = _post(secret, "/api/v1/tickets", {"ticket_id": "HD-1", "client_id": "fabrikam"})
    with CaptureQueriesContext(connection) as again:
        second = _post(secret, "/api/v1/tickets", {"ticket_id": "HD-1", "client_id": "fabrikam"})

    assert (first.json()["via"], second.json()) == ("license", first.json())
    statements = [q["sql"].split("(")[0].split()[0] for q in licensed]
    assert statements[0] == "CALL"
    assert len([q for q in statements if q not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]) == 3
    assert [q["sql"].split("(")[0] for q in again] == [f"CALL {licensing_functions.QUALIFY.procedure}"]


def test_a_key_revoked_in_this_process_is_forgotten_at_once(secret, tenant, admin):
    """The Keys page's revocation drops this process's memory of the key: the next request reads it
    (and gets its 401) without sending the write first."""
    assert _consume(secret, "first").status_code == 201
    key = ApiKey.objects.get(key_hash=services._sha256(secret))
    services.api_key_revoke(tenant=tenant, api_key=key, actor=admin)

    with CaptureQueriesContext(connection) as queries:
        response = _consume(secret, "after-revocation")

    assert response.status_code == 401
    assert not any(q["sql"].startswith("CALL ") for q in queries)
    assert figures(tenant_id=tenant.pk).balance == 4 * K

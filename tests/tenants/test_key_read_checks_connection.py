"""The API key's read is the request's connection health check (tenants.services._first_read): on a
connection kept from an earlier request, Django's `SELECT 1` is not sent before it, and a kept
connection that the server has closed meanwhile is replaced and the read sent again, so the call
still answers. Real PostgreSQL: the server really ends the connection (pg_terminate_backend)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from tenants import services
from tenants.factories import second_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def secret(tenant, admin) -> str:
    return services.api_key_create(tenant=tenant, name="Agent", actor=admin).secret


def _new_request() -> None:
    """What Django does when a request starts on a kept connection (close_old_connections): the
    health check is due again. The test client skips that signal, so the test sets it."""
    assert connection.health_check_enabled
    connection.health_check_done = False


def _terminate_server_side() -> None:
    pid = connection.connection.info.backend_pid
    with second_connection() as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def _get(secret: str):
    return Client().get("/api/v1/tenant", headers={"Authorization": f"Bearer {secret}"})


def test_an_api_call_on_a_kept_connection_sends_no_select_1_first(secret):
    assert _get(secret).status_code == 200
    _new_request()

    with mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as health_check:
        response = _get(secret)

    assert response.status_code == 200
    assert health_check.call_count == 0
    assert connection.health_check_done  # the key's read counted as the check


def test_an_api_call_on_a_connection_the_server_closed_still_answers_on_a_new_one(secret):
    assert _get(secret).status_code == 200
    before = connection.connection.info.backend_pid
    _terminate_server_side()
    _new_request()

    response = _get(secret)

    assert response.status_code == 200, response.content
    assert response.json()["tenant"]["slug"] == "acme"
    assert connection.connection.info.backend_pid != before


def test_a_closed_connection_with_a_wrong_key_is_still_a_401(secret):
    assert _get(secret).status_code == 200
    _terminate_server_side()
    _new_request()

    assert _get("alw_00000000_" + "x" * 43).status_code == 401


def test_an_error_on_a_live_connection_is_not_sent_again(secret):
    """Only a broken connection is replaced: a statement timeout or a cancel on a live one is the
    request's error, as Django's health check (is_usable) would not have replaced it either."""
    from django.db import OperationalError
    from django.db.backends.utils import CursorWrapper

    assert _get(secret).status_code == 200
    _new_request()
    kept = connection.connection
    calls = []

    def canceled(self, sql, params=None):
        calls.append(sql)
        raise OperationalError("canceling statement due to statement timeout")

    with mock.patch.object(CursorWrapper, "execute", canceled), pytest.raises(OperationalError):
        services.api_key_authenticate(secret)

    assert len(calls) == 1
    assert connection.connection is kept
    assert not kept.closed

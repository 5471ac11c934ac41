"""A request's first statement as its connection's health check.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query on a connection kept from an
earlier request: a round trip on every API call. The integration API's first statement (the key's
read, or a hot write's procedure when its key is remembered: `tenants.key_confirmation`) is the
check instead. When the kept connection turns out to be broken (the server restarted, or closed it:
psycopg then says it is closed), the connection is closed and `ConnectionWasClosed` raised, so that
the next cursor connects afresh; what to send again is the caller's to decide, as only it knows
whether its statement is safe to repeat. An error on a live connection is the statement's own, as
Django's check (`is_usable`) would not have replaced the connection either."""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError, connection


class ConnectionWasClosed(Exception):
    """The kept connection was closed by the server before the statement ran: it is replaced."""


def execute_first(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """One row of `sql`, sent without Django's `SELECT 1` before it when it is the request's first
    query on a kept connection outside a transaction (otherwise a plain statement)."""
    db: Any = connection  # django-stubs do not declare the health check's attributes
    checking = (
        db.connection is not None
        and db.health_check_enabled
        and not db.health_check_done
        and not db.in_atomic_block
    )
    if checking:
        db.health_check_done = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except (OperationalError, InterfaceError):
        if not checking or db.connection is None or not db.connection.closed:
            raise
        connection.close()  # the next cursor connects afresh
        raise ConnectionWasClosed from None

"""Helpers shared by the tenants tests (not a test module: pytest collects only test_*.py)."""

from __future__ import annotations

import html
import re

from django.conf import settings
from django.contrib.messages import get_messages
from django.core.mail import EmailMessage
from django.db import connection
from django.db.models import Q
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext

from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Notification, Tenant, User

TENANT_MODELS = (Tenant, User, Membership, Invitation, ApiKey, AuditEvent, Notification)


def db_rows() -> dict[str, list[dict]]:
    """Every row of the tenants tables, to assert that a refused request changed nothing."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in TENANT_MODELS}


def tenant_events():
    """The audit events of the tenants app (tenant, members, invitations, API keys) in order; other
    apps (plans, billing) log their own actions alongside, which these tests leave to those apps."""
    prefixes = ("tenant.", "member.", "invitation.", "api_key.")
    return AuditEvent.objects.filter(
        Q.create([("action__startswith", p) for p in prefixes], connector=Q.OR)
    ).order_by("id")


def messages_of(response: HttpResponse) -> list[str]:
    """The flash messages of a response: on a redirect, those its request queued for the next page
    (not ones left over from earlier requests); on a page, those it shows."""
    if response.status_code in (301, 302):
        return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]  # type: ignore[attr-defined]
    shown = re.findall(
        r'<div class="flash [^"]*" role="(?:status|alert)" data-dismissible><span>(.*?)</span>',
        response.content.decode(),
        re.S,
    )
    return [html.unescape(m) for m in shown]


def link_in(message: EmailMessage) -> str:
    """The path of the one site link in an email's text body (both bodies carry the same link)."""
    links = re.findall(re.escape(settings.SITE_URL) + r"(/\S+)", message.body)
    assert len(set(links)) == 1, links
    html = message.alternatives[0].content
    assert settings.SITE_URL + links[0] in html
    return links[0]


def tables_containing(text: str) -> list[str]:
    """Names of the database tables where any column of any row contains `text`."""
    hits = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" t WHERE strpos(row_to_json(t)::text, %s) > 0', [text]
            )
            if cursor.fetchone()[0]:
                hits.append(table)
    return hits


def query_count(fn) -> int:
    """How many SQL queries `fn()` runs."""
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def logged_in_user_id(client) -> str | None:
    return client.session.get("_auth_user_id")

"""The hot endpoints encode their answers themselves (tenants.api_answer) instead of returning data
for ninja to validate through the response schema and encode. Their answers are byte for byte what
ninja's own rendering (`Operation._result_to_response`) makes of the same data, with the same
headers: sessions (inbound, outbound, with an agent or none, dated, ended), every product's
admission (allowed and refused), a consumption and a ticket's answer."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone
from ninja import Status

from config.api import api
from credits.api import _consume_out
from credits.factories import grant, on_plus
from credits.services import credits_consume
from licensing.api import _ticket_out
from licensing.factories import ClientFactory, on_helpdesk
from licensing.services import ticket_qualify
from plans.admission import check
from plans.api import admission
from sessions_billing import services
from sessions_billing.api import _out
from sessions_billing.tests.conftest import paid
from tenants.api_answer import json_answer
from tenants.models import Tenant


def _operation(method: str, path: str) -> Any:
    for bound in api._get_bound_routers():
        for route, view in bound.path_operations.items():
            for operation in view.operations:
                if route == path and method in operation.methods:
                    return operation
    raise AssertionError(f"no operation {method} {path}")


def _ninja(method: str, path: str, data: Any, status: int) -> HttpResponse:
    """What ninja answers for `data` returned by the view of `method path` with `status`."""
    operation = _operation(method, path)
    request = RequestFactory().generic(method, "/api/v1" + path)
    return operation._result_to_response(request, Status(status, data), api.create_temporal_response(request))


def _same(ours: HttpResponse, theirs: HttpResponse) -> None:
    assert ours.status_code == theirs.status_code
    assert list(ours.items()) == list(theirs.items())
    assert ours.content == theirs.content


@pytest.fixture
def agents(tenant):
    paid(tenant)
    return tenant


@pytest.mark.parametrize(
    ("direction", "agent", "late"),
    [("inbound", "support-bot", False), ("outbound", None, False), ("inbound", None, True)],
)
def test_a_session_start_answers_what_ninja_renders(agents, direction, agent, late):
    at = timezone.now() - timedelta(hours=2, microseconds=123) if late else None
    session, created = services.session_start(
        tenant=agents, conversation_id="c/1", direction=direction, agent=agent, at=at
    )
    again, _ = services.session_start(tenant=agents, conversation_id="c/1", direction=direction)

    _same(json_answer(_out(session), status=201), _ninja("POST", "/sessions", _out(session), 201))
    _same(json_answer(_out(again)), _ninja("POST", "/sessions", _out(again), 200))
    assert created


def test_an_event_answers_what_ninja_renders(agents):
    services.session_start(tenant=agents, conversation_id="c-2", direction="outbound", agent="bot")
    for kind in ("customer_message", "end"):
        session = services.session_event(tenant=agents, conversation_id="c-2", type=kind)
        path = "/sessions/{path:conversation_id}/events"
        _same(json_answer(_out(session)), _ninja("POST", path, _out(session), 200))
    assert session.ended


def _admission(tenant: Tenant, product: str) -> HttpResponse:
    """The admission view's own answer (its key read by the API: the tenant, no cache versions, no
    companions)."""
    request = RequestFactory().get("/")
    request.auth = SimpleNamespace(tenant=tenant, versions=None, companions={})  # type: ignore[attr-defined]
    return admission(request, product)


@pytest.mark.parametrize("product", ["ai_agents", "ai_credits", "helpdesk_ai"])
def test_every_admission_answers_what_ninja_renders(tenant, product):
    for step in range(2):  # no subscription (refused), then one (allowed)
        if step:
            paid(tenant)
            on_plus(tenant)
            on_helpdesk(tenant)
        found = check(tenant=tenant, product=product)
        assert found is not None
        assert found.allowed is bool(step)
        _same(_admission(tenant, product), _ninja("GET", "/entitlements/{product}/admission", found, 200))


def test_a_consumption_answers_what_ninja_renders(tenant):
    on_plus(tenant)
    grant(tenant, 5)
    outcome = credits_consume(
        tenant=tenant, feature="ai_review", quantity=3, idempotency_key="k-1", client_id="acme"
    )
    again = credits_consume(
        tenant=tenant, feature="ai_review", quantity=3, idempotency_key="k-1", client_id="acme"
    )

    _same(
        json_answer(_consume_out(outcome.answer), status=201),
        _ninja("POST", "/credits/consume", outcome.answer, 201),
    )
    _same(json_answer(_consume_out(again.answer)), _ninja("POST", "/credits/consume", again.answer, 200))


def test_a_ticket_answers_what_ninja_renders(tenant):
    on_helpdesk(tenant)
    ClientFactory(tenant=tenant, external_id="acme-client")
    for ticket in ("t-1", "t-1", "t-2"):
        answer = ticket_qualify(tenant=tenant, ticket_id=ticket, client_id="acme-client")
        _same(json_answer(_ticket_out(answer)), _ninja("POST", "/tickets", answer, 200))

"""The integration API's short middleware chain (config.middleware.ApiMiddlewareChain) answers
exactly what the whole page chain answers: the same status, the same headers in the same order,
the same body, for successes and for every kind of refusal (401, 402, 404, 405, 409, 422, a NUL,
a Host we do not serve). Each request is sent through both chains from the same database state
(a savepoint rolled back between them) at the same frozen instant."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.conf import settings as dj_settings
from django.db import transaction
from django.test import Client, override_settings

from credits.factories import grant, on_plus
from licensing.factories import ClientFactory, on_helpdesk
from sessions_billing.tests.conftest import paid
from tenants.cache import clear_all
from tenants.factories import TenantFactory
from tenants.models import Tenant, User
from tenants.services import api_key_create

NOW = datetime(2022, 7, 4, 12, 30, 15, 123456, tzinfo=UTC)
JSON = "application/json"


@pytest.fixture
def clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _client(middleware: list[str]) -> Client:
    client = Client()
    with override_settings(MIDDLEWARE=middleware):
        client.handler.load_middleware()  # kept by the client for its later requests
    return client


@pytest.fixture
def chains(clock) -> tuple[Client, Client]:
    """(the settings' chain, which hands /api/ to API_MIDDLEWARE; the whole page chain for every path)."""
    assert dj_settings.MIDDLEWARE[0] == "config.middleware.ApiMiddlewareChain"
    return _client(dj_settings.MIDDLEWARE), _client(dj_settings.MIDDLEWARE[1:])


@pytest.fixture
def secret(tenant, admin, clock) -> str:
    return acme_on_every_product(tenant, admin)


def acme_on_every_product(tenant: Tenant, admin: User) -> str:
    """Acme on AI Agents (Growth), AI Plus with 1 credit left, AI Essentials with one client: its
    new API key's secret."""
    paid(tenant)
    on_plus(tenant)
    grant(tenant, 1)
    on_helpdesk(tenant)
    ClientFactory(tenant=tenant, external_id="acme-client")
    return api_key_create(tenant=tenant, name="runtime", actor=admin).secret


def _answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes, dict[str, str]]:
    cookies = {name: morsel.OutputString() for name, morsel in response.cookies.items()}
    return response.status_code, list(response.items()), response.content, cookies


def _both(chains: tuple[Client, ...], send: Callable[[Client], Any]) -> list[Any]:
    """The same request through each chain, each from the state before it."""
    answers = []
    for client in chains:
        clear_all()  # the per-process caches: each chain computes its answer itself
        savepoint = transaction.savepoint_create()
        answers.append(send(client))
        transaction.savepoint_rollback(savepoint)
    return answers


def _post(path: str, body: Any, **headers: str) -> Callable[[Client], Any]:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return lambda c: c.post(path, data=data, content_type=JSON, headers=headers)


def _get(path: str, **headers: str) -> Callable[[Client], Any]:
    return lambda c: c.get(path, headers=headers)


def _cases(secret: str) -> list[tuple[str, Callable[[Client], Any], int]]:
    key = {"authorization": f"Bearer {secret}"}
    start = {"conversation_id": "conv-1", "direction": "inbound", "agent": "bot"}
    consume = {"feature": "ai_review", "quantity": 1, "idempotency_key": "k-1", "client_id": "c"}
    return [
        ("entitlements", _get("/api/v1/entitlements", **key), 200),
        ("admission", _get("/api/v1/entitlements/ai_agents/admission", **key), 200),
        ("unknown product", _get("/api/v1/entitlements/ai_agent/admission", **key), 404),
        ("no key", _get("/api/v1/entitlements"), 401),
        ("a wrong key", _get("/api/v1/entitlements", authorization="Bearer alw_nope_nope"), 401),
        ("a session", _post("/api/v1/sessions", start, **key), 201),
        ("a session in the past", _post("/api/v1/sessions", start | {"at": "2022-07-04T10:00:00Z"}, **key), 201),
        ("a session far ahead", _post("/api/v1/sessions", start | {"at": "2022-07-05T10:00:00Z"}, **key), 422),
        ("a session without direction", _post("/api/v1/sessions", {"conversation_id": "x"}, **key), 422),
        ("a body that is not JSON", _post("/api/v1/sessions", "{nope", **key), 422),
        ("a NUL in the body", _post("/api/v1/sessions", start | {"agent": "b\x00t"}, **key), 422),
        ("an event of no session", _post("/api/v1/sessions/nope/events", {"type": "end"}, **key), 404),
        ("a consumption", _post("/api/v1/credits/consume", consume, **key), 201),
        ("too many", _post("/api/v1/credits/consume", consume | {"quantity": 11}, **key), 402),
        ("unknown feature", _post("/api/v1/credits/consume", consume | {"feature": "nope"}, **key), 422),
        ("a ticket", _post("/api/v1/tickets", {"ticket_id": "t-1", "client_id": "acme-client"}, **key), 200),
        ("an unknown client", _post("/api/v1/tickets", {"ticket_id": "t-2", "client_id": "nope"}, **key), 404),
        ("no such path", _get("/api/v1/nope", **key), 404),
        ("a trailing slash", _get("/api/v1/entitlements/", **key), 404),
        ("a method not allowed", lambda c: c.delete("/api/v1/entitlements", headers=key), 405),
        ("a NUL in the query", _get("/api/v1/entitlements?x=%00", **key), 422),
        ("a Host we do not serve", lambda c: c.get("/api/v1/entitlements", headers=key, HTTP_HOST="evil.test"), 400),
        ("the OpenAPI schema", _get("/api/v1/openapi.json"), 200),
    ]  # fmt: skip


def test_the_api_chain_answers_exactly_what_the_page_chain_answers(chains, secret):
    for name, send, status in _cases(secret):
        short, whole = _both(chains, send)
        assert short.status_code == status, (name, short.content)
        assert _answer(short) == _answer(whole), name


def test_a_repeated_write_answers_the_same_through_either_chain(chains, secret):
    """The first answer stored by one chain is the answer the other replays (200, the same body)."""
    short, whole = chains
    start = _post(
        "/api/v1/sessions",
        {"conversation_id": "c-9", "direction": "inbound"},
        authorization=f"Bearer {secret}",
    )
    consume = _post(
        "/api/v1/credits/consume",
        {"feature": "ai_review", "quantity": 1, "idempotency_key": "k-9"},
        authorization=f"Bearer {secret}",
    )  # fmt: skip
    for send in (start, consume):
        first = send(short)
        again_short, again_whole = send(short), send(whole)
        assert first.status_code == 201
        assert again_short.status_code == again_whole.status_code == 200
        assert again_short.content == again_whole.content == first.content
        assert list(again_short.items()) == list(again_whole.items())


def test_api_requests_skip_the_page_middleware_and_pages_keep_it(secret, admin, client_for):
    api = Client().get("/api/v1/entitlements", headers={"authorization": f"Bearer {secret}"})
    page = client_for(admin).get("/t/acme/")
    docs = Client().get("/api/v1/docs")

    assert [api.status_code, page.status_code, docs.status_code] == [200, 200, 200]
    for attribute in ("session", "user", "htmx", "_messages"):
        assert not hasattr(api.wsgi_request, attribute), attribute
        assert hasattr(page.wsgi_request, attribute), attribute
        assert hasattr(docs.wsgi_request, attribute), attribute  # the docs page is a page


def test_the_api_chain_is_the_page_chain_less_the_page_middleware():
    whole = dj_settings.MIDDLEWARE[1:]
    assert [m for m in whole if m in dj_settings.API_MIDDLEWARE] == dj_settings.API_MIDDLEWARE
    assert set(whole) - set(dj_settings.API_MIDDLEWARE) == dj_settings.PAGE_ONLY_MIDDLEWARE
    for kept in (
        "config.middleware.ApiErrorShapeMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.csp.ContentSecurityPolicyMiddleware",
        "config.middleware.PermissionsPolicyMiddleware",
        "config.middleware.RejectNulMiddleware",
        "config.middleware.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ):
        assert kept in dj_settings.API_MIDDLEWARE


def test_another_tenant_key_is_answered_for_its_own_tenant_through_the_short_chain(chains, secret, admin):
    other = TenantFactory(slug="globex")
    other_secret = api_key_create(tenant=other, name="runtime", actor=admin).secret
    short, whole = _both(chains, _get("/api/v1/entitlements", authorization=f"Bearer {other_secret}"))
    assert short.json()["tenant"] == "globex"
    assert _answer(short) == _answer(whole)

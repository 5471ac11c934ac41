"""The sessions API's input handling: bad input is a 422 with field errors and stores nothing,
never a 500; the list, one session, the usage; the OpenAPI page documents every status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_billing.models import Agent, Conversation
from sessions_billing.tests.conftest import paid

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "conversation_id"),
        ({"conversation_id": "a"}, "direction"),
        ({"conversation_id": 12, "direction": "inbound"}, "conversation_id"),
        ({"conversation_id": "", "direction": "inbound"}, "conversation_id"),
        ({"conversation_id": "x" * 201, "direction": "inbound"}, "conversation_id"),
        ({"conversation_id": "nul\x00id", "direction": "inbound"}, "conversation_id"),
        ({"conversation_id": "a", "direction": "sideways"}, "direction"),
        ({"conversation_id": "a", "direction": "inbound", "agent": "b\x00"}, "agent"),
        ({"conversation_id": "a", "direction": "inbound", "agent": ["x"]}, "agent"),
        ({"conversation_id": "a", "direction": "inbound", "at": "yesterday"}, "at"),
        ({"conversation_id": "a", "direction": "inbound", "at": 1e30}, "at"),
        ({"conversation_id": "a", "direction": "inbound", "at": "2026-01-01T00:00:00"}, "at"),
    ],
)
def test_bad_starts_are_422_with_field_errors_and_store_nothing(tenant, growth, api_for, body, field):
    response = api_for(tenant).post("/sessions", body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field}:")
    assert any(field in d["loc"] for d in error["details"])
    assert Conversation.objects.count() == 0
    assert Agent.objects.count() == 0


def test_bad_bodies_are_never_a_500(tenant, growth, api_for):
    api = api_for(tenant)
    for raw in (
        "not json",
        "[]",
        "null",
        '{"conversation_id": "a", "direction": "inbound", "at": "9999999999-01-01"}',
    ):
        response = api.client.post(
            "/api/v1/sessions", data=raw, content_type="application/json", HTTP_AUTHORIZATION=api.auth
        )
        assert response.status_code in (400, 422), raw
    api.start("ok")
    for body in (
        {"type": "shout"},
        {},
        {"type": "end", "at": "2026-01-01"},
        {"type": 3},
        {"type": "end", "at": "2026-01-01T00:00:00Z"},
    ):
        response = api.event("ok", **body) if "type" in body else api.post("/sessions/ok/events", body)
        assert response.status_code == 422, body
    for path in ("/sessions/%00", "/sessions/" + "x" * 300, "/sessions/a%00b/events"):
        response = api.get(path) if not path.endswith("events") else api.post(path, {"type": "end"})
        assert response.status_code in (404, 422), path
    assert api.get("/sessions?limit=100000").status_code == 422
    assert api.get("/sessions?before=%00").status_code == 422
    assert api.get("/sessions?since=notadate").status_code == 422
    assert api.get("/sessions?until=9999-12-31&since=0001-01-01").status_code == 200
    # A cursor this API could not have given (its moment out of range) is refused, never a 500.
    assert api.get("/sessions?before=99999999999999999999999.1").status_code == 422


def test_conversation_ids_may_hold_slashes(tenant, growth, api_for):
    api = api_for(tenant)
    assert api.start("chan/42/thread").status_code == 201
    assert api.get("/sessions/chan/42/thread").json()["conversation_id"] == "chan/42/thread"
    assert api.event("chan/42/thread", "agent_message").status_code == 200


@pytest.mark.parametrize("conversation_id", ["p/events", "/events", "a/b/events"])
def test_an_id_ending_in_the_events_path_is_refused_at_the_start(tenant, growth, api_for, conversation_id):
    """S04: every session can be read back; GET /sessions/p/events would be the events route."""
    api = api_for(tenant)
    answer = api.start(conversation_id)
    assert answer.status_code == 422
    assert '"/events"' in answer.json()["error"]["message"]
    assert not Conversation.objects.filter(tenant=tenant).exists()
    assert api.start("events").status_code == 201  # only the suffix is taken
    assert api.start("p/events/x").status_code == 201
    assert api.get("/sessions/p/events/x").json()["conversation_id"] == "p/events/x"


@pytest.mark.parametrize("conversation_id", [".", "..", "x/..", "a/../b", "./a", "a/."])
def test_an_id_with_dot_segments_is_refused_at_the_start(tenant, growth, api_for, conversation_id):
    """S04: found by an outsider probe: ".." was admitted, but curl, requests and browsers resolve dot
    segments away before sending a URL (RFC 3986 5.2.4), so GET /sessions/.. asked for another path."""
    api = api_for(tenant)
    answer = api.start(conversation_id)
    assert answer.status_code == 422
    assert '"." or ".."' in answer.json()["error"]["message"]
    assert not Conversation.objects.filter(tenant=tenant).exists()
    for kept in ("a.b", "...", "a/.b", "v1.2/..x"):
        assert api.start(kept).status_code == 201, kept


def test_every_session_body_has_the_documented_fields(tenant, growth, api_for):
    api = api_for(tenant)
    body = api.start("f", agent="bot").json()
    assert set(body) == {
        "conversation_id",
        "agent",
        "direction",
        "started_at",
        "last_activity_at",
        "ended_at",
        "billable_sessions",
        "answered",
        "ended",
    }
    assert (body["agent"], body["direction"], body["answered"], body["ended"]) == (
        "bot",
        "inbound",
        True,
        False,
    )


def test_the_list_filters_and_pages_newest_first(tenant, growth, api_for):
    api = api_for(tenant)
    now = timezone.now()
    for i in range(7):
        api.start(
            f"s{i}",
            agent="a" if i % 2 else "b",
            direction="outbound" if i == 3 else "inbound",
            at=(now - timedelta(hours=10 - i)).isoformat(),
        )
    first = api.get("/sessions?limit=3").json()
    assert [s["conversation_id"] for s in first["items"]] == ["s6", "s5", "s4"]
    second = api.get(f"/sessions?limit=3&before={first['next_cursor']}").json()
    assert [s["conversation_id"] for s in second["items"]] == ["s3", "s2", "s1"]
    third = api.get(f"/sessions?limit=3&before={second['next_cursor']}").json()
    assert ([s["conversation_id"] for s in third["items"]], third["next_cursor"]) == (["s0"], None)
    assert [s["conversation_id"] for s in api.get("/sessions?agent=a").json()["items"]] == ["s5", "s3", "s1"]
    assert [s["conversation_id"] for s in api.get("/sessions?q=S4").json()["items"]] == ["s4"]
    assert [s["conversation_id"] for s in api.get("/sessions?answered=false").json()["items"]] == ["s3"]


def test_usage_of_the_current_period(tenant, growth, api_for):
    api = api_for(tenant)
    api.start("u1")
    assert api.get("/usage").json() == {
        "product": "ai_agents",
        "period_start": growth.current_period_start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "period_end": growth.current_period_end.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "billable_sessions": 1,
        "session_limit": 1500,
        "limit_source": "plan",
        "trial_sessions_left": None,
        "trial_days_left": None,
        "warnings": [],
    }


def test_the_openapi_page_documents_statuses_with_examples(client):
    schema = client.get("/api/v1/openapi.json").json()
    start = schema["paths"]["/api/v1/sessions"]["post"]
    assert set(start["responses"]) >= {"200", "201", "402", "422"}
    examples = start["responses"]["402"]["content"]["application/json"]["examples"]
    assert set(examples) == {"subscription_ended", "payment_overdue", "session_limit_reached"}
    events = schema["paths"]["/api/v1/sessions/{conversation_id}/events"]["post"]
    assert set(events["responses"]) >= {"200", "404", "409", "422"}
    assert (
        "examples"
        in schema["paths"]["/api/v1/usage"]["get"]["responses"]["200"]["content"]["application/json"]
    )


def test_outbound_is_not_answered_until_the_customer_speaks(tenant, api_for):
    paid(tenant)
    api = api_for(tenant)
    api.start("o", direction="outbound")
    assert [s["conversation_id"] for s in api.get("/sessions?answered=false").json()["items"]] == ["o"]
    api.event("o", "customer_message")
    assert api.get("/sessions?answered=false").json()["items"] == []

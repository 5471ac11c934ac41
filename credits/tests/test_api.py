"""The credits integration API: every status of every operation, with the exact bodies, and the
OpenAPI page documenting each of them with an example."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from credits.factories import grant
from credits.models import Consumption, Entry, Hold, Source
from credits.tests.conftest import START
from credits.tests.helpers import K, check_invariants
from plans.models import Subscription
from plans.selectors import MSG_ENDED, MSG_OVERDUE
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db

BASE = "/api/v1/credits"


class Api:
    def __init__(self, secret: str) -> None:
        self.client = Client()
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def post(
        self, path: str, body: Any = None, raw: str | None = None, content_type: str = "application/json"
    ):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(BASE + path, data=data, content_type=content_type, **self.auth)

    def get(self, path: str, **params: Any):
        return self.client.get(BASE + path, params, **self.auth)


@pytest.fixture
def api(plus, admin) -> Api:
    return Api(api_key_create(tenant=plus, name="runtime", actor=admin).secret)


def error(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


# --- consume -------------------------------------------------------------------------------------


def test_consume_answers_201_with_decimal_strings_then_200_with_the_same_body(api, plus):
    g = grant(plus, 50)
    body = {"feature": "ai_review", "quantity": 1, "idempotency_key": "r-1", "client_id": "acme-support"}
    first = api.post("/consume", body)
    assert first.status_code == 201
    assert first.json() == {
        "consumed": "0.1",
        "feature": "ai_review",
        "quantity": 1,
        "idempotency_key": "r-1",
        "client_id": "acme-support",
        "balance": "49.9",
        "held": "0",
        "available": "49.9",
        "grants": [{"grant_id": g.pk, "source": "plan_included", "credits": "0.1"}],
        "created_at": "2022-05-02T10:00:00Z",
    }
    again = api.post("/consume", body)
    assert (again.status_code, again.json()) == (200, first.json())
    assert Consumption.objects.count() == 1
    entry = Entry.objects.get(kind="consume")
    assert (entry.actor_type, entry.actor_label, entry.client_id) == (
        "api_key",
        entry.actor_label,
        "acme-support",
    )
    assert entry.actor_label.startswith("API key runtime (")


def test_consume_same_key_other_body_is_409(api, plus):
    grant(plus, 50)
    api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"})
    response = api.post("/consume", {"feature": "ai_review", "quantity": 2, "idempotency_key": "k"})
    assert error(response) == (
        409,
        "idempotency_conflict",
        "This idempotency key was already used with a different request.",
    )


def test_consume_without_enough_credit_is_402_and_stores_no_key(api, plus):
    grant(plus, "0.4")
    body = {"feature": "smart_response", "quantity": 1, "idempotency_key": "k"}
    assert error(api.post("/consume", body)) == (
        402,
        "insufficient_credits",
        "Not enough AI credits: 1 needed, 0.4 available.",
    )
    assert not Consumption.objects.exists()
    grant(plus, 1)
    assert api.post("/consume", body).status_code == 201  # the retry goes through


def test_consume_with_an_ended_plan_is_402_subscription_ended_with_the_spec_message(api, plus):
    grant(plus, 50)
    Subscription.objects.filter(tenant=plus).update(state="expired")
    response = api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"})
    assert error(response) == (402, "subscription_ended", MSG_ENDED)


def test_consume_when_overdue_is_402_payment_overdue(api, plus):
    grant(plus, 50)
    Subscription.objects.filter(tenant=plus).update(state="suspended")
    response = api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"})
    assert error(response) == (402, "payment_overdue", MSG_OVERDUE)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"quantity": 1, "idempotency_key": "k"},
        {"feature": "ai_review", "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": 1},
        {"feature": "ai_review", "quantity": 0, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": -3, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": "5", "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": 1.5, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": True, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": 10**30, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": 1_000_001, "idempotency_key": "k"},
        {"feature": "ai_review", "quantity": 1, "idempotency_key": ""},
        {"feature": "ai_review", "quantity": 1, "idempotency_key": "x" * 201},
        {"feature": "ai_review", "quantity": 1, "idempotency_key": 12},
        {"feature": "AI REVIEW", "quantity": 1, "idempotency_key": "k"},
        [1, 2],
        "text",
    ],
)
def test_consume_refuses_bad_input_with_422_and_changes_nothing(api, plus, body):
    grant(plus, 50)
    response = api.post("/consume", body)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert not Consumption.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", ""])
def test_consume_refuses_a_body_that_is_not_json(api, plus, raw):
    response = api.post("/consume", raw=raw)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        {"feature": "ai_review", "quantity": 1, "idempotency_key": "a\x00b"},
        {"feature": "ai_review", "quantity": 1, "idempotency_key": "k", "client_id": "c\x00"},
        {"feature": "ai_review\x00", "quantity": 1, "idempotency_key": "k"},
    ],
)
def test_a_nul_in_any_field_is_bad_input_422_and_changes_nothing(api, plus, body):
    grant(plus, 50)
    response = api.post("/consume", body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert not Consumption.objects.exists()


def test_consume_of_an_unknown_feature_is_422(api, plus):
    grant(plus, 5)
    response = api.post("/consume", {"feature": "image_gen", "quantity": 1, "idempotency_key": "k"})
    assert error(response) == (
        422,
        "unknown_feature",
        "Unknown feature 'image_gen'. Use one of: ai_review, smart_response.",
    )


def test_every_credits_endpoint_needs_a_key():
    client = Client()
    for path in ("/consume", "/refund", "/holds", "/holds/1/commit", "/holds/1/release"):
        response = client.post(BASE + path, data="{}", content_type="application/json")
        assert error(response)[:2] == (401, "unauthorized")
    for path in ("", "/ledger"):
        assert error(client.get(BASE + path))[:2] == (401, "unauthorized")


# --- refund --------------------------------------------------------------------------------------


def test_refund_answers_200_then_the_same_and_404_for_an_unknown_key(api, plus):
    grant(plus, 50)
    api.post("/consume", {"feature": "smart_response", "quantity": 1, "idempotency_key": "k"})
    first = api.post("/refund", {"idempotency_key": "k"})
    assert first.status_code == 200
    assert first.json() == {
        "refunded": "1",
        "expired": "0",
        "idempotency_key": "k",
        "balance": "50",
        "held": "0",
        "available": "50",
        "refunded_at": "2022-05-02T10:00:00Z",
    }
    again = api.post("/refund", {"idempotency_key": "k"})
    assert (again.status_code, again.json()) == (200, first.json())
    assert Entry.objects.filter(kind="refund").count() == 1
    assert error(api.post("/refund", {"idempotency_key": "nope"})) == (
        404,
        "not_found",
        "No consumption has this idempotency key.",
    )
    assert api.post("/refund", {}).status_code == 422


# --- holds ---------------------------------------------------------------------------------------


def test_a_commit_body_that_is_not_its_json_object_commits_nothing(api, plus):
    """Only an empty body means "the whole hold": a body read as anything else is a 422, and the
    hold stays as it was — never committed in full because its body was not understood."""
    grant(plus, 50)
    hold = api.post("/holds", {"credits": "2", "idempotency_key": "llm-x"}).json()
    path = f"/holds/{hold['id']}/commit"
    for raw, content_type in (
        ('"0.5"', "application/json"),
        ("null", "application/json"),
        ("[1]", "application/json"),
        ("{", "application/json"),
        ("credits=0.5", "application/x-www-form-urlencoded"),
        ('{"credit": "0.5"}', "application/json"),  # misspelled: not "no amount"
        ('{"credits": "0.5", "note": "x"}', "application/json"),
    ):
        refused = api.post(path, raw=raw, content_type=content_type)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_request"), raw
    assert Hold.objects.get(pk=hold["id"]).status == "held"
    # The JSON object is read whatever the Content-Type says, as on every other endpoint.
    done = api.post(path, raw='{"credits": "0.5"}', content_type="text/plain")
    assert (done.status_code, done.json()["committed"], done.json()["released"]) == (200, "0.5", "1.5")
    # A form post without fields has no body: the whole hold, as documented.
    other = api.post("/holds", {"credits": "2", "idempotency_key": "llm-y"}).json()
    whole = api.client.post(BASE + f"/holds/{other['id']}/commit", **api.auth)
    assert (whole.status_code, whole.json()["committed"]) == (200, "2")


def test_hold_commit_release_statuses(api, plus, clock):
    grant(plus, 50)
    placed = api.post("/holds", {"credits": "2.5", "idempotency_key": "llm-1"})
    assert placed.status_code == 201
    hold = placed.json()
    assert hold == {
        "id": hold["id"],
        "idempotency_key": "llm-1",
        "feature": None,
        "quantity": None,
        "client_id": None,
        "credits": "2.5",
        "status": "held",
        "expires_at": "2022-05-02T10:15:00Z",
        "balance": "50",
        "held": "2.5",
        "available": "47.5",
    }
    assert (api.post("/holds", {"credits": "2.5", "idempotency_key": "llm-1"}).status_code) == 200
    assert error(api.post("/holds", {"credits": "3", "idempotency_key": "llm-1"}))[:2] == (
        409,
        "idempotency_conflict",
    )
    over = api.post(f"/holds/{hold['id']}/commit", {"credits": "2.501"})
    assert error(over) == (422, "commit_exceeds_hold", "Commit at most the 2.5 credits held.")
    done = api.post(f"/holds/{hold['id']}/commit", {"credits": "1.2"})
    assert done.status_code == 200
    assert {
        k: done.json()[k] for k in ("status", "committed", "released", "balance", "held", "available")
    } == {
        "status": "committed",
        "committed": "1.2",
        "released": "1.3",
        "balance": "48.8",
        "held": "0",
        "available": "48.8",
    }
    assert api.post(f"/holds/{hold['id']}/commit", {"credits": "1.2"}).json() == done.json()  # repeated
    # Without a body a commit asks for the whole hold: after a commit of 1.2 it is another request.
    assert error(api.post(f"/holds/{hold['id']}/commit")) == (
        409,
        "hold_committed",
        "This hold was already committed for 1.2 credits.",
    )
    assert api.post(f"/holds/{hold['id']}/commit", raw="{").status_code == 422
    assert api.post(f"/holds/{hold['id']}/commit", {"credits": 1.2}).status_code == 422
    assert error(api.post(f"/holds/{hold['id']}/release"))[:2] == (409, "hold_committed")

    other = api.post(
        "/holds", {"feature": "smart_response", "quantity": 2, "idempotency_key": "llm-2"}
    ).json()
    released = api.post(f"/holds/{other['id']}/release")
    assert (released.status_code, released.json()["status"], released.json()["available"]) == (
        200,
        "released",
        "48.8",
    )
    assert api.post(f"/holds/{other['id']}/release").json() == released.json()
    assert error(api.post(f"/holds/{other['id']}/commit", {}))[:2] == (409, "hold_released")

    lapsing = api.post("/holds", {"credits": "1", "idempotency_key": "llm-3", "ttl_seconds": 1}).json()
    clock.move_to(START + timedelta(seconds=1))
    assert error(api.post(f"/holds/{lapsing['id']}/commit"))[:2] == (409, "hold_expired")
    assert api.post(f"/holds/{lapsing['id']}/release").json()["status"] == "expired"
    check_invariants(plus)


def test_a_hold_beyond_the_available_credit_is_402(api, plus):
    grant(plus, 1)
    response = api.post("/holds", {"feature": "smart_response", "quantity": 2, "idempotency_key": "h"})
    assert error(response) == (402, "insufficient_credits", "Not enough AI credits: 2 needed, 1 available.")
    assert not Hold.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_key": "h"},
        {"credits": "1", "feature": "ai_review", "quantity": 1, "idempotency_key": "h"},
        {"credits": "1", "quantity": 1, "idempotency_key": "h"},
        {"feature": "ai_review", "idempotency_key": "h"},
        {"credits": "1.2345", "idempotency_key": "h"},
        {"credits": "-1", "idempotency_key": "h"},
        {"credits": "0", "idempotency_key": "h"},
        {"credits": "1e3", "idempotency_key": "h"},
        {"credits": 2.5, "idempotency_key": "h"},
        {"credits": "99999999999", "idempotency_key": "h"},
        {"credits": "1", "idempotency_key": "h", "ttl_seconds": 0},
        {"credits": "1", "idempotency_key": "h", "ttl_seconds": 86_401},
        {"credits": "1", "idempotency_key": "h", "ttl_seconds": "60"},
    ],
)
def test_hold_refuses_bad_input_with_422(api, plus, body):
    grant(plus, 50)
    response = api.post("/holds", body)
    assert response.status_code == 422, response.content
    assert not Hold.objects.exists()


@pytest.mark.parametrize("hold_id", ["abc", "0", "-1", str(2**63), "9" * 40])
def test_a_malformed_hold_id_is_422_never_500(api, plus, hold_id):
    response = api.post(f"/holds/{hold_id}/commit")
    assert response.status_code in (404, 422)
    assert "error" in response.json()


def test_another_tenants_hold_is_not_found(api, plus, other_tenant, outsider):
    from credits.factories import on_plus
    from credits.services import credits_hold

    on_plus(other_tenant)
    grant(other_tenant, 5)
    theirs = credits_hold(tenant=other_tenant, idempotency_key="theirs", amount=K).answer
    for action in ("commit", "release"):
        assert error(api.post(f"/holds/{theirs['id']}/{action}")) == (
            404,
            "not_found",
            "No hold has this id.",
        )
    assert Hold.objects.get().status == "held"


# --- reads ---------------------------------------------------------------------------------------


def test_get_credits_gives_figures_plan_grants_and_the_extra_pack(api, plus):
    plan_grant = grant(plus, 2000, source=Source.PLAN_RENEWAL)
    pack = grant(plus, 500, source=Source.EXTRA_PACK, days=30)
    api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"})
    api.post("/holds", {"credits": "2.5", "idempotency_key": "h"})
    body = api.get("").json()
    assert {k: body[k] for k in ("balance", "held", "available")} == {
        "balance": "2499.9",
        "held": "2.5",
        "available": "2497.4",
    }
    assert body["plan"] == {
        "code": "credits-plus",
        "name": "AI Plus",
        "state": "active",
        "badge": "Active subscription",
        "included_credits": "2000",
        "renewal": "monthly",
        "period_start": "2022-05-02T10:00:00Z",
        "period_end": "2022-06-01T10:00:00Z",
        "next_renewal": "2022-06-01T10:00:00Z",
        "active": True,
    }
    assert body["grants"] == [
        {
            "id": plan_grant.pk,
            "source": "plan_renewal",
            "amount": "2000",
            "remaining": "1999.9",
            "valid_from": "2022-05-02T10:00:00Z",
            "expires_at": "2022-06-01T10:00:00Z",
        },
        {
            "id": pack.pk,
            "source": "extra_pack",
            "amount": "500",
            "remaining": "500",
            "valid_from": "2022-05-02T10:00:00Z",
            "expires_at": "2022-06-01T10:00:00Z",
        },
    ]
    assert body["extra_pack"] == body["grants"][1]


def test_ledger_as_of_replays_the_balance_at_that_moment(api, plus, clock):
    g = grant(plus, 50)
    clock.move_to(START + timedelta(hours=1))
    api.post("/consume", {"feature": "smart_response", "quantity": 2, "idempotency_key": "a"})
    clock.move_to(START + timedelta(hours=2))
    api.post("/consume", {"feature": "ai_review", "quantity": 3, "idempotency_key": "b"})
    then = api.get("/ledger", as_of="2022-05-02T10:30:00Z").json()
    assert (then["balance"], [e["credits"] for e in then["entries"]]) == ("50", ["50"])
    middle = api.get("/ledger", as_of="2022-05-02T11:30:00+00:00").json()
    assert middle["balance"] == "48"
    assert middle["grants"] == [
        {
            "id": g.pk,
            "source": "plan_included",
            "amount": "50",
            "remaining": "48",
            "valid_from": "2022-05-02T10:00:00Z",
            "expires_at": "2022-06-01T10:00:00Z",
        }
    ]
    now = api.get("/ledger").json()
    assert (now["balance"], [(e["kind"], e["credits"], e["grant_id"]) for e in now["entries"]]) == (
        "47.7",
        [("grant", "50", g.pk), ("consume", "-2", g.pk), ("consume", "-0.3", g.pk)],
    )
    page = api.get("/ledger", limit=2).json()
    assert ([e["kind"] for e in page["entries"]], page["next_after"]) == (
        ["grant", "consume"],
        now["entries"][1]["id"],
    )
    rest = api.get("/ledger", limit=2, after=page["next_after"]).json()
    assert ([e["credits"] for e in rest["entries"]], rest["next_after"]) == (["-0.3"], None)
    before = api.get("/ledger", as_of="2022-01-01T00:00:00Z").json()
    assert (before["balance"], before["entries"]) == ("0", [])


@pytest.mark.parametrize(
    "params",
    [{"as_of": "2022-05-02T10:30:00"}, {"as_of": "yesterday"}, {"limit": 0}, {"limit": 5000}, {"after": -1}],
)
def test_ledger_refuses_bad_parameters_with_422(api, plus, params):
    response = api.get("/ledger", **params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


# --- the OpenAPI page ----------------------------------------------------------------------------

# Besides what every operation can answer (tenants.api_docs.COMMON_ERRORS: 400, 401, 413, 415, 422).
DOCUMENTED = {
    ("post", "/api/v1/credits/consume"): {200, 201, 402, 409},
    ("post", "/api/v1/credits/refund"): {200, 404},
    ("post", "/api/v1/credits/holds"): {200, 201, 402, 409},
    ("post", "/api/v1/credits/holds/{hold_id}/commit"): {200, 402, 404, 409},
    ("post", "/api/v1/credits/holds/{hold_id}/release"): {200, 404, 409},
    ("get", "/api/v1/credits"): {200},
    ("get", "/api/v1/credits/ledger"): {200},
}
COMMON = {400, 401, 413, 415, 422}


def test_every_status_is_documented_with_a_description_and_an_example():
    schema = Client().get("/api/v1/openapi.json").json()
    for (method, path), statuses in DOCUMENTED.items():
        responses = schema["paths"][path][method]["responses"]
        assert {int(s) for s in responses} == statuses | COMMON, path
        for status, answer in responses.items():
            assert answer["description"] not in ("", "Unknown Status Code"), (path, status)
            media = answer["content"]["application/json"]
            assert "example" in media or "examples" in media, (path, status)


def test_every_operation_says_what_it_does_and_every_body_has_an_example():
    schema = Client().get("/api/v1/openapi.json").json()
    for method, path in DOCUMENTED:
        op = schema["paths"][path][method]
        assert op["summary"], path
        assert op["description"], path
        if "requestBody" in op:
            media = op["requestBody"]["content"]["application/json"]
            assert "$ref" in media["schema"] or "properties" in media["schema"], path
            assert media.get("example") or media.get("examples"), path


def test_the_documented_request_examples_are_accepted(api, plus):
    """A reader who pastes a documented body gets the documented success status."""
    grant(plus, 50)
    schema = Client().get("/api/v1/openapi.json").json()

    def bodies(path: str) -> list[dict[str, Any]]:
        media = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return [example["value"] for example in media["examples"].values()]

    for body in bodies("/api/v1/credits/consume"):
        assert api.post("/consume", body).status_code == 201, body
    for body in bodies("/api/v1/credits/holds"):
        assert api.post("/holds", body).status_code == 201, body
    api.post("/consume", {"feature": "smart_response", "quantity": 1, "idempotency_key": "reply-1f9a"})
    for body in bodies("/api/v1/credits/refund"):
        assert api.post("/refund", body).status_code == 200, body


def test_a_consumption_costs_a_pinned_number_of_queries(api, plus, django_assert_num_queries):
    """The hot path (README): the key with the cache versions (1), then one statement, PostgreSQL's
    consumption function, its own transaction (1): the feature's cost, the wallet lock, the
    idempotency key, the live grants with the held total, the consumption, the grants drawn and
    the entries are all in it, and the plan's entitlements come from the cache. The same with many
    grants and holds around."""
    grant(plus, 50)
    for i in range(5):
        grant(plus, 1, source=Source.EXTRA_PACK, days=10 + i)
    api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "warm"})
    api.post("/holds", {"credits": "1", "idempotency_key": "h"})
    with django_assert_num_queries(2):
        assert (
            api.post("/consume", {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"}).status_code
            == 201
        )

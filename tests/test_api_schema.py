"""The integration API's OpenAPI schema holds every operation to DESIGN's "API conventions": each
documents the error statuses it can answer (400, 401, 413, 415 and 422 for all — any request may
carry a body too large or compressed, or a query parameter the operation does not take —, 404 where
a path names something, a write's 422 for a form body) with the one error body and an example per
case; every field of every
schema and every parameter has a description (units included); and the documented examples are
what the API really answers. The docs page serves Swagger UI from our own origin (no CDN).

New endpoints are held to the same rules: document them with `tenants.api_docs.documented`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from plans.selectors import MSG_OVERDUE
from tenants import services
from tenants.api_docs import FORM_BODY, UNKNOWN_QUERY, ErrorOut

pytestmark = pytest.mark.django_db

ERROR_REF = "#/components/schemas/ErrorOut"
METHODS = {"get", "post", "put", "patch", "delete"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# The 422 examples every operation (or every write) documents, checked on each of them by
# test_the_answers_any_operation_can_give_are_documented_as_answered.
GENERIC_422 = {UNKNOWN_QUERY.example_name(), FORM_BODY.example_name()}


@pytest.fixture
def schema() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(found) >= 3
    return found


def _required_statuses(op: dict[str, Any]) -> set[str]:
    # Before any operation reads its input: a request that cannot be read (400), a body over the size
    # limit (413) or compressed (415), a query parameter the operation does not take (422).
    required = {"400", "413", "415", "422"}
    if op.get("security"):
        required.add("401")
    params = op.get("parameters", [])
    if any(p["in"] == "path" for p in params):
        required.add("404")
    return required


def _example_names(op: dict[str, Any], status: str) -> set[str]:
    content = op["responses"].get(status, {}).get("content", {}).get("application/json", {})
    return set(content.get("examples", {}))


def test_every_operation_documents_its_error_statuses_with_the_error_body_and_examples(schema):
    problems = []
    for method, path, op in _operations(schema):
        responses = op["responses"]
        missing = _required_statuses(op) - set(responses)
        if missing:
            problems.append(f"{method} {path}: no {sorted(missing)} response")
        if not any(status.startswith("2") for status in responses):
            problems.append(f"{method} {path}: no success response")
        wanted = {UNKNOWN_QUERY.example_name()} | ({FORM_BODY.example_name()} if method in WRITES else set())
        if missing_422 := wanted - _example_names(op, "422"):
            problems.append(f"{method} {path}: no 422 example {sorted(missing_422)}")
        for status, response in responses.items():
            if status.startswith("2"):
                if "$ref" not in response["content"]["application/json"]["schema"]:
                    problems.append(f"{method} {path} {status}: no schema")
                continue
            if status.startswith("5"):
                problems.append(f"{method} {path}: documents a {status}: a client can never cause one")
                continue
            content = response.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") != ERROR_REF:
                problems.append(f"{method} {path} {status}: not the error body")
            examples = content.get("examples", {})
            if not examples:
                problems.append(f"{method} {path} {status}: no example")
            for name, example in examples.items():
                value = example["value"]
                ErrorOut.model_validate(value)  # the body the schema describes
                # Named by its code ("invalid_request (quantity)": the code and the field it names).
                if name.partition(" (")[0] != value["error"]["code"] or not example.get("summary"):
                    problems.append(
                        f"{method} {path} {status}: example {name!r} is not its code or has no summary"
                    )
            if len(response["description"]) < 20:
                problems.append(f"{method} {path} {status}: the description does not say when")
    assert problems == []


def _properties_without_description(name: str, node: dict[str, Any]) -> list[str]:
    missing = []
    for prop, spec in node.get("properties", {}).items():
        if not spec.get("description"):
            missing.append(f"{name}.{prop}")
        for inner in [
            spec,
            *spec.get("anyOf", []),
            spec.get("items", {}),
            spec.get("additionalProperties") or {},
        ]:
            if isinstance(inner, dict) and "properties" in inner:
                missing += _properties_without_description(f"{name}.{prop}", inner)
    return missing


def test_every_field_of_every_schema_and_every_parameter_has_a_description(schema):
    missing = [
        field
        for name, component in schema["components"]["schemas"].items()
        for field in _properties_without_description(name, component)
    ]
    missing += [
        f"{method} {path} parameter {p['name']}"
        for method, path, op in _operations(schema)
        for p in op.get("parameters", [])
        if not p.get("description")
    ]
    assert missing == []
    assert len(schema["components"]["schemas"]) >= 8


def test_credit_quantities_say_their_unit(schema):
    limits = schema["components"]["schemas"]["LimitsOut"]["properties"]
    assert "thousandths of a credit" in limits["included_credits"]["description"]


def test_the_error_body_schema(schema):
    errors = schema["components"]["schemas"]
    assert errors["ErrorOut"]["required"] == ["error"]
    assert errors["ErrorOut"]["properties"]["error"]["$ref"] == "#/components/schemas/ErrorFields"
    assert errors["ErrorFields"]["required"] == ["code", "message"]
    assert set(errors["ErrorFields"]["properties"]) == {"code", "message", "details"}


# --- the documented examples are the real answers ----------------------------------------------------


def _examples(schema: dict[str, Any], path: str, status: str) -> dict[str, dict[str, Any]]:
    content = schema["paths"][path]["get"]["responses"][status]["content"]["application/json"]
    return {name: example["value"] for name, example in content["examples"].items()}


def test_the_documented_401_and_400_are_what_the_api_answers(schema):
    for path in ("/api/v1/tenant", "/api/v1/entitlements", "/api/v1/entitlements/{product}/admission"):
        url = path.replace("{product}", "ai_agents")
        assert Client().get(url).json() == _examples(schema, path, "401")["unauthorized"], path
        unreadable = Client(HTTP_HOST="not-ours.example").get(url)
        assert unreadable.status_code == 400, path
        assert unreadable.json() == _examples(schema, path, "400")["bad_request"], path


def test_the_documented_admission_refusals_are_what_the_api_answers(schema, tenant, admin):
    """A tenant with no subscription for a product (not provisioned) is refused with no_subscription."""
    key = services.api_key_create(tenant=tenant, name="schema test", actor=admin).secret
    path = "/api/v1/entitlements/{product}/admission"
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    refused = client.get("/api/v1/entitlements/helpdesk_ai/admission")
    unknown = client.get("/api/v1/entitlements/ai_agent/admission")

    # A check: 200 with allowed false and the code and message a refused write would carry.
    assert refused.status_code == 200
    assert {k: refused.json()[k] for k in ("allowed", "code", "message")} == {
        "allowed": False,
        "code": "no_subscription",
        "message": "There is no subscription for this product. Subscribe to a plan to continue.",
    }
    assert unknown.status_code == 404
    assert unknown.json() == _examples(schema, path, "404")["unknown_product"]
    examples = _examples(schema, path, "200")
    assert examples["payment overdue"]["message"] == MSG_OVERDUE
    assert examples["allowed"]["allowed"] is True
    assert set(examples["allowed"]) == set(refused.json())


# --- the docs page --------------------------------------------------------------------------------


def test_the_docs_page_loads_swagger_ui_from_our_own_origin(db):
    response = Client().get("/api/v1/docs")

    assert response.status_code == 200
    body = response.content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', body)
    assert "/static/ninja/swagger-ui-bundle.js" in sources
    assert "/static/ninja/swagger-ui.css" in sources
    assert [s for s in sources if not s.startswith("/static/")] == []
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", body)  # no inline script
    # collectstatic gathers them (ninja is an installed app), and WhiteNoise serves them.
    for asset in ("ninja/swagger-ui-bundle.js", "ninja/swagger-ui-init.js", "ninja/swagger-ui.css"):
        assert finders.find(asset), asset


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_the_schema_and_the_docs_page_answer_only_get(db, path, method):
    """Any other method is a 405 naming GET in the API's error body: not the schema answered to a
    DELETE, nor a CSRF refusal worded for an API key (an anonymous POST with no token)."""
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert Client().head(path).status_code == 200


# --- the documented 422s --------------------------------------------------------------------------

# (operation, the example's name, how to provoke it): every 422 example the schema documents.
INVALID_REQUESTS: list[tuple[str, str, str, str, Any]] = [
    (
        "post",
        "/api/v1/credits/consume",
        "invalid_request (quantity)",
        "/api/v1/credits/consume",
        {"feature": "smart_response", "quantity": 0, "idempotency_key": "k"},
    ),
    (
        "post",
        "/api/v1/credits/consume",
        "unknown_feature",
        "/api/v1/credits/consume",
        {"feature": "image_gen", "quantity": 1, "idempotency_key": "k"},
    ),
    ("post", "/api/v1/credits/refund", "invalid_request (idempotency_key)", "/api/v1/credits/refund", {}),
    ("post", "/api/v1/credits/holds", "invalid_request", "/api/v1/credits/holds", {"idempotency_key": "k"}),
    (
        "post",
        "/api/v1/credits/holds",
        "quantity_required",
        "/api/v1/credits/holds",
        {"feature": "smart_response", "idempotency_key": "k"},
    ),
    (
        "post",
        "/api/v1/credits/holds",
        "invalid_request (ttl_seconds)",
        "/api/v1/credits/holds",
        {"credits": "1", "idempotency_key": "k", "ttl_seconds": 0},
    ),
    (
        "post",
        "/api/v1/credits/holds/{hold_id}/commit",
        "invalid_request (credits)",
        "/api/v1/credits/holds/{hold}/commit",
        {"credits": "1.2345"},
    ),
    (
        "post",
        "/api/v1/credits/holds",
        "unknown_feature",
        "/api/v1/credits/holds",
        {"feature": "image_gen", "quantity": 1, "idempotency_key": "k"},
    ),
    (
        "post",
        "/api/v1/credits/holds/{hold_id}/commit",
        "commit_exceeds_hold",
        "/api/v1/credits/holds/{hold}/commit",
        {"credits": "3"},
    ),
    ("get", "/api/v1/clients/{client_id}", "invalid_request (client_id)", "/api/v1/clients/a%01b", None),
    (
        "delete",
        "/api/v1/clients/{client_id}/licenses/{kind}",
        "invalid_request (client_id)",
        "/api/v1/clients/a%01b/licenses/ai",
        None,
    ),
    (
        "put",
        "/api/v1/usage/session-limit",
        "limit_above_plan",
        "/api/v1/usage/session-limit",
        {"session_limit": 1_000_000},
    ),
    (
        "post",
        "/api/v1/credits/holds/{hold_id}/release",
        "invalid_request (note)",
        "/api/v1/credits/holds/{hold}/release",
        {"note": "x"},
    ),
    (
        "get",
        "/api/v1/credits/ledger",
        "invalid_request (as_of)",
        "/api/v1/credits/ledger?as_of=2026-05-07T12:00:00",
        None,
    ),
    (
        "put",
        "/api/v1/clients/{client_id}",
        "invalid_request (client_id)",
        "/api/v1/clients/a%01b",
        {"name": "A"},
    ),
    ("put", "/api/v1/clients/{client_id}", "invalid_request (name)", "/api/v1/clients/acme", {}),
    ("get", "/api/v1/clients", "invalid_request (page_size)", "/api/v1/clients?page_size=201", None),
    (
        "put",
        "/api/v1/clients/{client_id}/licenses/{kind}",
        "invalid_request (client_id)",
        "/api/v1/clients/a%01b/licenses/ai",
        None,
    ),
    (
        "post",
        "/api/v1/tickets",
        "invalid_request (ticket_id)",
        "/api/v1/tickets",
        {"ticket_id": "t" * 191, "client_id": "acme"},
    ),
    (
        "post",
        "/api/v1/sessions",
        "invalid_request (at)",
        "/api/v1/sessions",
        {"conversation_id": "c1", "direction": "inbound", "at": "2099-01-01T00:00:00Z"},
    ),
    (
        "post",
        "/api/v1/sessions",
        "invalid_request (conversation_id)",
        "/api/v1/sessions",
        {"conversation_id": "c1/events", "direction": "inbound"},
    ),
    ("get", "/api/v1/sessions", "invalid_request (limit)", "/api/v1/sessions?limit=201", None),
    ("get", "/api/v1/sessions", "invalid_request (before)", "/api/v1/sessions?before=garbage", None),
    (
        "get",
        "/api/v1/sessions/{conversation_id}",
        "invalid_request (conversation_id)",
        "/api/v1/sessions/" + "c" * 201,
        None,
    ),
    (
        "put",
        "/api/v1/usage/session-limit",
        "invalid_request (session_limit)",
        "/api/v1/usage/session-limit",
        {"session_limit": 0},
    ),
    (
        "delete",
        "/api/v1/usage/session-limit",
        "invalid_request (session_limit)",
        "/api/v1/usage/session-limit",
        {"session_limit": 1},
    ),
]


def test_the_documented_422_examples_are_what_the_api_answers(schema, tenant, admin):
    """Each 422 example of the schema is the body the API answers (its `details` too: a field
    refused by validation says where it was sent, as `["body", field]`, `["query", name]`; a
    refusal the service makes has none), and every documented 422 example is checked here: a new
    one must be added to INVALID_REQUESTS."""
    from datetime import timedelta

    from django.utils import timezone

    from credits.factories import grant, on_plus
    from licensing.factories import on_helpdesk
    from sessions_billing.tests.conftest import paid

    on_plus(tenant)
    grant(tenant, 10)
    on_helpdesk(tenant)
    paid(tenant)
    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(tenant=tenant, name='s', actor=admin).secret}"
    )
    hold = client.post(
        "/api/v1/credits/holds", {"credits": "2.5", "idempotency_key": "h"}, content_type="application/json"
    ).json()["id"]
    checked = set()
    for method, path, name, url, body in INVALID_REQUESTS:
        url = url.replace("{hold}", str(hold))
        send = getattr(client, method)
        response = send(url, body, content_type="application/json") if body is not None else send(url)
        content = schema["paths"][path][method]["responses"]["422"]["content"]["application/json"]
        documented = content["examples"][name]["value"]
        answered = response.json()
        for detail in answered["error"].get("details", []):
            detail.pop("ctx", None)
        assert (response.status_code, answered) == (422, documented), (method, path, name)
        checked.add((method, path, name))

    # An event dated before its conversation's start: the message names the start, in UTC with "Z".
    started = timezone.now() - timedelta(hours=1)
    client.post(
        "/api/v1/sessions",
        {"conversation_id": "c2", "direction": "inbound", "at": started.isoformat()},
        content_type="application/json",
    )
    early = client.post(
        "/api/v1/sessions/c2/events",
        {"type": "agent_message", "at": (started - timedelta(minutes=10)).isoformat()},
        content_type="application/json",
    ).json()
    stamp = started.strftime("%Y-%m-%dT%H:%M:%S.") + f"{started.microsecond // 1000:03d}Z"
    assert early == {
        "error": {
            "code": "invalid_request",
            "message": f"at: an event cannot be dated before the conversation started ({stamp}).",
        }
    }
    checked.add(("post", "/api/v1/sessions/{conversation_id}/events", "invalid_request (at)"))

    documented_422 = {
        (method, path, name)
        for method, path, op in ((m.lower(), p, o) for m, p, o in _operations(schema))
        for name in _example_names(op, "422") - GENERIC_422
    }
    assert documented_422 - checked == set()


# --- what any operation can answer ----------------------------------------------------------------


def _documented(op: dict[str, Any], status: int, name: str) -> dict[str, Any]:
    return op["responses"][str(status)]["content"]["application/json"]["examples"][name]["value"]


def test_the_answers_any_operation_can_give_are_documented_as_answered(schema, tenant, admin, settings):
    """On every operation, whatever it does: a query parameter it does not take (422), a body over
    the size limit (413) or compressed (415), and on every write a body sent as a form (422) are
    answered as its documentation shows. Nothing is done."""
    from credits.factories import grant, on_plus
    from credits.models import Hold
    from licensing.factories import on_helpdesk
    from sessions_billing.tests.conftest import paid

    on_plus(tenant)
    grant(tenant, 10)
    on_helpdesk(tenant)
    paid(tenant)
    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(tenant=tenant, name='s', actor=admin).secret}"
    )
    json_type = "application/json"
    hold = client.post(
        "/api/v1/credits/holds", {"credits": "1", "idempotency_key": "h"}, content_type=json_type
    )
    client.put("/api/v1/clients/acme", {"name": "Acme"}, content_type=json_type)
    client.post("/api/v1/sessions", {"conversation_id": "c", "direction": "inbound"}, content_type=json_type)
    known = {"hold_id": hold.json()["id"], "client_id": "acme", "kind": "ai", "conversation_id": "c"}
    known["product"] = "ai_agents"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64
    for method, path, op in _operations(schema):
        url = re.sub(r"\{(\w+)\}", lambda m: str(known[m[1]]), path)

        def send(
            body: str,
            content_type: str = json_type,
            query: str = "",
            method: str = method,
            url: str = url,
            **meta: str,
        ) -> Any:
            return client.generic(method, url + query, body, content_type=content_type, **meta)

        answers = [
            (send("", query="?dry_run=1"), 422, UNKNOWN_QUERY.example_name()),
            (send('{"a": 1}', HTTP_CONTENT_ENCODING="gzip"), 415, "unsupported_content_encoding"),
            (send('{"a": "' + "x" * 64 + '"}'), 413, "payload_too_large"),
        ]
        if method in WRITES:
            answers.append((send("a=1", "application/x-www-form-urlencoded"), 422, FORM_BODY.example_name()))
        for response, status, name in answers:
            assert (response.status_code, response.json()) == (status, _documented(op, status, name)), (
                method,
                path,
                name,
            )
    assert Hold.objects.get(pk=known["hold_id"]).status == "held"


def test_a_400_is_not_documented_as_covering_a_body_too_large(schema):
    """A body over the size limit is a 413 (config.api, config.middleware), not the 400."""
    for method, path, op in _operations(schema):
        assert "size limit)" not in op["responses"]["400"]["description"], (method, path)
        assert "413" in op["responses"]


def test_a_refusal_for_a_tenant_without_subscriptions_is_documented_as_answered(schema, tenant, admin):
    """A tenant with no subscription at all: each write that asks the plan answers a refusal its
    operation documents (status, code and body), e.g. `no_subscription` for a license."""
    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(tenant=tenant, name='s', actor=admin).secret}"
    )
    from licensing.models import Client as PsaClient

    PsaClient.objects.create(tenant=tenant, external_id="acme", name="Acme")
    writes = [
        (
            "POST",
            "/api/v1/credits/consume",
            {"feature": "smart_response", "quantity": 1, "idempotency_key": "k"},
        ),
        ("POST", "/api/v1/credits/holds", {"credits": "1", "idempotency_key": "k"}),
        ("POST", "/api/v1/sessions", {"conversation_id": "c", "direction": "inbound"}),
        ("PUT", "/api/v1/usage/session-limit", {"session_limit": 5}),
        ("DELETE", "/api/v1/usage/session-limit", None),
        ("PUT", "/api/v1/clients/{client_id}/licenses/{kind}", None),
    ]
    for method, path, body in writes:
        url = path.replace("{client_id}", "acme").replace("{kind}", "ai")
        response = client.generic(
            method, url, "" if body is None else json.dumps(body), content_type="application/json"
        )
        op = schema["paths"][path][method.lower()]
        code = response.json()["error"]["code"]
        assert str(response.status_code) in op["responses"], (method, path, response.status_code)
        assert response.json() == _documented(op, response.status_code, code), (method, path)


def _field_schemas(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The operation's inputs by name: its parameters and its JSON body's fields."""
    fields = {p["name"]: p.get("schema", {}) for p in op.get("parameters", [])}
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rpartition("/")[2]]
    fields.update(body.get("properties", {}))
    return fields


def _max_length(spec: dict[str, Any]) -> int | None:
    """The schema's maxLength; for an input checked by hand (a path parameter), the one its own
    description gives ("1 to 100 printable characters")."""
    options = [spec, *spec.get("anyOf", [])]
    found = next((s["maxLength"] for s in options if "maxLength" in s), None)
    said = re.search(r"(?:1 to|at most) (\d+) [a-z ]*characters", spec.get("description", ""))
    return int(said[1]) if found is None and said else found


def test_a_length_an_error_description_names_is_the_fields_own(schema):
    """ "an idempotency key over 190 characters" where the key takes 200: a limit in words is the
    limit the schema (and the API) applies. The field is the last input named before the limit in
    its clause ("idempotency key" for idempotency_key)."""
    checked = 0
    for method, path, op in _operations(schema):
        fields = _field_schemas(schema, op)
        for status, response in op["responses"].items():
            for clause in re.split(r"[,(;]", response["description"]):
                found = re.search(r"^(.*) over (\d+) characters", clause)
                if not found:
                    continue
                before, limit = found.groups()
                named = [
                    (max(before.rfind(name), before.rfind(name.replace("_", " "))), name) for name in fields
                ]
                at, name = max(named)
                assert at >= 0, (method, path, status, clause)
                assert _max_length(fields[name]) == int(limit), (method, path, status, clause)
                checked += 1
    assert checked >= 5

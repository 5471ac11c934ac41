"""The integration API's OpenAPI schema holds every operation to DESIGN's "API conventions": each
documents the error statuses it can answer (400 and 401 for all, 404 where a path names something,
422 where it takes input) with the one error body and an example per case; every field of every
schema and every parameter has a description (units included); and the documented examples are
what the API really answers. The docs page serves Swagger UI from our own origin (no CDN).

New endpoints are held to the same rules: document them with `tenants.api_docs.documented`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from plans.selectors import MSG_OVERDUE
from tenants import services
from tenants.api_docs import ErrorOut

pytestmark = pytest.mark.django_db

ERROR_REF = "#/components/schemas/ErrorOut"
METHODS = {"get", "post", "put", "patch", "delete"}


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
    required = {"400"}
    if op.get("security"):
        required.add("401")
    params = op.get("parameters", [])
    if any(p["in"] == "path" for p in params):
        required.add("404")
    if any(p["in"] == "query" for p in params) or "requestBody" in op:
        required.add("422")
    return required


def test_every_operation_documents_its_error_statuses_with_the_error_body_and_examples(schema):
    problems = []
    for method, path, op in _operations(schema):
        responses = op["responses"]
        missing = _required_statuses(op) - set(responses)
        if missing:
            problems.append(f"{method} {path}: no {sorted(missing)} response")
        if not any(status.startswith("2") for status in responses):
            problems.append(f"{method} {path}: no success response")
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
                if value["error"]["code"] != name or not example.get("summary"):
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

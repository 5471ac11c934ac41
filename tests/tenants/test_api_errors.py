"""Every integration-API error answers `{"error": {"code": ..., "message": ...}}`. The handlers are
called through the API's own dispatch (`api.on_exception`), so the registration is under test too;
no test-only endpoint is mounted."""

from __future__ import annotations

import json

import pydantic
import pytest
from django.http import Http404
from django.test import RequestFactory
from ninja.errors import AuthenticationError, HttpError, ValidationError

from config.api import api, on_validation_error
from tenants.errors import BusinessError


@pytest.fixture
def request_():
    return RequestFactory().post("/api/v1/anything")


def _body(response) -> dict:
    return json.loads(response.content)


def test_validation_error_is_422_naming_the_field(request_):
    errors = [
        {"type": "missing", "loc": ("body", "payload", "quantity"), "msg": "Field required"},
        {"type": "int_parsing", "loc": ("query", "page"), "msg": "Input should be a valid integer"},
    ]

    response = api.on_exception(request_, ValidationError(errors))

    assert response.status_code == 422
    assert response["Content-Type"].startswith("application/json")
    assert _body(response) == {
        "error": {
            "code": "invalid_request",
            "message": "quantity: Field required",
            "details": [
                # Where the client sent it: the view's body parameter ("payload") is not named.
                {"type": "missing", "loc": ["body", "quantity"], "msg": "Field required"},
                {"type": "int_parsing", "loc": ["query", "page"], "msg": "Input should be a valid integer"},
            ],
        }
    }


def test_validation_error_of_a_path_parameter_names_it_without_the_source(request_):
    response = on_validation_error(
        request_, ValidationError([{"type": "int_parsing", "loc": ("path", "key_id"), "msg": "bad"}])
    )

    assert _body(response)["error"]["message"] == "key_id: bad"


def test_validation_error_of_the_whole_body_gives_just_the_message(request_):
    response = on_validation_error(
        request_, ValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON"}])
    )

    assert response.status_code == 422
    assert _body(response)["error"]["message"] == "Invalid JSON"


def test_validation_error_without_details_still_has_the_shape(request_):
    response = on_validation_error(request_, ValidationError([]))

    assert response.status_code == 422
    assert _body(response) == {
        "error": {"code": "invalid_request", "message": "Invalid request.", "details": []}
    }


def test_validation_error_built_by_ninja_from_a_real_pydantic_error_is_json(request_):
    class Payload(pydantic.BaseModel):
        quantity: int

    try:
        Payload.model_validate({"quantity": "many"})
    except pydantic.ValidationError as exc:
        # What ninja does with a pydantic error: keep the location under the body parameter's name,
        # drop the input.
        errors = [
            {**{k: v for k, v in e.items() if k != "input"}, "loc": ("body", "payload", *e["loc"])}
            for e in exc.errors(include_url=False)
        ]

    response = api.on_exception(request_, ValidationError(errors))

    assert response.status_code == 422
    body = _body(response)
    assert (
        body["error"]["message"]
        == "quantity: Input should be a valid integer, unable to parse string as an integer"
    )
    assert body["error"]["details"][0]["loc"] == ["body", "quantity"]


def test_business_error_answers_its_status_code_and_message(request_):
    exc = BusinessError("last_admin", "A tenant needs at least one admin.", status=409)

    response = api.on_exception(request_, exc)

    assert response.status_code == 409
    assert _body(response) == {
        "error": {"code": "last_admin", "message": "A tenant needs at least one admin."}
    }


def test_business_error_defaults_to_400(request_):
    response = api.on_exception(request_, BusinessError("nope", "Not like this."))

    assert response.status_code == 400
    assert _body(response) == {"error": {"code": "nope", "message": "Not like this."}}


def test_authentication_error_is_401_with_how_to_authenticate(request_):
    response = api.on_exception(request_, AuthenticationError())

    assert response.status_code == 401
    assert _body(response) == {
        "error": {
            "code": "unauthorized",
            "message": "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
        }
    }


def test_http_404_is_not_found_in_the_shape(request_):
    response = api.on_exception(request_, Http404("No Subscription matches the given query."))

    assert response.status_code == 404
    assert _body(response) == {"error": {"code": "not_found", "message": "Not found."}}  # no internals


def test_other_http_error_keeps_its_status_and_message(request_):
    response = api.on_exception(request_, HttpError(413, "Payload too large."))

    assert response.status_code == 413
    assert _body(response) == {"error": {"code": "http_error", "message": "Payload too large."}}


@pytest.mark.django_db
def test_method_not_allowed_on_the_api_has_the_error_shape(client):
    response = client.post("/api/v1/tenant")
    assert response.status_code == 405
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": "This method is not allowed on this endpoint."}
    }
    assert "GET" in response["Allow"]

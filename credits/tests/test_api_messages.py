"""A refused field says what it wants in words: no regular expression in a client's error."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from credits.models import Entry
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field", "code", "words"),
    [
        ({"credits": "0.0001", "idempotency_key": "h"}, "credits", "credits_format", 'e.g. "2.5"'),
        ({"credits": "-1", "idempotency_key": "h"}, "credits", "credits_format", "decimal string"),
        ({"credits": "1e3", "idempotency_key": "h"}, "credits", "credits_format", "three decimals"),
        # Above the stated maximum (a billion): refused as the message says, never a 402 later.
        (
            {"credits": "9999999999.999", "idempotency_key": "h"},
            "credits",
            "credits_format",
            "at most a billion",
        ),
        (
            {"credits": "1000000000.001", "idempotency_key": "h"},
            "credits",
            "credits_format",
            "at most a billion",
        ),
        ({"credits": "1", "idempotency_key": "h\u0001"}, "idempotency_key", "control_character", "control"),
        (
            {"feature": "Smart", "quantity": 1, "idempotency_key": "h"},
            "feature",
            "feature_format",
            "lower-case",
        ),
    ],
)
def test_a_malformed_field_is_refused_in_words_and_nothing_is_stored(plus, admin, body, field, code, words):
    secret = api_key_create(tenant=plus, name="messages", actor=admin).secret
    response = Client().post(
        "/api/v1/credits/holds",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field}: ")
    assert words in error["message"]
    assert "^" not in error["message"]
    assert "[0-9]" not in error["message"]
    assert [d["type"] for d in error["details"]] == [code]
    assert not Entry.objects.filter(wallet__tenant=plus).exists()


def _hold(tenant, admin, body):
    secret = api_key_create(tenant=tenant, name="messages", actor=admin).secret
    return Client().post(
        "/api/v1/credits/holds",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def test_a_hold_by_feature_without_quantity_says_quantity_is_required(plus, admin):
    response = _hold(plus, admin, {"feature": "smart_response", "idempotency_key": "x"})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "quantity_required",
        "message": "quantity is required with feature: how many uses to hold for.",
    }
    assert not Entry.objects.filter(wallet__tenant=plus).exists()


def test_credits_of_exactly_a_billion_pass_validation_and_meet_the_balance(plus, admin):
    """The stated maximum itself is valid input: it is refused for the balance (402), not its form."""
    response = _hold(plus, admin, {"credits": "1000000000.000", "idempotency_key": "x"})
    assert (response.status_code, response.json()["error"]["code"]) == (402, "insufficient_credits")

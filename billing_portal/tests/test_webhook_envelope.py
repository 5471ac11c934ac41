"""A validly signed webhook whose event cannot be stored as it is is refused with a 400 and stores
nothing (issue 6): a 500 would make Stripe retry it for days, and a half-read row would be applied.

Each body below is signed with the test secret, exactly as the gateway signs a real delivery; only
its envelope is wrong: a missing or mistyped id, type or created, a value longer than its column,
or a NUL character anywhere (PostgreSQL's text and jsonb cannot hold one)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from billing_portal.gateway.stripe_gateway import EVENT_ID_MAX, EVENT_TYPE_MAX, OBJECT_ID_MAX, OBJECT_TYPE_MAX
from billing_portal.models import WebhookEvent
from plans.models import Subscription

from .conftest import post_webhook, sign


def _event() -> dict[str, Any]:
    """A well-formed event of a type we handle, about an object nobody knows."""
    return {
        "id": "evt_1REnvelopeTest0001",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "sub_1REnvelopeTest0001",
                "object": "subscription",
                "customer": "cus_REnvelopeTest01",
                "metadata": {"tenant": "acme", "tags": ["a", "b"]},
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated",
    }


def _with(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with DELETE, remove) the value at a dotted path of the event."""

    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return change


DELETE = object()

BAD_ENVELOPES: dict[str, Callable[[dict[str, Any]], None]] = {
    "id_missing": _with("id", DELETE),
    "id_empty": _with("id", ""),
    "id_not_a_string": _with("id", 12345),
    "id_longer_than_its_column": _with("id", "evt_" + "x" * (EVENT_ID_MAX - 3)),
    "type_missing": _with("type", DELETE),
    "type_null": _with("type", None),
    "type_longer_than_its_column": _with("type", "customer." + "x" * (EVENT_TYPE_MAX - 8)),
    "created_missing": _with("created", DELETE),
    "created_a_numeric_string": _with("created", "1770000000"),
    "created_a_word": _with("created", "yesterday"),
    "created_a_float": _with("created", 1770000000.5),
    "created_a_boolean": _with("created", True),
    "created_negative": _with("created", -1),
    "created_after_the_year_9999": _with("created", 253402300800),
    "created_a_huge_number": _with("created", 10**30),
    "data_missing": _with("data", DELETE),
    "data_object_not_an_object": _with("data.object", ["sub_1"]),
    "object_id_longer_than_its_column": _with("data.object.id", "sub_" + "x" * (OBJECT_ID_MAX - 3)),
    "object_type_longer_than_its_column": _with("data.object.object", "x" * (OBJECT_TYPE_MAX + 1)),
    "object_id_not_a_string": _with("data.object.id", {"id": "sub_1"}),
    "nul_in_the_id": _with("id", "evt_1R\x00Envelope"),
    "nul_in_the_type": _with("type", "customer.subscription.updated\x00"),
    "nul_in_the_object_id": _with("data.object.id", "sub_\x00"),
    "nul_in_an_object_field": _with("data.object.customer", "cus_\x00RE"),
    "nul_in_a_key": _with("data.object.metadata", {"ten\x00ant": "acme"}),
    "nul_deep_in_a_list": _with("data.object.metadata.tags", ["a", ["b", "\x00"]]),
    "nul_in_the_request_envelope": _with("request.idempotency_key", "\x00"),
}


def _signed_body(change: Callable[[dict[str, Any]], None]) -> bytes:
    event = copy.deepcopy(_event())
    change(event)
    return json.dumps(event).encode()  # a NUL travels as the escape \u0000, as in Stripe's JSON


@pytest.mark.parametrize("case", sorted(BAD_ENVELOPES))
def test_a_signed_event_with_a_bad_envelope_is_400_and_stores_nothing(case, trial_tenant, live):
    payload = _signed_body(BAD_ENVELOPES[case])
    subscriptions = list(Subscription.objects.values_list("pk", "state", "updated_at"))

    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "bad_event"
    assert WebhookEvent.objects.count() == 0
    assert list(Subscription.objects.values_list("pk", "state", "updated_at")) == subscriptions


def test_the_messages_say_what_is_wrong(db, live):
    def refused(change) -> str:
        payload = _signed_body(change)
        with live():
            return post_webhook(payload, sign(payload)).json()["error"]["message"]

    assert refused(BAD_ENVELOPES["id_missing"]) == (
        f"The event's id is missing or not a string of at most {EVENT_ID_MAX} characters."
    )
    assert (
        refused(BAD_ENVELOPES["created_a_numeric_string"]) == "The event's created is not a Unix timestamp."
    )
    assert refused(BAD_ENVELOPES["data_missing"]) == "The event has no data.object."
    assert refused(BAD_ENVELOPES["nul_in_a_key"]) == "The event contains a NUL character."


def test_the_longest_values_that_fit_their_columns_are_stored(db, live):
    """The control: at the limits, not over them, the event is stored (and ignored: nobody's object)."""
    event = _event()
    event["id"] = "evt_" + "x" * (EVENT_ID_MAX - 4)
    event["data"]["object"]["id"] = "sub_" + "y" * (OBJECT_ID_MAX - 4)
    payload = json.dumps(event).encode()

    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 200
    row = WebhookEvent.objects.get()
    assert (len(row.event_id), len(row.object_id), row.type) == (
        EVENT_ID_MAX,
        OBJECT_ID_MAX,
        "customer.subscription.updated",
    )


def test_a_raw_nul_byte_is_not_json_and_is_refused_as_unverifiable(db, live):
    payload = json.dumps(_event()).encode().replace(b"cus_REnvelopeTest01", b"cus_\x00")

    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert WebhookEvent.objects.count() == 0


def test_a_signed_body_nested_deeper_than_the_parser_goes_is_a_400_not_a_500(db, live):
    payload = b"[" * 100_000 + b"]" * 100_000

    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert WebhookEvent.objects.count() == 0


def test_a_body_over_the_upload_limit_is_a_413_in_the_json_shape(db, settings):
    payload = b'{"id": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b'"}'

    response = post_webhook(payload, sign(payload))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert WebhookEvent.objects.count() == 0


# --- the mode of an event, and objects the gateway does not know ---------------------------------------


@pytest.mark.parametrize("livemode", [True, "yes"])
def test_an_event_of_the_other_mode_is_refused_and_stores_nothing(db, livemode):
    """An event from Stripe's live mode reaching an installation with a test key (or the reverse:
    an endpoint registered in the wrong mode) is refused, 400, and stores nothing: it would mix test
    payments with real ones. https://docs.stripe.com/api/events/object#event_object-livemode"""
    event = _event() | {"livemode": livemode}
    payload = json.dumps(event).encode()

    response = post_webhook(payload, sign(payload))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_event"
    if livemode is True:
        assert response.json()["error"]["message"] == (
            "The event comes from Stripe's live mode, but this installation's key is a test mode key: refused."
        )
    assert WebhookEvent.objects.count() == 0


def test_the_stripe_gateway_knows_its_mode_from_its_key():
    from billing_portal.gateway.stripe_gateway import StripeGateway

    modes = {
        key: StripeGateway(api_key=key, webhook_secret="whsec_x").livemode
        for key in ("sk_live_abc", "rk_live_abc", "sk_test_abc", "rk_test_abc")
    }
    assert modes == {"sk_live_abc": True, "rk_live_abc": True, "sk_test_abc": False, "rk_test_abc": False}


def test_an_event_about_an_object_the_gateway_does_not_know_is_stored_as_ignored_with_why(db, live):
    """Another integration on the same Stripe account sends events about its own objects: answered
    200, stored as ignored with the reason, and never retried (before: stored as failed, retried for
    days)."""
    from django.utils import timezone

    from billing_portal.webhooks import webhook_events_due

    payload = json.dumps(_event()).encode()
    with live():
        response = post_webhook(payload, sign(payload))

    assert response.status_code == 200
    row = WebhookEvent.objects.get()
    assert (row.status, row.error) == (
        "ignored",
        "Ignored: the gateway has no such object (No such subscription: 'sub_1REnvelopeTest0001'); "
        "not one of this installation's.",
    )
    assert webhook_events_due(now=timezone.now() + timedelta(hours=1)) == []

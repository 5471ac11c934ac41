"""Stripe's own published example objects, wrapped in every event type we handle and signed, as
another integration on the same account (or Stripe's test events) would send them: every delivery
is answered 200 and stored processed or ignored with the reason — none fails and waits for days of
retries (issue 7: "Stripe's published fixture objects wrapped in 41 event types and signed were all
answered 200, and 42 were stored as failed and retried")."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from billing_portal.models import WebhookEvent
from billing_portal.webhooks import HANDLERS

from .conftest import post_webhook, sign

REFERENCE = Path(
    os.environ.get("STRIPE_FIXTURES_PATH")
    or Path(__file__).resolve().parents[3] / "shared/stripe/fixtures3.json"
)


def _resource(event_type: str) -> str:
    for prefix, resource in (
        ("checkout.session.", "checkout.session"),
        ("customer.subscription.", "subscription"),
        ("customer.", "customer"),
        ("invoice.", "invoice"),
        ("subscription_schedule.", "subscription_schedule"),
        ("charge.dispute.", "dispute"),
        ("charge.", "charge"),
        ("credit_note.", "credit_note"),
    ):
        if event_type.startswith(prefix):
            return resource
    raise AssertionError(f"no Stripe resource for {event_type}")


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"Stripe's reference objects are not at {REFERENCE}")
def test_every_handled_event_about_stripes_example_objects_is_answered_and_none_fails(db, live):
    resources = json.loads(REFERENCE.read_text())["resources"]
    for n, event_type in enumerate(sorted(HANDLERS)):
        event = {
            "id": f"evt_1RStripeExample{n:04d}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "data": {"object": resources[_resource(event_type)]},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        payload = json.dumps(event).encode()
        with live():
            response = post_webhook(payload, sign(payload))
        assert response.status_code == 200, (event_type, response.content)

    rows = list(WebhookEvent.objects.values_list("type", "status", "error"))
    assert len(rows) == len(HANDLERS)
    assert [(t, s, e) for t, s, e in rows if s not in ("processed", "ignored")] == []
    for event_type, status, error in rows:
        if status == "ignored":
            assert error.startswith("Ignored: "), (event_type, error)

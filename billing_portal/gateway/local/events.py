"""Events: what each change emits, signed as Stripe signs them, delivered once the change commits;
and the verification of a delivery, as the webhook endpoint does it."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

import stripe
from django.db import transaction

from billing_portal.gateway.base import GatewayEvent, WebhookSignatureError
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.idempotency import LocalIdempotency
from billing_portal.gateway.stripe_gateway import PINNED_API_VERSION, event_from_stripe


class LocalEvents(LocalIdempotency):
    def _emit(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        *,
        now: datetime,
        before: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the event (a snapshot of `obj` as it is now) and deliver it once the transaction commits."""
        snapshot = json.loads(json.dumps(obj))
        data: dict[str, Any] = {"object": snapshot}
        if before is not None:
            data["previous_attributes"] = {
                key: copy.deepcopy(before.get(key))
                for key in sorted(set(before) | set(snapshot))
                if before.get(key) != snapshot.get(key)
            }
        event = objects.event(
            objects.new_id("evt"), event_type=event_type, data=data, api_version=PINNED_API_VERSION, now=now
        )
        customer_id = (
            snapshot["id"] if snapshot.get("object") == "customer" else (snapshot.get("customer") or "")
        )
        objects.insert("event", event, customer_id=customer_id)
        payload = json.dumps(event, indent=2).encode("utf-8")
        # robust: a failing webhook view is logged, not raised into the caller whose change has
        # committed — at Stripe, delivery is separate from the API call too.
        transaction.on_commit(partial(self._send, payload), robust=True)

    def _send(self, payload: bytes) -> None:
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode("utf-8"), self._webhook_secret, int(time.time())
        )
        self._deliver(payload, str(header))

    def verify_webhook(self, *, payload: bytes, signature_header: str) -> GatewayEvent:
        """Stripe's rules: `t=<unix>,v1=<hex>` (several v1 allowed), an HMAC-SHA256 of `"{t}.{body}"`
        with the endpoint secret, compared in constant time, and a timestamp no older than the tolerance."""
        try:
            body = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebhookSignatureError("The payload is not UTF-8.") from exc
        if not signature_header:
            raise WebhookSignatureError("No Stripe-Signature header value was provided.")
        timestamp: int | None = None
        signatures: list[str] = []
        for part in signature_header.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep:
                continue
            if key == "t":
                try:
                    timestamp = int(value)
                except ValueError as exc:
                    raise WebhookSignatureError(
                        "Unable to extract timestamp and signatures from header"
                    ) from exc
            elif key == "v1":
                signatures.append(value)
        if timestamp is None:
            raise WebhookSignatureError("Unable to extract timestamp and signatures from header")
        if not signatures:
            raise WebhookSignatureError("No signatures found with expected scheme v1")
        expected = hmac.new(
            self._webhook_secret.encode("utf-8"), f"{timestamp}.{body}".encode(), hashlib.sha256
        ).hexdigest()
        if not any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in signatures):
            raise WebhookSignatureError("No signatures found matching the expected signature for payload")
        if timestamp < time.time() - self._webhook_tolerance:
            raise WebhookSignatureError(f"Timestamp outside the tolerance zone ({timestamp})")
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise WebhookSignatureError("The payload is not JSON.") from exc
        if not isinstance(event, dict) or event.get("object") != "event":
            raise WebhookSignatureError("The payload is not a Stripe event.")
        return event_from_stripe(event)

"""Events: what each change emits, signed as Stripe signs them, delivered once the change commits;
and the verification of a delivery, as the webhook endpoint does it."""

from __future__ import annotations

import copy
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
from billing_portal.gateway.local.core import Delivery
from billing_portal.gateway.local.idempotency import LocalIdempotency
from billing_portal.gateway.store import LocalGatewayObject
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
        """Record the event (a snapshot of `obj` as it is now) and deliver it once the transaction
        commits (or keep it for later, when delivery is LATE)."""
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
        payload = json.dumps(event, indent=2)
        if self.delivery == Delivery.LATE:
            objects.insert(
                "event_delivery",
                {"id": f"{event['id']}_delivery", "payload": payload},
                customer_id=customer_id,
            )
            return
        # robust: a failing webhook view is logged, not raised into the caller whose change has
        # committed — at Stripe, delivery is separate from the API call too.
        transaction.on_commit(partial(self._send, payload.encode("utf-8")), robust=True)

    def deliver_late(self) -> int:
        """Deliver the events kept back (LATE): newest first, each twice. Returns how many events."""
        with transaction.atomic():
            rows = list(
                LocalGatewayObject.objects.select_for_update(skip_locked=True)
                .filter(object_type="event_delivery")
                .order_by("-id")
            )
            LocalGatewayObject.objects.filter(pk__in=[row.pk for row in rows]).delete()
            for row in rows:
                payload = str(row.data["payload"]).encode("utf-8")
                for _ in range(2):
                    transaction.on_commit(partial(self._send, payload), robust=True)
        return len(rows)

    def _send(self, payload: bytes) -> None:
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode("utf-8"), self._webhook_secret, int(time.time())
        )
        self._deliver(payload, str(header))

    def verify_webhook(self, *, payload: bytes, signature_header: str) -> GatewayEvent:
        """Stripe's own check (the SDK's `WebhookSignature.verify_header`): `t=<unix>,v1=<hex>`
        (several v1 allowed), an HMAC-SHA256 of `"{t}.{body}"` with the endpoint secret, compared in
        constant time, and a timestamp no older than the tolerance."""
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature_header, self._webhook_secret, self._webhook_tolerance
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser goes (signed, so our secret's
            # holder sent it; still a 400, never a 500).
            raise WebhookSignatureError(str(exc) or "The payload is nested too deeply.") from exc
        if not isinstance(event, dict) or event.get("object") != "event":
            raise WebhookSignatureError("The payload is not a Stripe event.")
        return event_from_stripe(event)

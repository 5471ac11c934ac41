"""The local payment gateway: Stripe, played in-process, for development, the demo and tests.

It keeps Stripe-shaped objects (the keys of API version `PINNED_API_VERSION`) as LocalGatewayObject
rows and maps them with the same `*_from_stripe` functions as the Stripe gateway, so both answer
alike. Every change emits the events Stripe would send, signed like Stripe signs them (a
`Stripe-Signature` header over the JSON body), and hands them to `deliver` once the change has
committed — in the order emitted, never for a change that rolled back.

Besides the interface it offers the operations the hosted-page stand-ins (`/dev/billing/…`) and the
tests need: complete or abandon a checkout, set the customer's card (working or declining), make the
next renewal fail, pay what is open, resume, and `advance` — the clock tick that renews, cancels at
period end and applies scheduled changes.

Concurrency: each operation is one transaction that locks (select_for_update) the customer's row
first, then the rows it changes, so two requests cannot renew or charge the same thing twice.

This module imports nothing of ours outside the gateway package."""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

import stripe
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_portal.gateway.base import (
    CatalogPrice,
    GatewayCheckoutSession,
    GatewayError,
    GatewayEvent,
    GatewayInvoice,
    GatewayInvoiceLine,
    GatewayInvoicePreview,
    GatewaySchedule,
    GatewaySubscription,
    PaymentGateway,
    WebhookSignatureError,
)
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import (
    PINNED_API_VERSION,
    checkout_session_from_stripe,
    event_from_stripe,
    invoice_from_stripe,
    schedule_from_stripe,
    subscription_from_stripe,
)

logger = logging.getLogger(__name__)

# price id -> amount, currency, interval[, product name]; a plain 3-tuple names the product by the price id
PriceCatalog = Callable[[str], CatalogPrice | tuple[int, str, str]]

MSG_DECLINED = "Your card was declined."
CHECKOUT_LIFETIME = timedelta(hours=24)  # Stripe's default expiry of a checkout session
RETRY_AFTER = timedelta(days=3)  # when Stripe's dunning would try a failed invoice again
MAX_CYCLES_PER_ADVANCE = 240  # renewals of one subscription in one `advance` (20 years of months)

ENDED = frozenset({"canceled", "incomplete_expired"})
OVERDUE = frozenset({"past_due", "unpaid"})
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})  # fmt: skip


def default_price_catalog(price_id: str) -> CatalogPrice:
    return CatalogPrice(1000, "usd", "month")


class LocalGateway(PaymentGateway):
    name = "local"

    def __init__(
        self,
        *,
        webhook_secret: str,
        deliver: Callable[[bytes, str], None],
        base_url: str = "",
        price_catalog: PriceCatalog | None = None,
        clock: Callable[[], datetime] = timezone.now,
        webhook_tolerance: int = 300,  # seconds
    ) -> None:
        if not webhook_secret:
            raise ValueError("webhook_secret is required: the events are signed with it")
        if webhook_tolerance <= 0:
            raise ValueError("webhook_tolerance must be a positive number of seconds")
        self._webhook_secret = webhook_secret
        self._deliver = deliver
        self._base_url = base_url.rstrip("/")
        self._price_catalog = price_catalog or default_price_catalog
        self._clock = clock
        self._webhook_tolerance = webhook_tolerance

    # --- customers, checkout, portal --------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params = {"email": email, "name": name, "metadata": metadata}
        with transaction.atomic():
            return self._idempotent(
                idempotency_key,
                "create_customer",
                params,
                lambda: self._create_customer(email=email, name=name, metadata=metadata),
            )

    def _create_customer(self, *, email: str, name: str, metadata: dict[str, str]) -> str:
        now = self._now()
        customer_id = _new_id("cus")
        suffix = customer_id.removeprefix("cus_local_")
        data: dict[str, Any] = {
            "id": customer_id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": _ts(now),
            "currency": None,
            "customer_account": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": email or None,
            "invoice_prefix": f"LOCAL-{suffix}",
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(metadata),
            "name": name or None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        _insert("customer", data, customer_id=customer_id)
        return customer_id

    def create_checkout_session(
        self,
        *,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        client_reference_id: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> GatewayCheckoutSession:
        params = {
            "customer_id": customer_id,
            "price_id": price_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "metadata": metadata,
        }
        with transaction.atomic():
            session_id = self._idempotent(
                idempotency_key,
                "create_checkout_session",
                params,
                lambda: self._create_checkout_session(
                    customer_id=customer_id,
                    price_id=price_id,
                    success_url=success_url,
                    cancel_url=cancel_url,
                    client_reference_id=client_reference_id,
                    metadata=metadata,
                ),
            )
            return checkout_session_from_stripe(_read(session_id, "checkout.session"))

    def _create_checkout_session(
        self,
        *,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        client_reference_id: str,
        metadata: dict[str, str],
    ) -> str:
        _lock(customer_id, "customer")  # it must exist, as at Stripe
        now = self._now()
        price = self._price(price_id, now)
        session_id = _new_id("cs")
        data = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": price["unit_amount"],
            "amount_total": price["unit_amount"],
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id or None,
            "client_secret": None,
            "created": _ts(now),
            "currency": price["currency"],
            "customer": customer_id,
            "customer_account": None,
            "customer_creation": None,
            "customer_details": None,
            "customer_email": None,
            "expires_at": _ts(now + CHECKOUT_LIFETIME),
            "invoice": None,
            "invoice_creation": None,
            # Stripe returns the line items only when expanded; the local session keeps them so that
            # completing it knows what was bought.
            "line_items": {
                "object": "list",
                "data": [
                    {
                        "id": _new_id("li"),
                        "object": "item",
                        "amount_discount": 0,
                        "amount_subtotal": price["unit_amount"],
                        "amount_tax": 0,
                        "amount_total": price["unit_amount"],
                        "currency": price["currency"],
                        "description": _product_name(price),
                        "price": price,
                        "quantity": 1,
                    }
                ],
                "has_more": False,
                "url": f"/v1/checkout/sessions/{session_id}/line_items",
            },
            "livemode": False,
            "locale": None,
            "metadata": dict(metadata),
            "mode": "subscription",
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "subscription_data": {
                "metadata": dict(metadata)
            },  # what the request asked for (not in Stripe's object)
            "success_url": success_url,
            "ui_mode": "hosted",
            "url": f"{self._base_url}/dev/billing/checkout/{session_id}/",
        }
        _insert("checkout.session", data, customer_id=customer_id)
        return session_id

    def retrieve_checkout_session(self, session_id: str) -> GatewayCheckoutSession:
        return checkout_session_from_stripe(_read(session_id, "checkout.session"))

    def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        _read(customer_id, "customer")  # it must exist, as at Stripe
        query = urlencode({"return": return_url})
        return f"{self._base_url}/dev/billing/portal/{customer_id}/?{query}"

    # --- subscriptions ----------------------------------------------------------------------------

    def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription:
        return subscription_from_stripe(_read(subscription_id, "subscription"))

    def list_subscriptions(self, *, customer_id: str) -> list[GatewaySubscription]:
        rows = LocalGatewayObject.objects.filter(
            object_type="subscription", customer_id=customer_id
        ).order_by("-id")
        return [subscription_from_stripe(row.data) for row in rows]

    def change_subscription_price(
        self, *, subscription_id: str, price_id: str, idempotency_key: str
    ) -> GatewaySubscription:
        params = {"subscription_id": subscription_id, "price_id": price_id}
        with transaction.atomic():
            self._idempotent(
                idempotency_key,
                "change_subscription_price",
                params,
                lambda: self._change_subscription_price(subscription_id=subscription_id, price_id=price_id),
            )
            return self.retrieve_subscription(subscription_id)

    def _change_subscription_price(self, *, subscription_id: str, price_id: str) -> str:
        customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        sub = sub_row.data
        if sub["status"] in ENDED:
            raise GatewayError(
                "A canceled subscription cannot change its price.", code="subscription_canceled"
            )
        item = _item(sub)
        if item["price"]["id"] == price_id:
            return subscription_id  # already there: nothing to prorate
        now = self._now()
        new_price = self._price(price_id, now)
        before = copy.deepcopy(sub)
        proration = _prorate(item, new_price, now)
        amount, lines_spec = proration.amount, proration.lines
        if proration.restart is not None:
            # Like Stripe: a different interval restarts the billing cycle now.
            sub["billing_cycle_anchor"] = _ts(now)
            item["current_period_start"], item["current_period_end"] = (_ts(day) for day in proration.restart)
        item["price"] = new_price
        item["plan"] = _plan(new_price)
        sub["currency"] = new_price["currency"]

        invoice: dict[str, Any] | None = None
        if amount > 0:
            invoice = self._new_invoice(
                customer_row,
                now=now,
                currency=new_price["currency"],
                billing_reason="subscription_update",
                subscription=sub,
                lines_spec=lines_spec,
                period=(now, now),
            )
            sub["latest_invoice"] = invoice["id"]
        sub_row.save()
        self._emit("customer.subscription.updated", sub, now=now, before=before)
        if invoice is not None:
            paid = self._finalize_and_collect(customer_row, invoice, now=now)
            if not paid and sub["status"] not in OVERDUE:
                before = copy.deepcopy(sub)
                sub["status"] = "past_due"
                sub_row.save()
                self._emit("customer.subscription.updated", sub, now=now, before=before)
        return subscription_id

    def preview_price_change(self, *, subscription_id: str, price_id: str) -> GatewayInvoicePreview:
        """The invoice `change_subscription_price` would create now, by the same arithmetic (`_prorate`),
        so the preview and the charge agree to the cent at the same instant. Like Stripe's preview
        with `proration_behavior=always_invoice`, a change that leaves a credit has a negative total
        and nothing due."""
        with transaction.atomic():
            sub = _read(subscription_id, "subscription")
            if sub["status"] in ENDED:
                raise GatewayError(
                    "A canceled subscription cannot change its price.", code="subscription_canceled"
                )
            item = _item(sub)
            currency = str(item["price"]["currency"])
            if item["price"]["id"] == price_id:
                return GatewayInvoicePreview(currency=currency, amount_due=0, total=0)
            now = self._now()
            proration = _prorate(item, self._price(price_id, now), now)
            lines = tuple(
                GatewayInvoiceLine(
                    description=spec["description"],
                    amount=spec["amount"],
                    period_start=_dt(_ts(spec["start"])),
                    period_end=_dt(_ts(spec["end"])),
                )
                for spec in proration.lines
            )
        return GatewayInvoicePreview(
            currency=currency, amount_due=max(proration.amount, 0), total=proration.amount, lines=lines
        )

    def schedule_subscription_change(
        self, *, subscription_id: str, price_id: str, at: datetime, idempotency_key: str
    ) -> GatewaySchedule:
        params = {"subscription_id": subscription_id, "price_id": price_id, "at": _ts(at)}
        with transaction.atomic():
            schedule_id = self._idempotent(
                idempotency_key,
                "schedule_subscription_change",
                params,
                lambda: self._schedule_subscription_change(
                    subscription_id=subscription_id, price_id=price_id, at=at
                ),
            )
            return schedule_from_stripe(_read(schedule_id, "subscription_schedule"))

    def _schedule_subscription_change(self, *, subscription_id: str, price_id: str, at: datetime) -> str:
        customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        sub = sub_row.data
        now = self._now()
        if sub["status"] in ENDED:
            raise GatewayError("A canceled subscription cannot be scheduled.", code="subscription_canceled")
        if sub.get("schedule"):
            # As at Stripe: a subscription has one schedule at a time; release it first.
            raise GatewayError(
                f"The subscription is already attached to the schedule {sub['schedule']}.",
                code="subscription_schedule_exists",
            )
        switch_at = _ts(at)
        if switch_at <= _ts(now):
            raise GatewayError("The change must be scheduled in the future.", code="parameter_invalid_date")
        item = _item(sub)
        new_price = self._price(price_id, now)
        schedule_id = _new_id("sub_sched")
        phase_end = _period_end_after(_dt(switch_at), _dt(switch_at), _interval(new_price))
        data = {
            "id": schedule_id,
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": {"type": "classic"},
            "canceled_at": None,
            "completed_at": None,
            "created": _ts(now),
            "current_phase": {"start_date": item["current_period_start"], "end_date": switch_at},
            "customer": sub["customer"],
            "customer_account": None,
            "default_settings": {
                "application_fee_percent": None,
                "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
                "billing_cycle_anchor": "automatic",
                "collection_method": "charge_automatically",
                "default_payment_method": None,
                "description": None,
                "invoice_settings": {
                    "account_tax_ids": None,
                    "days_until_due": None,
                    "issuer": {"type": "self"},
                },
                "on_behalf_of": None,
                "transfer_data": None,
            },
            "end_behavior": "release",
            "livemode": False,
            "metadata": {},
            "phases": [
                _phase(item["price"], start=item["current_period_start"], end=switch_at),
                _phase(new_price, start=switch_at, end=_ts(phase_end)),
            ],
            "released_at": None,
            "released_subscription": None,
            "status": "active",
            "subscription": subscription_id,
            "test_clock": None,
        }
        _insert("subscription_schedule", data, customer_id=customer_row.object_id)
        before = copy.deepcopy(sub)
        sub["schedule"] = schedule_id
        sub_row.save()
        self._emit("subscription_schedule.created", data, now=now)
        self._emit("customer.subscription.updated", sub, now=now, before=before)
        return schedule_id

    def release_schedule(self, schedule_id: str, *, idempotency_key: str) -> None:
        with transaction.atomic():
            self._idempotent(
                idempotency_key,
                "release_schedule",
                {"schedule_id": schedule_id},
                lambda: self._release(schedule_id),
            )

    def _release(self, schedule_id: str) -> str:
        schedule_row = _read_row(schedule_id, "subscription_schedule")
        _lock(schedule_row.customer_id, "customer")  # the customer first, as every operation locks
        sub_id = schedule_row.data.get("subscription")
        sub_row = _lock(sub_id, "subscription") if sub_id else None
        schedule_row = _lock(schedule_id, "subscription_schedule")
        schedule = schedule_row.data
        if schedule["status"] not in ("not_started", "active"):
            raise GatewayError(
                f"You cannot release a subscription schedule that is currently in the `{schedule['status']}` status.",
                code="schedule_unexpected_state",
            )
        now = self._now()
        schedule.update(
            status="released", released_at=_ts(now), released_subscription=sub_id, subscription=None
        )
        schedule_row.save()
        self._emit("subscription_schedule.released", schedule, now=now)
        if sub_row is not None and sub_row.data.get("schedule") == schedule_id:
            before = copy.deepcopy(sub_row.data)
            sub_row.data["schedule"] = None
            sub_row.save()
            self._emit("customer.subscription.updated", sub_row.data, now=now, before=before)
        return schedule_id

    def cancel_subscription(
        self, *, subscription_id: str, at_period_end: bool, idempotency_key: str
    ) -> GatewaySubscription:
        params = {"subscription_id": subscription_id, "at_period_end": at_period_end}
        with transaction.atomic():
            self._idempotent(
                idempotency_key,
                "cancel_subscription",
                params,
                lambda: self._cancel(subscription_id, at_period_end=at_period_end),
            )
            return self.retrieve_subscription(subscription_id)

    def _cancel(self, subscription_id: str, *, at_period_end: bool) -> str:
        _customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        sub = sub_row.data
        now = self._now()
        if sub["status"] in ENDED:
            if at_period_end:
                raise GatewayError("A canceled subscription cannot be updated.", code="subscription_canceled")
            return subscription_id  # canceling twice changes nothing
        before = copy.deepcopy(sub)
        if at_period_end:
            if sub.get("schedule"):
                # Stripe refuses this too: the schedule owns the subscription's future.
                raise GatewayError(
                    "This subscription has a scheduled plan change. Cancel the change first.",
                    code="subscription_schedule_managed",
                )
            if sub["cancel_at_period_end"]:
                return subscription_id  # nothing changes, nothing is emitted
            sub.update(
                cancel_at_period_end=True,
                cancel_at=_item(sub)["current_period_end"],
                canceled_at=_ts(now),
                cancellation_details={"comment": None, "feedback": None, "reason": "cancellation_requested"},
            )
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=now, before=before)
            return subscription_id
        if sub.get("schedule"):
            self._cancel_schedule(sub["schedule"], now=now)
        sub.update(
            status="canceled",
            ended_at=_ts(now),
            canceled_at=_ts(now),
            cancel_at=None,
            cancel_at_period_end=False,
            schedule=None,
            cancellation_details={"comment": None, "feedback": None, "reason": "cancellation_requested"},
        )
        sub_row.save()
        self._emit("customer.subscription.deleted", sub, now=now)
        return subscription_id

    def _cancel_schedule(self, schedule_id: str, *, now: datetime) -> None:
        schedule_row = _lock(schedule_id, "subscription_schedule")
        if schedule_row.data["status"] in ("not_started", "active"):
            schedule_row.data.update(status="canceled", canceled_at=_ts(now))
            schedule_row.save()
            self._emit("subscription_schedule.canceled", schedule_row.data, now=now)

    def retrieve_schedule(self, schedule_id: str) -> GatewaySchedule:
        return schedule_from_stripe(_read(schedule_id, "subscription_schedule"))

    # --- invoices -----------------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> GatewayInvoice:
        return invoice_from_stripe(_read(invoice_id, "invoice"))

    def list_invoices(
        self, *, customer_id: str, created_since: datetime | None = None
    ) -> list[GatewayInvoice]:
        rows = LocalGatewayObject.objects.filter(object_type="invoice", customer_id=customer_id).order_by(
            "-id"
        )
        since = None if created_since is None else _ts(created_since)
        return [
            invoice_from_stripe(row.data) for row in rows if since is None or row.data["created"] >= since
        ]

    def charge_one_off(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> GatewayInvoice:
        params = {
            "customer_id": customer_id,
            "amount": amount,
            "currency": currency,
            "description": description,
            "metadata": metadata,
        }
        with transaction.atomic():
            invoice_id = self._idempotent(
                idempotency_key,
                "charge_one_off",
                params,
                lambda: self._charge_one_off(
                    customer_id=customer_id,
                    amount=amount,
                    currency=currency,
                    description=description,
                    metadata=metadata,
                ),
            )
            invoice = invoice_from_stripe(_read(invoice_id, "invoice"))
        if invoice.status != "paid":
            # As the Stripe gateway does when `pay` is declined: the open invoice stays (and its
            # events go out), the caller gets the card's refusal.
            raise GatewayError(MSG_DECLINED, code="card_declined")
        return invoice

    def _charge_one_off(
        self, *, customer_id: str, amount: int, currency: str, description: str, metadata: dict[str, str]
    ) -> str:
        if amount <= 0:
            raise GatewayError("The amount must be positive.", code="parameter_invalid_integer")
        customer_row = _lock(customer_id, "customer")
        now = self._now()
        invoice = self._new_invoice(
            customer_row,
            now=now,
            currency=currency.lower(),
            billing_reason="manual",
            subscription=None,
            lines_spec=[
                {"amount": amount, "description": description, "start": now, "end": now, "metadata": metadata}
            ],
            period=(now, now),
            description=description,
            metadata=metadata,
        )
        self._finalize_and_collect(customer_row, invoice, now=now)
        return str(invoice["id"])

    # --- webhooks -----------------------------------------------------------------------------------

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
        expected = _sign(self._webhook_secret, timestamp, body)
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

    # --- simulation: what the hosted pages and Stripe's clock do ------------------------------------

    def complete_checkout(self, session_id: str) -> GatewaySubscription:
        """The customer paid on the hosted checkout page: the subscription starts now, its first
        invoice is paid. Completing again returns the same subscription and emits nothing."""
        with transaction.atomic():
            customer_row, session_row = self._lock_with_customer(session_id, "checkout.session")
            session = session_row.data
            if session["status"] == "complete":
                return self.retrieve_subscription(session["subscription"])
            if session["status"] == "expired":
                raise GatewayError("This checkout session has expired.", code="checkout_session_expired")
            card = self._card(customer_row)
            if card is not None and _card_failing(card):
                raise GatewayError(MSG_DECLINED, code="card_declined")
            now = self._now()
            if card is None:
                self._attach_card(
                    customer_row, failing=False, last4="4242", now=now
                )  # what the form collected

            price = session["line_items"]["data"][0]["price"]
            sub_id = _new_id("sub")
            start = _dt(_ts(now))
            end = _period_end_after(start, start, _interval(price))
            metadata = dict((session.get("subscription_data") or {}).get("metadata") or session["metadata"])
            invoice_id = _new_id("in")
            sub = {
                "id": sub_id,
                "object": "subscription",
                "application": None,
                "application_fee_percent": None,
                "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
                "billing_cycle_anchor": _ts(start),
                "billing_cycle_anchor_config": None,
                "billing_mode": {"type": "classic"},
                "billing_thresholds": None,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "cancellation_details": {"comment": None, "feedback": None, "reason": None},
                "collection_method": "charge_automatically",
                "created": _ts(now),
                "currency": price["currency"],
                "customer": customer_row.object_id,
                "customer_account": None,
                "days_until_due": None,
                "default_payment_method": None,
                "default_source": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [],
                "ended_at": None,
                "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": _new_id("si"),
                            "object": "subscription_item",
                            "billing_thresholds": None,
                            "created": _ts(now),
                            "current_period_start": _ts(start),
                            "current_period_end": _ts(end),
                            "discounts": [],
                            "metadata": {},
                            "plan": _plan(price),
                            "price": price,
                            "quantity": 1,
                            "subscription": sub_id,
                            "tax_rates": [],
                        }
                    ],
                    "has_more": False,
                    "total_count": 1,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                },
                "latest_invoice": invoice_id,
                "livemode": False,
                "metadata": metadata,
                "next_pending_invoice_item_invoice": None,
                "on_behalf_of": None,
                "pause_collection": None,
                "payment_settings": {
                    "payment_method_options": None,
                    "payment_method_types": None,
                    "save_default_payment_method": "off",
                },
                "pending_invoice_item_interval": None,
                "pending_setup_intent": None,
                "pending_update": None,
                "schedule": None,
                "start_date": _ts(now),
                "status": "active",
                "test_clock": None,
                "transfer_data": None,
                "trial_end": None,
                "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                "trial_start": None,
            }
            invoice = self._new_invoice(
                customer_row,
                now=now,
                currency=price["currency"],
                billing_reason="subscription_create",
                subscription=sub,
                lines_spec=[
                    {
                        "amount": price["unit_amount"],
                        "description": _cycle_description(price),
                        "start": start,
                        "end": end,
                        "price": price,
                        "proration": False,
                    },
                ],
                period=(now, now),
                invoice_id=invoice_id,
            )
            _insert("subscription", sub, customer_id=customer_row.object_id)
            customer = customer_row.data
            session.update(
                status="complete",
                payment_status="paid",
                subscription=sub_id,
                url=None,
                customer_details={
                    "address": None,
                    "email": customer.get("email"),
                    "name": customer.get("name"),
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
            )
            session_row.save()
            self._emit("customer.subscription.created", sub, now=now)
            self._finalize_and_collect(customer_row, invoice, now=now)
            self._emit("checkout.session.completed", session, now=now)
            return subscription_from_stripe(sub)

    def expire_checkout(self, session_id: str) -> GatewayCheckoutSession:
        """The customer abandoned the hosted checkout (or 24 hours passed)."""
        with transaction.atomic():
            _customer_row, session_row = self._lock_with_customer(session_id, "checkout.session")
            self._expire_session(session_row, now=self._now())
            return checkout_session_from_stripe(session_row.data)

    def _expire_session(self, session_row: LocalGatewayObject, *, now: datetime) -> bool:
        session = session_row.data
        if session["status"] == "expired":
            return False
        if session["status"] != "open":
            raise GatewayError("Only an open checkout session can expire.", code="checkout_session_not_open")
        session.update(status="expired", url=None)
        session_row.save()
        self._emit("checkout.session.expired", session, now=now)
        return True

    def set_card(self, customer_id: str, *, failing: bool, last4: str) -> None:
        """The customer's default card from now on. A working card pays what is open, as Stripe's
        retry would, and brings overdue subscriptions back to active."""
        if not (len(last4) == 4 and last4.isdigit()):
            raise GatewayError("last4 must be four digits.", code="parameter_invalid")
        with transaction.atomic():
            customer_row = _lock(customer_id, "customer")
            now = self._now()
            self._attach_card(customer_row, failing=failing, last4=last4, now=now)
            if not failing:
                self._pay_open(customer_row, now=now)

    def fail_next_payment(self, subscription_id: str) -> GatewayInvoice:
        """The next billing date arrives with a declining card: the card is marked failing, the period
        renews (from now, for simplicity), its invoice stays open and the subscription is past_due."""
        with transaction.atomic():
            customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
            sub = sub_row.data
            if sub["status"] in ENDED:
                raise GatewayError(
                    "A canceled subscription has no next payment.", code="subscription_canceled"
                )
            now = self._now()
            card = self._card(customer_row)
            if card is None or not _card_failing(card):
                last4 = "0341" if card is None else card["card"]["last4"]
                self._attach_card(customer_row, failing=True, last4=last4, now=now)
            invoice = self._renew(customer_row, sub_row, start=_dt(_ts(now)), now=now, reanchor=True)
            return invoice_from_stripe(invoice)

    def pay_open_invoices(self, customer_id: str) -> list[GatewayInvoice]:
        """The customer pays everything open (the hosted invoice page): overdue subscriptions recover."""
        with transaction.atomic():
            customer_row = _lock(customer_id, "customer")
            return [invoice_from_stripe(inv) for inv in self._pay_open(customer_row, now=self._now())]

    def resume_subscription(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        """Undo a cancellation at period end (the API's `cancel_at_period_end=false`, the portal's
        "Renew"): one customer.subscription.updated, as Stripe sends. Resuming what is not canceled
        changes and emits nothing; an ended subscription is refused, as at Stripe."""
        with transaction.atomic():
            self._idempotent(
                idempotency_key,
                "resume_subscription",
                {"subscription_id": subscription_id},
                lambda: self._resume(subscription_id),
            )
            return self.retrieve_subscription(subscription_id)

    def _resume(self, subscription_id: str) -> str:
        _customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        sub = sub_row.data
        if sub["status"] in ENDED:
            raise GatewayError("A canceled subscription cannot be resumed.", code="subscription_canceled")
        if sub["cancel_at_period_end"] or sub.get("cancel_at"):
            before = copy.deepcopy(sub)
            sub.update(
                cancel_at_period_end=False,
                cancel_at=None,
                canceled_at=None,
                cancellation_details={"comment": None, "feedback": None, "reason": None},
            )
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=self._now(), before=before)
        return subscription_id

    def advance(self, now: datetime | None = None) -> int:
        """Stripe's clock: apply scheduled changes that are due, end subscriptions canceled at period
        end, renew the others (paid, or past_due on a declining card), expire checkout sessions older
        than 24 hours. Returns how many subscriptions, schedules and sessions changed. Each object is
        re-read under its lock, so a second (or concurrent) call finds nothing left to do."""
        moment = _dt(_ts(now or self._now()))
        changed = 0
        subs = (
            LocalGatewayObject.objects.filter(object_type="subscription")
            .exclude(data__status__in=sorted(ENDED))
            .order_by("id")
        )
        for row in subs:
            if not _subscription_due(row.data, _schedule_switch_at(row.data), moment):
                continue
            with transaction.atomic():
                customer_row, sub_row = self._lock_with_customer(row.object_id, "subscription")
                changed += self._advance_subscription(customer_row, sub_row, moment)
        sessions = LocalGatewayObject.objects.filter(
            object_type="checkout.session", data__status="open", data__expires_at__lte=_ts(moment)
        ).order_by("id")
        for row in sessions:
            with transaction.atomic():
                _customer_row, session_row = self._lock_with_customer(row.object_id, "checkout.session")
                if session_row.data["status"] == "open" and session_row.data["expires_at"] <= _ts(moment):
                    changed += self._expire_session(session_row, now=moment)
        return changed

    def customer_overview(self, customer_id: str) -> dict[str, Any]:
        """What the portal stand-in shows: the customer, the card, subscriptions and invoices, newest first."""
        customer = _read(customer_id, "customer")
        card = self._card_of(customer)
        subscriptions = []
        rows = LocalGatewayObject.objects.filter(
            object_type="subscription", customer_id=customer_id
        ).order_by("-id")
        for row in rows:
            gw = subscription_from_stripe(row.data)
            scheduled_price_id, scheduled_at = "", None
            if gw.schedule_id:
                schedule = _read(gw.schedule_id, "subscription_schedule")
                if schedule["status"] in ("not_started", "active") and len(schedule["phases"]) > 1:
                    scheduled_price_id = schedule["phases"][1]["items"][0]["price"]
                    scheduled_at = _dt(schedule["phases"][1]["start_date"])
            subscriptions.append(
                {
                    "id": gw.id,
                    "status": gw.status,
                    "price_id": gw.price_id,
                    "amount": _item(row.data)["price"]["unit_amount"],
                    "currency": _item(row.data)["price"]["currency"],
                    "interval": _interval(_item(row.data)["price"]),
                    "current_period_start": gw.current_period_start,
                    "current_period_end": gw.current_period_end,
                    "cancel_at_period_end": gw.cancel_at_period_end,
                    "cancel_at": gw.cancel_at,
                    "canceled_at": gw.canceled_at,
                    "ended_at": gw.ended_at,
                    "schedule_id": gw.schedule_id,
                    "scheduled_price_id": scheduled_price_id,
                    "scheduled_at": scheduled_at,
                    "latest_invoice_id": gw.latest_invoice_id,
                }
            )
        invoices = self.list_invoices(customer_id=customer_id)
        return {
            "customer_id": customer_id,
            "email": customer.get("email") or "",
            "name": customer.get("name") or "",
            "card": None
            if card is None
            else {
                "id": card["id"],
                "brand": card["card"]["brand"],
                "last4": card["card"]["last4"],
                "failing": _card_failing(card),
            },
            "subscriptions": subscriptions,
            "invoices": invoices,
            "has_open_invoices": any(invoice.status == "open" for invoice in invoices),
        }

    # --- subscription cycle -------------------------------------------------------------------------

    def _advance_subscription(
        self, customer_row: LocalGatewayObject, sub_row: LocalGatewayObject, now: datetime
    ) -> int:
        sub_changed, schedules_done = False, 0
        for _ in range(MAX_CYCLES_PER_ADVANCE):
            sub = sub_row.data
            if sub["status"] in ENDED:
                break
            period_end = _dt(_item(sub)["current_period_end"])
            switch_at = _schedule_switch_at(sub)
            if switch_at is not None and switch_at <= now and switch_at <= period_end:
                self._apply_schedule(sub_row, switch_at)
                sub_changed, schedules_done = True, schedules_done + 1
                continue
            if period_end > now:
                break
            sub_changed = True
            if sub["cancel_at_period_end"] or (sub.get("cancel_at") and _dt(sub["cancel_at"]) <= period_end):
                sub.update(status="canceled", ended_at=_ts(period_end))
                sub_row.save()
                self._emit("customer.subscription.deleted", sub, now=period_end)
                break
            self._renew(customer_row, sub_row, start=period_end, now=period_end)
        else:
            logger.warning("Stopped renewing %s after %d cycles", sub_row.object_id, MAX_CYCLES_PER_ADVANCE)
        return int(sub_changed) + schedules_done

    def _apply_schedule(self, sub_row: LocalGatewayObject, switch_at: datetime) -> None:
        """The schedule's next phase starts: the subscription moves to its price; the schedule is done."""
        sub = sub_row.data
        schedule_row = _lock(sub["schedule"], "subscription_schedule")
        schedule = schedule_row.data
        new_price = self._price(schedule["phases"][1]["items"][0]["price"], switch_at)
        before = copy.deepcopy(sub)
        item = _item(sub)
        item["price"] = new_price
        item["plan"] = _plan(new_price)
        sub["currency"] = new_price["currency"]
        sub["schedule"] = None
        sub_row.save()
        schedule.update(
            status="completed",
            completed_at=_ts(switch_at),
            current_phase=None,
            released_subscription=sub["id"],
            subscription=None,
        )
        schedule_row.save()
        self._emit("customer.subscription.updated", sub, now=switch_at, before=before)
        self._emit("subscription_schedule.completed", schedule, now=switch_at)

    def _renew(
        self,
        customer_row: LocalGatewayObject,
        sub_row: LocalGatewayObject,
        *,
        start: datetime,
        now: datetime,
        reanchor: bool = False,
    ) -> dict[str, Any]:
        """A new period from `start` on the subscription's cycle (a new cycle from `start` when
        `reanchor`), invoiced and collected."""
        sub = sub_row.data
        before = copy.deepcopy(sub)
        if reanchor:
            sub["billing_cycle_anchor"] = _ts(start)
        item = _item(sub)
        price = item["price"]
        old_start, old_end = _dt(item["current_period_start"]), _dt(item["current_period_end"])
        end = _period_end_after(_dt(sub["billing_cycle_anchor"]), start, _interval(price))
        item["current_period_start"], item["current_period_end"] = _ts(start), _ts(end)
        invoice = self._new_invoice(
            customer_row,
            now=now,
            currency=price["currency"],
            billing_reason="subscription_cycle",
            subscription=sub,
            lines_spec=[
                {
                    "amount": price["unit_amount"],
                    "description": _cycle_description(price),
                    "start": start,
                    "end": end,
                    "price": price,
                    "proration": False,
                },
            ],
            # Like Stripe, a renewal invoice's own period is the one that just ended; its line
            # carries the period it pays for.
            period=(old_start, min(old_end, start)),
        )
        sub["latest_invoice"] = invoice["id"]
        paid = self._finalize_and_collect(customer_row, invoice, now=now)
        if paid and sub["status"] in OVERDUE and not self._open_invoices_of(sub["id"]):
            sub["status"] = "active"
        elif not paid:
            sub["status"] = "past_due"
        sub_row.save()
        self._emit("customer.subscription.updated", sub, now=now, before=before)
        return invoice

    # --- invoices and payment -------------------------------------------------------------------------

    def _new_invoice(
        self,
        customer_row: LocalGatewayObject,
        *,
        now: datetime,
        currency: str,
        billing_reason: str,
        subscription: Mapping[str, Any] | None,
        lines_spec: list[dict[str, Any]],
        period: tuple[datetime, datetime],
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        invoice_id: str | None = None,
    ) -> dict[str, Any]:
        """A finalized (open) invoice, numbered from the customer's sequence; not yet stored."""
        customer = customer_row.data
        invoice_id = invoice_id or _new_id("in")
        sequence = int(customer.get("next_invoice_sequence") or 1)
        customer["next_invoice_sequence"] = sequence + 1
        customer_row.save()
        sub_id = subscription["id"] if subscription is not None else None
        item_id = _item(subscription)["id"] if subscription is not None else None
        lines = []
        for spec in lines_spec:
            price = spec.get("price")
            if sub_id is not None:
                parent = {
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": _new_id("ii") if spec.get("proration") else None,
                        "proration": bool(spec.get("proration")),
                        "proration_details": {"credited_items": None},
                        "subscription": sub_id,
                        "subscription_item": item_id,
                    },
                }
            else:
                parent = {
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": _new_id("ii"),
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": None,
                    },
                    "subscription_item_details": None,
                }
            lines.append(
                {
                    "id": _new_id("il"),
                    "object": "line_item",
                    "amount": spec["amount"],
                    "currency": currency,
                    "description": spec["description"],
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": invoice_id,
                    "livemode": False,
                    "metadata": dict(spec.get("metadata") or {}),
                    "parent": parent,
                    "period": {"start": _ts(spec["start"]), "end": _ts(spec["end"])},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": price["id"], "product": price["product"]}
                        if price
                        else None,
                        "unit_amount_decimal": str(price["unit_amount"]) if price else str(spec["amount"]),
                    },
                    "quantity": 1,
                    "subtotal": spec["amount"],
                    "taxes": [],
                }
            )
        total = sum(line["amount"] for line in lines)
        return {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Allowance (local)",
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "automatically_finalizes_at": None,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": _ts(now),
            "currency": currency,
            "custom_fields": None,
            "customer": customer_row.object_id,
            "customer_account": None,
            "customer_address": None,
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": description,
            "discounts": [],
            "due_date": None,
            "effective_at": _ts(now),
            "ending_balance": 0,
            "footer": None,
            "from_invoice": None,
            # Our own invoice page and PDF stand in for Stripe's hosted ones.
            "hosted_invoice_url": "",
            "invoice_pdf": "",
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": dict(metadata or {}),
            "next_payment_attempt": None,
            "number": f"{customer['invoice_prefix']}-{sequence:04d}",
            "on_behalf_of": None,
            "parent": None
            if subscription is None
            else {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription.get("metadata") or {}),
                    "subscription": sub_id,
                },
            },
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": _ts(period[1]),
            "period_start": _ts(period[0]),
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "open",
            "status_transitions": {
                "finalized_at": _ts(now),
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": _ts(now),
        }

    def _finalize_and_collect(
        self, customer_row: LocalGatewayObject, invoice: dict[str, Any], *, now: datetime
    ) -> bool:
        """Store the open invoice, emit invoice.finalized, charge the card: invoice.paid, or
        invoice.payment_failed leaving it open. Returns whether it was paid."""
        row = _insert("invoice", invoice, customer_id=customer_row.object_id)
        self._emit("invoice.finalized", invoice, now=now)
        card = self._card(customer_row)
        if card is not None and not _card_failing(card):
            _mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            return True
        invoice.update(
            attempt_count=invoice["attempt_count"] + 1,
            attempted=True,
            next_payment_attempt=_ts(now + RETRY_AFTER),
        )
        row.save()
        if not customer_row.data.get("delinquent"):
            customer_row.data["delinquent"] = True
            customer_row.save()
        self._emit("invoice.payment_failed", invoice, now=now)
        return False

    def _pay_open(self, customer_row: LocalGatewayObject, *, now: datetime) -> list[dict[str, Any]]:
        """Pay every open invoice of the customer; overdue subscriptions with nothing left open recover."""
        customer_id = customer_row.object_id
        sub_rows = list(
            LocalGatewayObject.objects.select_for_update()
            .filter(object_type="subscription", customer_id=customer_id)
            .order_by("id")
        )
        invoice_rows = list(
            LocalGatewayObject.objects.select_for_update()
            .filter(object_type="invoice", customer_id=customer_id, data__status="open")
            .order_by("id")
        )
        paid = []
        for row in invoice_rows:
            invoice = row.data
            invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
            _mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            paid.append(invoice)
        if customer_row.data.get("delinquent"):
            customer_row.data["delinquent"] = False
            customer_row.save()
        for sub_row in sub_rows:
            sub = sub_row.data
            if sub["status"] in OVERDUE:
                before = copy.deepcopy(sub)
                sub["status"] = "active"
                sub_row.save()
                self._emit("customer.subscription.updated", sub, now=now, before=before)
        return paid

    def _open_invoices_of(self, subscription_id: str) -> list[LocalGatewayObject]:
        return list(
            LocalGatewayObject.objects.filter(
                object_type="invoice",
                data__status="open",
                data__parent__subscription_details__subscription=subscription_id,
            )
        )

    # --- cards --------------------------------------------------------------------------------------

    def _card(self, customer_row: LocalGatewayObject) -> dict[str, Any] | None:
        return self._card_of(customer_row.data)

    @staticmethod
    def _card_of(customer: Mapping[str, Any]) -> dict[str, Any] | None:
        pm_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if not pm_id:
            return None
        row = LocalGatewayObject.objects.filter(object_id=pm_id, object_type="payment_method").first()
        return None if row is None else row.data

    def _attach_card(
        self, customer_row: LocalGatewayObject, *, failing: bool, last4: str, now: datetime
    ) -> None:
        """A new default card for the customer (the previous one is detached), as a payment_method."""
        customer = customer_row.data
        old_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if old_id:
            old = LocalGatewayObject.objects.select_for_update().filter(object_id=old_id).first()
            if old is not None:
                old.data["customer"] = None
                old.save()
        pm_id = _new_id("pm")
        data = {
            "id": pm_id,
            "object": "payment_method",
            "allow_redisplay": "always",
            "billing_details": {
                "address": None,
                "email": customer.get("email"),
                "name": customer.get("name"),
                "phone": None,
                "tax_id": None,
            },
            "card": {
                "brand": "visa",
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "display_brand": "visa",
                "exp_month": 12,
                "exp_year": now.year + 3,
                "funding": "credit",
                "last4": last4,
                "networks": {"available": ["visa"], "preferred": None},
                "wallet": None,
            },
            "created": _ts(now),
            "customer": customer_row.object_id,
            "customer_account": None,
            "livemode": False,
            # Which test card this is: one that declines every charge, or one that pays.
            "metadata": {"local_card_failing": "true" if failing else "false"},
            "type": "card",
        }
        _insert("payment_method", data, customer_id=customer_row.object_id)
        customer.setdefault("invoice_settings", {})["default_payment_method"] = pm_id
        customer_row.save()

    # --- plumbing -----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _price(self, price_id: str, now: datetime) -> dict[str, Any]:
        """The Stripe price of a catalog price id, and its product (stored, with the name the catalog
        gives it, so invoice lines can say "Growth" as Stripe's do)."""
        try:
            found = CatalogPrice(*self._price_catalog(price_id))
        except (LookupError, ValueError, TypeError, ObjectDoesNotExist) as exc:
            raise GatewayError(f"No such price: '{price_id}'", code="resource_missing") from exc
        unit_amount, currency, interval = found.amount, found.currency, found.interval
        product = "prod_local_" + hashlib.sha256(price_id.encode()).hexdigest()[:14]
        _ensure_product(product, found.product_name or price_id, now)
        return {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": _ts(now),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": product,
            "recurring": {
                "interval": interval,
                "interval_count": 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }

    def _lock_with_customer(
        self, object_id: str, object_type: str
    ) -> tuple[LocalGatewayObject, LocalGatewayObject]:
        """Lock the customer's row, then the object's: every operation locks in this order."""
        customer_id = _read_row(object_id, object_type).customer_id
        customer_row = _lock(customer_id, "customer")
        return customer_row, _lock(object_id, object_type)

    def _idempotent(self, key: str, operation: str, params: dict[str, Any], run: Callable[[], str]) -> str:
        """Run `run` once per idempotency key; a repeat returns the id it created. Reusing a key for
        another request is refused, as Stripe does. Call inside a transaction."""
        if not key:
            return run()
        row_id = "idem_local_" + hashlib.sha256(key.encode()).hexdigest()[:48]
        fingerprint = hashlib.sha256(
            json.dumps([operation, params], sort_keys=True, default=str).encode()
        ).hexdigest()
        row = LocalGatewayObject.objects.select_for_update().filter(object_id=row_id).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = LocalGatewayObject.objects.create(
                        object_type="idempotency",
                        object_id=row_id,
                        data={"key": key, "operation": operation, "fingerprint": fingerprint, "result": ""},
                    )
            except IntegrityError:
                # A concurrent request with the same key got there first and has committed.
                row = LocalGatewayObject.objects.select_for_update().get(object_id=row_id)
        if row.data["fingerprint"] != fingerprint:
            raise GatewayError(
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                code="idempotency_error",
            )
        if row.data["result"]:
            return str(row.data["result"])
        result = run()
        row.data["result"] = result
        row.save()
        return result

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
                key: before.get(key)
                for key in sorted(set(before) | set(snapshot))
                if before.get(key) != snapshot.get(key)
            }
        event_id = _new_id("evt")
        event = {
            "id": event_id,
            "object": "event",
            "api_version": PINNED_API_VERSION,
            "created": _ts(now),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        customer_id = (
            snapshot["id"] if snapshot.get("object") == "customer" else (snapshot.get("customer") or "")
        )
        _insert("event", event, customer_id=customer_id)
        payload = json.dumps(event, indent=2).encode("utf-8")
        # robust: a failing webhook view is logged, not raised into the caller whose change has
        # committed — at Stripe, delivery is separate from the API call too.
        transaction.on_commit(partial(self._send, payload), robust=True)

    def _send(self, payload: bytes) -> None:
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode("utf-8"), self._webhook_secret, int(time.time())
        )
        self._deliver(payload, str(header))


# --- module helpers --------------------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, the day clamped to the month's last (Jan 31 + 1 = Feb 28/29)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _period_end_after(anchor: datetime, start: datetime, interval: str) -> datetime:
    """The first billing date after `start` on the cycle anchored at `anchor`. Counting from the
    anchor, as Stripe does, a cycle anchored on the 31st bills on Feb 28 and then on Mar 31 again."""
    step = {"day": timedelta(days=1), "week": timedelta(weeks=1)}.get(interval)
    if step is not None:
        return anchor + step * max(1, (start - anchor) // step + 1)
    months = {"month": 1, "year": 12}.get(interval)
    if months is None:
        raise GatewayError(f"Unsupported billing interval {interval!r}.", code="parameter_invalid")
    # Start close to `start`, then step: a long-anchored subscription needs no long loop.
    count = max(1, ((start.year - anchor.year) * 12 + start.month - anchor.month) // months)
    while (end := add_months(anchor, months * count)) <= start:
        count += 1
    return end


def _subscription_due(sub: Mapping[str, Any], switch_at: datetime | None, now: datetime) -> bool:
    if sub["status"] in ENDED:
        return False
    return _dt(_item(sub)["current_period_end"]) <= now or (switch_at is not None and switch_at <= now)


def _schedule_switch_at(sub: Mapping[str, Any]) -> datetime | None:
    """When the subscription's schedule moves it to the next phase, if it has an active schedule."""
    schedule_id = sub.get("schedule")
    if not schedule_id:
        return None
    row = LocalGatewayObject.objects.filter(
        object_id=schedule_id, object_type="subscription_schedule"
    ).first()
    if row is None or row.data["status"] not in ("not_started", "active") or len(row.data["phases"]) < 2:
        return None
    return _dt(row.data["phases"][1]["start_date"])


def _mark_paid(invoice: dict[str, Any], now: datetime) -> None:
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        attempted=True,
        attempt_count=max(invoice["attempt_count"], 1),
        next_payment_attempt=None,
    )
    invoice["status_transitions"]["paid_at"] = _ts(now)


def _card_failing(card: Mapping[str, Any]) -> bool:
    return (card.get("metadata") or {}).get("local_card_failing") == "true"


def _phase(price: Mapping[str, Any], *, start: int, end: int) -> dict[str, Any]:
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "automatic_tax": None,
        "billing_cycle_anchor": None,
        "collection_method": None,
        "currency": price["currency"],
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None,
        "items": [{"discounts": [], "metadata": {}, "price": price["id"], "quantity": 1, "tax_rates": []}],
        "metadata": {},
        "on_behalf_of": None,
        "proration_behavior": "create_prorations",
        "start_date": start,
        "transfer_data": None,
        "trial_end": None,
    }


def _plan(price: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy `plan` twin of a recurring price, which Stripe still puts on subscription items."""
    return {
        "id": price["id"],
        "object": "plan",
        "active": True,
        "amount": price["unit_amount"],
        "amount_decimal": str(price["unit_amount"]),
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": _interval(price),
        "interval_count": 1,
        "livemode": False,
        "metadata": {},
        "meter": None,
        "nickname": None,
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def _interval(price: Mapping[str, Any]) -> str:
    return str(price["recurring"]["interval"])


def _item(sub: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = sub["items"]["data"][0]
    return item


# How Stripe words the lines of a subscription's invoices, with the price's product name:
# "1 × Growth (at $199.00 / month)", "Unused time on Starter after 29 Nov 2026",  # noqa: RUF003  (Stripe's own sign)
# "Remaining time on Growth after 29 Nov 2026".
# https://docs.stripe.com/billing/subscriptions/prorations
def _cycle_description(price: Mapping[str, Any]) -> str:
    amount = _money(price["unit_amount"], price["currency"])
    return f"1 \u00d7 {_product_name(price)} (at {amount} / {_interval(price)})"


def _unused_description(price: Mapping[str, Any], now: datetime) -> str:
    return f"Unused time on {_product_name(price)} after {_day(now)}"


def _remaining_description(price: Mapping[str, Any], now: datetime) -> str:
    return f"Remaining time on {_product_name(price)} after {_day(now)}"


_SYMBOLS = {"usd": "$", "eur": "\u20ac", "gbp": "\u00a3", "jpy": "\u00a5"}


def _money(amount: int, currency: str) -> str:
    """An amount as Stripe writes it on a line: "$199.00", "\u00a58,000", "199.00 CHF" (integer
    arithmetic: minor units in, no float on the way)."""
    code = currency.lower()
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if code in _ZERO_DECIMAL:
        number = f"{amount:,}"
    else:
        unit = 1000 if code in _THREE_DECIMAL else 100
        number = f"{amount // unit:,}.{amount % unit:0{len(str(unit)) - 1}d}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"


def _product_name(price: Mapping[str, Any]) -> str:
    """The name of the price's product (price → product → name), or the price id when the product is
    not in the store (a price from before products were kept)."""
    row = LocalGatewayObject.objects.filter(
        object_id=price.get("product") or "", object_type="product"
    ).first()
    return str(row.data.get("name") or price["id"]) if row is not None else str(price["id"])


def _ensure_product(product_id: str, name: str, now: datetime) -> None:
    """The product of a catalog price, created once; a renamed plan renames it (lines already
    written keep the old words, as at Stripe)."""
    row = LocalGatewayObject.objects.filter(object_id=product_id, object_type="product").first()
    if row is not None:
        if row.data.get("name") != name:
            row.data["name"] = name
            row.data["updated"] = _ts(now)
            row.save(update_fields=["data", "updated_at"])
        return
    data = {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": _ts(now),
        "description": None,
        "images": [],
        "livemode": False,
        "metadata": {},
        "name": name,
        "shippable": None,
        "type": "service",
        "updated": _ts(now),
        "url": None,
    }
    try:
        with transaction.atomic():
            _insert("product", data, customer_id="")
    except IntegrityError:
        pass  # a concurrent request stored it first


@dataclass(frozen=True)
class _Proration:
    amount: int  # minor units the change invoices now (negative: a credit)
    lines: list[dict[str, Any]]  # the invoice's line specs, adding up to `amount`
    restart: tuple[datetime, datetime] | None  # the new period when the interval changes


def _prorate(item: Mapping[str, Any], new_price: Mapping[str, Any], now: datetime) -> _Proration:
    """What switching the item to `new_price` at `now` invoices, to the second as Stripe prorates:
    the change itself and its preview both ask this, so they cannot disagree."""
    old_price = item["price"]
    if new_price["currency"] != old_price["currency"]:
        raise GatewayError("The new price must be in the subscription's currency.", code="currency_mismatch")
    start, end = _dt(item["current_period_start"]), _dt(item["current_period_end"])
    total = max(int((end - start).total_seconds()), 1)
    remaining = min(max(int((end - now).total_seconds()), 0), total)
    # Integer seconds and round-half-even on exact fractions: no float decides a cent.
    unused = _div_round(old_price["unit_amount"] * remaining, total)
    unused_line = {
        "amount": -unused,
        "description": _unused_description(old_price, now),
        "start": now,
        "end": end,
        "price": old_price,
        "proration": True,
    }
    if _interval(new_price) != _interval(old_price):
        # A different interval restarts the billing cycle now, at the full new price, less what is
        # left of the current period.
        new_end = _period_end_after(now, now, _interval(new_price))
        cycle_line = {
            "amount": new_price["unit_amount"],
            "description": _cycle_description(new_price),
            "start": now,
            "end": new_end,
            "price": new_price,
            "proration": False,
        }
        return _Proration(new_price["unit_amount"] - unused, [unused_line, cycle_line], (now, new_end))
    # The difference for the time left of the period, as one amount rounded once; the lines show its
    # two halves and add up to it.
    amount = _div_round((new_price["unit_amount"] - old_price["unit_amount"]) * remaining, total)
    remaining_line = {
        "amount": amount + unused,
        "description": _remaining_description(new_price, now),
        "start": now,
        "end": end,
        "price": new_price,
        "proration": True,
    }
    return _Proration(amount, [unused_line, remaining_line], None)


def _div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves to even (as round() did)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def _day(moment: datetime) -> str:
    return moment.strftime("%d %b %Y")


def _sign(secret: str, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def _new_id(prefix: str) -> str:
    return f"{prefix}_local_{secrets.token_hex(7)}"


def _ts(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"an aware datetime is needed, got {moment!r}")
    return int(moment.timestamp())


def _dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


_LABELS = {"checkout.session": "checkout session", "subscription_schedule": "subscription schedule"}


def _read_row(object_id: str, object_type: str) -> LocalGatewayObject:
    row = LocalGatewayObject.objects.filter(object_id=object_id, object_type=object_type).first()
    if row is None:
        raise GatewayError(
            f"No such {_LABELS.get(object_type, object_type)}: '{object_id}'", code="resource_missing"
        )
    return row


def _read(object_id: str, object_type: str) -> dict[str, Any]:
    data: dict[str, Any] = _read_row(object_id, object_type).data
    return data


def _lock(object_id: str, object_type: str) -> LocalGatewayObject:
    row = (
        LocalGatewayObject.objects.select_for_update()
        .filter(object_id=object_id, object_type=object_type)
        .first()
    )
    if row is None:
        raise GatewayError(
            f"No such {_LABELS.get(object_type, object_type)}: '{object_id}'", code="resource_missing"
        )
    return row


def _insert(object_type: str, data: dict[str, Any], *, customer_id: str) -> LocalGatewayObject:
    return LocalGatewayObject.objects.create(
        object_type=object_type, object_id=data["id"], customer_id=customer_id or "", data=data
    )

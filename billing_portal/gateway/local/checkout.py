"""Customers, the hosted checkout and the customer portal: what the `/dev/billing/…` pages stand in
for (Stripe Checkout, the customer portal) and the API calls that open them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db import transaction

from billing_portal.gateway.base import GatewayCheckoutSession, GatewayError, GatewaySubscription
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.idempotency import answer_or_raise
from billing_portal.gateway.local.invoices import MSG_DECLINED, card_declines
from billing_portal.gateway.local.money import cycle_description
from billing_portal.gateway.local.objects import dt, interval, item, ts
from billing_portal.gateway.local.periods import period_end_after
from billing_portal.gateway.local.subscriptions import LocalSubscriptions
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import checkout_session_from_stripe, subscription_from_stripe

CHECKOUT_LIFETIME = timedelta(hours=24)  # Stripe's default expiry of a checkout session


class LocalCheckout(LocalSubscriptions):
    # --- customers ---------------------------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params = {"email": email, "name": name, "metadata": metadata}
        with transaction.atomic():
            answer = self._idempotent(
                idempotency_key,
                "create_customer",
                params,
                lambda: self._create_customer(email=email, name=name, metadata=metadata),
                object_type="customer",
            )
        return str(answer_or_raise(answer)["id"])

    def _create_customer(self, *, email: str, name: str, metadata: dict[str, str]) -> str:
        customer_id = objects.new_id("cus")
        data = objects.customer(customer_id, email=email, name=name, metadata=metadata, now=self._now())
        objects.insert("customer", data, customer_id=customer_id)
        return customer_id

    # --- checkout ----------------------------------------------------------------------------------

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
            answer = self._idempotent(
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
                object_type="checkout.session",
            )
        return checkout_session_from_stripe(answer_or_raise(answer))

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
        objects.lock(customer_id, "customer")  # it must exist, as at Stripe
        now = self._now()
        price = self._price(price_id, now)
        session_id = objects.new_id("cs")
        data = objects.checkout_session(
            session_id,
            customer_id=customer_id,
            price=price,
            description=objects.product_name(price),
            success_url=success_url,
            cancel_url=cancel_url,
            client_reference_id=client_reference_id,
            metadata=metadata,
            expires=now + CHECKOUT_LIFETIME,
            url=f"{self._base_url}/dev/billing/checkout/{session_id}/",
            now=now,
        )
        objects.insert("checkout.session", data, customer_id=customer_id)
        return session_id

    def retrieve_checkout_session(self, session_id: str) -> GatewayCheckoutSession:
        return checkout_session_from_stripe(objects.read(session_id, "checkout.session"))

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
            if card is not None and card_declines(card):
                raise GatewayError(MSG_DECLINED, code="card_declined")
            now = self._now()
            if card is None:
                self._attach_card(
                    customer_row, failing=False, last4="4242", now=now
                )  # what the form collected

            price = session["line_items"]["data"][0]["price"]
            start = dt(ts(now))
            end = period_end_after(start, start, interval(price))
            metadata = dict((session.get("subscription_data") or {}).get("metadata") or session["metadata"])
            invoice_id = objects.new_id("in")
            sub = objects.subscription(
                objects.new_id("sub"),
                customer_id=customer_row.object_id,
                price=price,
                start=start,
                end=end,
                metadata=metadata,
                latest_invoice=invoice_id,
                now=now,
            )
            invoice = self._new_invoice(
                customer_row,
                now=now,
                currency=price["currency"],
                billing_reason="subscription_create",
                subscription=sub,
                lines_spec=[
                    {
                        "amount": price["unit_amount"],
                        "description": cycle_description(price),
                        "start": start,
                        "end": end,
                        "price": price,
                        "proration": False,
                    },
                ],
                period=(now, now),
                invoice_id=invoice_id,
            )
            objects.insert("subscription", sub, customer_id=customer_row.object_id)
            session.update(
                status="complete",
                payment_status="paid",
                subscription=sub["id"],
                url=None,
                customer_details=objects.customer_details(customer_row.data),
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

    # --- the customer portal ---------------------------------------------------------------------------

    def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        objects.read(customer_id, "customer")  # it must exist, as at Stripe
        query = urlencode({"return": return_url})
        return f"{self._base_url}/dev/billing/portal/{customer_id}/?{query}"

    def set_card(self, customer_id: str, *, failing: bool, last4: str) -> None:
        """The customer's default card from now on. A working card pays what is open, as Stripe's
        retry would, and brings overdue subscriptions back to active."""
        if not (len(last4) == 4 and last4.isdigit()):
            raise GatewayError("last4 must be four digits.", code="parameter_invalid")
        with transaction.atomic():
            customer_row = objects.lock(customer_id, "customer")
            now = self._now()
            self._attach_card(customer_row, failing=failing, last4=last4, now=now)
            if not failing:
                self._pay_open(customer_row, now=now)

    def customer_overview(self, customer_id: str) -> dict[str, Any]:
        """What the portal stand-in shows: the customer, the card, subscriptions and invoices, newest first."""
        customer = objects.read(customer_id, "customer")
        card = self._card_of(customer)
        subscriptions = []
        rows = LocalGatewayObject.objects.filter(
            object_type="subscription", customer_id=customer_id
        ).order_by("-id")
        for row in rows:
            gw = subscription_from_stripe(row.data)
            scheduled_price_id, scheduled_at = "", None
            if gw.schedule_id:
                schedule = objects.read(gw.schedule_id, "subscription_schedule")
                if schedule["status"] in objects.LIVE_SCHEDULE and len(schedule["phases"]) > 1:
                    scheduled_price_id = schedule["phases"][1]["items"][0]["price"]
                    scheduled_at = dt(schedule["phases"][1]["start_date"])
            price = item(row.data)["price"]
            subscriptions.append(
                {
                    "id": gw.id,
                    "status": gw.status,
                    "price_id": gw.price_id,
                    "amount": price["unit_amount"],
                    "currency": price["currency"],
                    "interval": interval(price),
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
                "failing": card_declines(card),
            },
            "subscriptions": subscriptions,
            "invoices": invoices,
            "has_open_invoices": any(invoice.status == "open" for invoice in invoices),
        }

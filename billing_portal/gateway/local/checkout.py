"""Customers, the hosted checkout and the customer portal: what the `/dev/billing/…` pages stand in
for (Stripe Checkout, the customer portal) and the API calls that open them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db import transaction

from billing_portal.gateway.base import (
    GatewayCheckoutSession,
    GatewayCustomer,
    GatewayError,
    GatewaySubscription,
    PortalSettings,
)
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.invoices import MSG_CONFIRM, MSG_DECLINED, Card, card_behaviour
from billing_portal.gateway.local.objects import dt, interval, item, ts
from billing_portal.gateway.local.periods import period_end_after
from billing_portal.gateway.local.subscriptions import LocalSubscriptions
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import (
    checkout_session_from_stripe,
    customer_from_stripe,
    subscription_from_stripe,
)

CHECKOUT_LIFETIME = timedelta(hours=24)  # Stripe's default expiry of a checkout session

# "For security reasons, sessions are short-lived and will expire if the customer does not visit the
# URL" (https://docs.stripe.com/api/customer_portal/sessions/object). Stripe states no number there,
# nor anywhere we found: not in its customer portal guide (https://docs.stripe.com/customer-management)
# nor in the changelog that adds `after_expiration`, which recovers an expired session by email and
# names no lifetime (https://docs.stripe.com/changelog/endive/2026-10-28/session-recovery-for-expired-customer-portal-sessions).
# So these two are the stand-in's own, short on purpose (a link kept for later must fail here as it
# would at Stripe); Manage makes a new session at each click, so nothing of ours keeps one.
PORTAL_SESSION_VISIT_WINDOW = timedelta(minutes=5)  # a session not visited within this expires
PORTAL_SESSION_LIFETIME = timedelta(hours=1)  # a visited one expires this long after it was made
MSG_PORTAL_SESSION_EXPIRED = "This portal session has expired. Return to the app and open the portal again."

# The account's default configuration (no configuration named): everything the stand-in's page does.
DEFAULT_PORTAL_FEATURES: dict[str, Any] = {
    "payment_method_update": {"enabled": True},
    "invoice_history": {"enabled": True},
    "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
}


def portal_session_expired(session: Mapping[str, Any], now: datetime) -> bool:
    """Whether a portal session can no longer be used at `now`: not visited within
    PORTAL_SESSION_VISIT_WINDOW of its creation, or older than PORTAL_SESSION_LIFETIME. A session
    without a creation time (kept from before sessions expired) has expired."""
    created = session.get("created")
    if created is None:
        return True
    made = dt(int(created))
    if now >= made + PORTAL_SESSION_LIFETIME:
        return True
    return session.get("visited_at") is None and now >= made + PORTAL_SESSION_VISIT_WINDOW


class LocalCheckout(LocalSubscriptions):
    # --- customers ---------------------------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params = {"email": email, "name": name, "metadata": metadata}
        answer = self._once(
            idempotency_key,
            "create_customer",
            params,
            lambda: self._create_customer(email=email, name=name, metadata=metadata),
            object_type="customer",
        )
        return str(answer["id"])

    def _create_customer(self, *, email: str, name: str, metadata: dict[str, str]) -> str:
        customer_id = objects.new_id("cus")
        data = objects.customer(customer_id, email=email, name=name, metadata=metadata, now=self._now())
        objects.insert("customer", data, customer_id=customer_id)
        return customer_id

    def retrieve_customer(self, customer_id: str) -> GatewayCustomer:
        deleted = LocalGatewayObject.objects.filter(
            object_id=customer_id, object_type="deleted_customer"
        ).first()
        if deleted is not None:
            return customer_from_stripe(deleted.data)
        return customer_from_stripe(objects.read(customer_id, "customer"))

    def delete_customer(self, customer_id: str) -> None:
        """Deleted in the Dashboard (or by another integration): Stripe cancels its subscriptions at
        once (customer.subscription.deleted each), then sends customer.deleted; afterwards the id is
        "No such customer" to every call that uses it. https://docs.stripe.com/api/customers/delete"""
        with transaction.atomic():
            customer_row = objects.lock(customer_id, "customer")
            now = self._now()
            subs = LocalGatewayObject.objects.select_for_update().filter(
                object_type="subscription", customer_id=customer_id
            )
            for sub_row in subs:
                if sub_row.data["status"] in objects.ENDED:
                    continue
                sub_row.data.update(
                    status="canceled",
                    canceled_at=objects.ts(now),
                    ended_at=objects.ts(now),
                    cancel_at=None,
                    cancel_at_period_end=False,
                )
                sub_row.save()
                self._emit("customer.subscription.deleted", sub_row.data, now=now)
            self._emit("customer.deleted", customer_row.data, now=now)
            customer_row.object_type = "deleted_customer"
            customer_row.data = {"id": customer_id, "object": "customer", "deleted": True}
            customer_row.save()

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
        return checkout_session_from_stripe(
            self._once(
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
        )

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

    def complete_checkout(
        self,
        session_id: str,
        *,
        card: Card | str = Card.PAYS,
        last4: str = "4242",
        confirmed: bool = False,
    ) -> GatewaySubscription:
        """The customer pays on the hosted checkout page with the card they enter there: the
        subscription starts now and its first invoice is paid by that card, which Checkout saves on
        the subscription (`default_payment_method`), not as the customer's default for invoices.
        A declining card is refused on the page and creates nothing; a card that asks for 3D Secure
        is refused until the customer has confirmed on the page (`confirmed`). Completing again
        returns the same subscription and emits nothing.
        https://docs.stripe.com/payments/checkout/subscriptions/update-payment-details"""
        card = Card(card)
        with transaction.atomic():
            customer_row, session_row = self._lock_with_customer(session_id, "checkout.session")
            session = session_row.data
            if session["status"] == "complete":
                return self.retrieve_subscription(session["subscription"])
            # Past its expires_at a session cannot be paid, even before the tick marks it expired.
            if session["status"] == "expired" or ts(self._now()) >= int(session["expires_at"]):
                raise GatewayError("This checkout session has expired.", code="checkout_session_expired")
            if card == Card.DECLINES:
                raise GatewayError(MSG_DECLINED, code="card_declined")
            if card == Card.REQUIRES_ACTION and not confirmed:
                raise GatewayError(MSG_CONFIRM, code="authentication_required")
            now = self._now()
            paid_with = self._new_card(customer_row, behaviour=card, last4=last4, now=now)

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
            sub["default_payment_method"] = paid_with["id"]
            invoice = self._cycle_invoice(
                customer_row,
                sub=sub,
                price=price,
                start=start,
                end=end,
                now=now,
                billing_reason="subscription_create",
                period=(now, now),
                invoice_id=invoice_id,
            )
            sub_row = objects.insert("subscription", sub, customer_id=customer_row.object_id)
            session.update(
                status="complete",
                payment_status="paid",
                subscription=sub["id"],
                url=None,
                customer_details=objects.customer_details(customer_row.data),
            )
            session_row.save()
            self._emit("customer.subscription.created", sub, now=now)
            # The card was just confirmed on the page: this first payment goes through.
            self._finalize_and_collect(customer_row, invoice, now=now, sub_row=sub_row, confirmed=True)
            self._emit("checkout.session.completed", session, now=now)
            return subscription_from_stripe(sub)

    def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> GatewayCheckoutSession:
        """The API's expire: only an open session (an expired one is returned as it is, a complete
        one is refused)."""
        return checkout_session_from_stripe(
            self._once(
                idempotency_key,
                "expire_checkout_session",
                {"session_id": session_id},
                lambda: self._expire_by_api(session_id),
                object_type="checkout.session",
            )
        )

    def _expire_by_api(self, session_id: str) -> str:
        _customer_row, session_row = self._lock_with_customer(session_id, "checkout.session")
        self._expire_session(session_row, now=self._now())
        return session_id

    def checkout_return_url(self, session_id: str, *, completed: bool) -> str:
        """Where the hosted page sends the customer: the success URL, with `{CHECKOUT_SESSION_ID}`
        replaced by the session's id as Stripe does, or the cancel URL.
        https://docs.stripe.com/payments/checkout/custom-success-page"""
        session = objects.read(session_id, "checkout.session")
        if not completed:
            return str(session["cancel_url"])
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)

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

    def create_portal_session(self, *, customer_id: str, return_url: str, configuration_id: str = "") -> str:
        """A portal session, kept with the configuration it names: its page offers only what that
        configuration enables (Stripe's portal shows no Cancel when features.subscription_cancel is
        off). https://docs.stripe.com/api/customer_portal/sessions/create#create_portal_session-configuration
        It is short-lived, as Stripe's are: see PORTAL_SESSION_VISIT_WINDOW and PORTAL_SESSION_LIFETIME."""
        objects.read(customer_id, "customer")  # it must exist, as at Stripe
        if configuration_id:
            objects.read(configuration_id, "billing_portal.configuration")
        session_id = objects.new_id("bps")
        query = urlencode({"session": session_id, "return": return_url})
        url = f"{self._base_url}/dev/billing/portal/{customer_id}/?{query}"
        objects.insert(
            "billing_portal.session",
            {
                "id": session_id,
                "object": "billing_portal.session",
                "configuration": configuration_id or None,
                "created": ts(self._now()),
                "customer": customer_id,
                "livemode": False,
                "return_url": return_url,
                "url": url,
                # Not in Stripe's object: when the customer first opened it (the expiry reads it).
                "visited_at": None,
            },
            customer_id=customer_id,
        )
        return url

    def visit_portal_session(self, *, customer_id: str, session_id: str) -> dict[str, Any]:
        """The customer opens the session's page or acts on it: the features its configuration
        enables now. Every request asks again, so an action is checked against what the
        configuration allows when it is taken, not when the page was shown. The first visit is
        recorded (an unvisited session expires sooner). An expired session is refused
        (`portal_session_expired`, MSG_PORTAL_SESSION_EXPIRED) and changes nothing; a session of
        another customer, or none, is no session (as a portal link that is not Stripe's)."""
        with transaction.atomic():
            row = (
                LocalGatewayObject.objects.select_for_update()
                .filter(object_type="billing_portal.session", object_id=session_id, customer_id=customer_id)
                .first()
            )
            if row is None:
                raise GatewayError("No such portal session.", code="resource_missing")
            now = self._now()
            if portal_session_expired(row.data, now):
                raise GatewayError(MSG_PORTAL_SESSION_EXPIRED, code="portal_session_expired")
            if row.data.get("visited_at") is None:
                row.data["visited_at"] = ts(now)
                row.save()
            return self._portal_features(row.data)

    def portal_session_features(self, *, customer_id: str, session_id: str) -> dict[str, Any]:
        """The features the portal session's configuration enables (the account's default when it
        names none), without visiting it. A session of another customer, or none, is no session."""
        row = LocalGatewayObject.objects.filter(
            object_type="billing_portal.session", object_id=session_id, customer_id=customer_id
        ).first()
        if row is None:
            raise GatewayError("No such portal session.", code="resource_missing")
        return self._portal_features(row.data)

    @staticmethod
    def _portal_features(session: Mapping[str, Any]) -> dict[str, Any]:
        if not session.get("configuration"):
            return copy.deepcopy(DEFAULT_PORTAL_FEATURES)
        features: dict[str, Any] = objects.read(session["configuration"], "billing_portal.configuration")[
            "features"
        ]
        return features

    def configure_portal(
        self, *, settings: PortalSettings, marker: dict[str, str], idempotency_key: str
    ) -> str:
        """The portal configuration, kept as Stripe keeps it (the stand-in's portal page offers what
        it enables). Created once; found again by its metadata and updated."""
        with transaction.atomic():
            found = next(
                (
                    row
                    for row in LocalGatewayObject.objects.select_for_update().filter(
                        object_type="billing_portal.configuration"
                    )
                    if row.data["metadata"] == marker  # exactly: one marker must not find another's
                ),
                None,
            )
            data = {
                "id": found.object_id if found is not None else objects.new_id("bpc"),
                "object": "billing_portal.configuration",
                "active": True,
                "business_profile": {"headline": settings.headline or None},
                "features": {
                    "payment_method_update": {"enabled": settings.payment_methods},
                    "invoice_history": {"enabled": settings.invoice_history},
                    "subscription_cancel": {
                        "enabled": settings.cancel_at_period_end,
                        "mode": "at_period_end",
                        "proration_behavior": "none",
                    },
                    "subscription_update": {"enabled": settings.plan_switching},
                    "subscription_pause": {"enabled": settings.pause},
                    "customer_update": {"enabled": False},
                },
                "livemode": False,
                "metadata": dict(marker),
            }
            if found is None:
                objects.insert("billing_portal.configuration", data, customer_id="")
            else:
                found.data = data
                found.save()
            return str(data["id"])

    def set_card(
        self, customer_id: str, *, failing: bool = False, last4: str, card: Card | str | None = None
    ) -> None:
        """The portal's "Add payment method": a new card, made the customer's default for invoices
        (`invoice_settings.default_payment_method`); the previous default is detached. Like Stripe it
        pays nothing by itself: an open invoice waits for its next retry (or for `invoices.pay`), and a
        subscription with its own `default_payment_method` keeps charging that one.
        https://docs.stripe.com/api/subscriptions/object#subscription_object-default_payment_method"""
        behaviour = Card(card) if card is not None else (Card.DECLINES if failing else Card.PAYS)
        with transaction.atomic():
            customer_row = objects.lock(customer_id, "customer")
            now = self._now()
            before = copy.deepcopy(customer_row.data)
            old_id = (customer_row.data.get("invoice_settings") or {}).get("default_payment_method")
            new = self._new_card(customer_row, behaviour=behaviour, last4=last4, now=now)
            self._emit("payment_method.attached", new, now=now)
            if old_id:
                old = (
                    LocalGatewayObject.objects.select_for_update()
                    .filter(object_id=old_id, object_type="payment_method")
                    .first()
                )
                if old is not None and old.data.get("customer"):
                    old.data["customer"] = None
                    old.save()
                    self._emit("payment_method.detached", old.data, now=now)
            customer_row.data["invoice_settings"]["default_payment_method"] = new["id"]
            customer_row.save()
            self._emit("customer.updated", customer_row.data, now=now, before=before)

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
            own_card = (
                self._attached_card(row.data["default_payment_method"], customer_id)
                if row.data.get("default_payment_method")
                else None
            )
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
                    "card": _card_summary(own_card),
                }
            )
        invoices = self.list_invoices(customer_id=customer_id)
        return {
            "customer_id": customer_id,
            "email": customer.get("email") or "",
            "name": customer.get("name") or "",
            "card": _card_summary(card),
            "subscriptions": subscriptions,
            "invoices": invoices,
            "has_open_invoices": any(invoice.status == "open" for invoice in invoices),
        }


def _card_summary(card: dict[str, Any] | None) -> dict[str, Any] | None:
    if card is None:
        return None
    behaviour = card_behaviour(card)
    return {
        "id": card["id"],
        "brand": card["card"]["brand"],
        "last4": card["card"]["last4"],
        "failing": behaviour == Card.DECLINES,
        "requires_action": behaviour == Card.REQUIRES_ACTION,
    }

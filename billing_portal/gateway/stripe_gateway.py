"""Stripe behind the PaymentGateway boundary, on the official SDK's `StripeClient`.

Every request names the pinned API version, so the shapes read here (billing periods on subscription
items, the invoice's `parent`) cannot move when the account's default version does. Every write
carries an idempotency key derived from the caller's, so a retried call creates nothing twice. Stripe's
errors leave as `GatewayError` with a message fit for the user; the original is chained for the logs.

The `*_from_stripe` functions map plain Stripe JSON (dicts, as in a webhook body) to the boundary's
dataclasses; the local gateway may reuse them on the Stripe-shaped objects it builds."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import stripe

from billing_portal.gateway.base import (
    CreditNoteReason,
    GatewayCharge,
    GatewayCheckoutSession,
    GatewayCreditNote,
    GatewayCustomer,
    GatewayDispute,
    GatewayError,
    GatewayEvent,
    GatewayInvoice,
    GatewayInvoiceLine,
    GatewayInvoicePreview,
    GatewayPendingUpdate,
    GatewaySchedule,
    GatewaySubscription,
    PaymentBehavior,
    PaymentGateway,
    PortalSettings,
    WebhookRejected,
    WebhookSignatureError,
)

if TYPE_CHECKING:
    from stripe.params import CreditNoteCreateParams, SubscriptionUpdateParams
    from stripe.params._invoice_create_preview_params import InvoiceCreatePreviewParamsSubscriptionDetails
    from stripe.params._subscription_schedule_update_params import (
        SubscriptionScheduleUpdateParamsPhase,
        SubscriptionScheduleUpdateParamsPhaseBillingThresholds,
        SubscriptionScheduleUpdateParamsPhaseDiscount,
        SubscriptionScheduleUpdateParamsPhaseInvoiceSettings,
        SubscriptionScheduleUpdateParamsPhaseItem,
    )
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.billing_portal._configuration_create_params import (
        ConfigurationCreateParamsFeatures as PortalConfigurationFeatures,
    )
    from stripe.params.billing_portal._configuration_update_params import (
        ConfigurationUpdateParamsFeatures as PortalConfigurationUpdateFeatures,
    )

logger = logging.getLogger(__name__)

# The API version of every request. This module's mapping and the SDK's types are written for it;
# move both together (a contract test fails when the installed SDK's version moves on without us).
PINNED_API_VERSION = "2026-10-28.endive"

# Stripe's largest page, and how many objects a list reads at most before it stops paging.
LIST_PAGE_SIZE = 100
LIST_CAP = 1000

MSG_UNREACHABLE = "The payment provider could not be reached. Try again in a minute."
MSG_REFUSED = "The payment provider refused this request. Contact support if it keeps happening."
MSG_DECLINED = "Your card was declined."
MSG_SCHEDULE_EXISTS = "This subscription already has a schedule made outside Allowance. Release it at the payment provider first."
# The metadata key that marks a subscription schedule as made by Allowance.
SCHEDULE_MARK = "managed_by"

# Errors worth retrying later: the provider was down, slow or rate-limiting us. Anything else is a
# refusal (bad request, bad key, idempotency-key reuse with other parameters) that a retry won't fix.
_TRANSIENT_ERRORS = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)

# A request must give up well inside gunicorn's 60 s worker timeout (Dockerfile), so that the page
# answers "try again" instead of the worker being killed mid-request. The SDK's own client waits 80 s
# a try. Seconds to connect, then the read timeout (STRIPE_TIMEOUT), per try.
CONNECT_TIMEOUT = 5
DEFAULT_TIMEOUT = 10
DEFAULT_NETWORK_RETRIES = 2


class RetryRateLimits(stripe.HTTPClient):
    """The SDK's retry policy (connection errors, 409, 5xx, what `Stripe-Should-Retry` asks for),
    plus every 429: a rate limit or a lock timeout is worth a retry after the backoff. The SDK sends
    the same Idempotency-Key on each try, so a retried write cannot happen twice.
    https://docs.stripe.com/rate-limits#handling-limiting-gracefully"""

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if response is not None and response[1] == 429 and num_retries < (max_network_retries or 0):
            headers = response[2] or {}
            return headers.get("stripe-should-retry") != "false"
        return bool(super()._should_retry(response, api_connection_error, num_retries, max_network_retries))


class StripeHTTPClient(RetryRateLimits, stripe.RequestsClient):
    """The SDK's requests-based client with our timeout and retry policy."""


def worst_case_seconds(*, timeout: int, retries: int) -> float:
    """The longest a call can take: every try at its connect and read timeouts, every backoff at
    its longest (the SDK's: 0.5 s doubling, at most 5 s)."""
    first, longest = float(stripe.HTTPClient.INITIAL_DELAY), float(stripe.HTTPClient.MAX_DELAY)
    backoff = sum(min(first * (1 << (n - 1)), longest) for n in range(1, retries + 1))
    return (retries + 1) * (CONNECT_TIMEOUT + timeout) + backoff


class StripeGateway(PaymentGateway):
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        http_client: stripe.HTTPClient | None = None,
        webhook_tolerance: int = 300,  # seconds
        timeout: int = DEFAULT_TIMEOUT,  # seconds to read an answer, per try
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> None:
        if webhook_tolerance <= 0:
            # The SDK reads a tolerance of 0 as "don't check the timestamp": replays would pass.
            raise ValueError("webhook_tolerance must be a positive number of seconds")
        self.http_client = http_client or StripeHTTPClient(timeout=(CONNECT_TIMEOUT, timeout))
        self.max_network_retries = max_network_retries
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=PINNED_API_VERSION,
            http_client=self.http_client,
            max_network_retries=max_network_retries,
        )
        self._webhook_secret = webhook_secret
        self._webhook_tolerance = webhook_tolerance
        # Live keys are sk_live_… (secret) or rk_live_… (restricted); test keys sk_test_…, rk_test_….
        # https://docs.stripe.com/keys#obtain-api-keys
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))

    # --- customers, checkout, portal --------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        with _translated_errors():
            customer = self._client.v1.customers.create(
                params={"email": email, "name": name, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        return customer.id

    def retrieve_customer(self, customer_id: str) -> GatewayCustomer:
        with _translated_errors():
            customer = self._client.v1.customers.retrieve(customer_id)
        return customer_from_stripe(customer.to_dict())

    def adopt_subscription_card(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        # Checkout in subscription mode saves the card on the subscription, and a subscription's
        # default_payment_method wins over the customer's invoice_settings.default_payment_method,
        # which is the one the customer portal updates: the card updated in the portal would never
        # pay. Move it to the customer, then clear the subscription's (an empty string unsets it).
        # https://docs.stripe.com/api/subscriptions/object#subscription_object-default_payment_method
        current = self._retrieve_subscription(subscription_id)
        card = _id_of(current.get("default_payment_method"))
        if not card:
            return subscription_from_stripe(current)
        with _translated_errors():
            self._client.v1.customers.update(
                _id_of(current.get("customer")),
                params={"invoice_settings": {"default_payment_method": card}},
                options={"idempotency_key": f"{idempotency_key}:customer"},
            )
            updated = self._client.v1.subscriptions.update(
                subscription_id,
                params={"default_payment_method": ""},
                options={"idempotency_key": f"{idempotency_key}:subscription"},
            )
        return subscription_from_stripe(updated.to_dict())

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
        with _translated_errors():
            session = self._client.v1.checkout.sessions.create(
                params={
                    "mode": "subscription",
                    "customer": customer_id,
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "client_reference_id": client_reference_id,
                    "metadata": metadata,
                    # The subscription carries the same metadata, so its own events name the tenant.
                    "subscription_data": {"metadata": metadata},
                },
                options={"idempotency_key": idempotency_key},
            )
        return checkout_session_from_stripe(session.to_dict())

    def retrieve_checkout_session(self, session_id: str) -> GatewayCheckoutSession:
        with _translated_errors():
            session = self._client.v1.checkout.sessions.retrieve(session_id)
        return checkout_session_from_stripe(session.to_dict())

    def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> GatewayCheckoutSession:
        # "A Checkout Session can be expired when it is in one of these statuses: open."
        # https://docs.stripe.com/api/checkout/sessions/expire
        with _translated_errors():
            session = self._client.v1.checkout.sessions.expire(
                session_id, options={"idempotency_key": idempotency_key}
            )
        return checkout_session_from_stripe(session.to_dict())

    def create_portal_session(self, *, customer_id: str, return_url: str, configuration_id: str = "") -> str:
        # No key of ours: a portal session is a short-lived link, and a second one harms nothing.
        # The SDK still sends a random Idempotency-Key, which makes its own network retries safe.
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        if configuration_id:
            # Without it the Dashboard's default configuration decides what the portal offers.
            # https://docs.stripe.com/api/customer_portal/sessions/create#create_portal_session-configuration
            params["configuration"] = configuration_id
        with _translated_errors():
            session = self._client.v1.billing_portal.sessions.create(params=params)
        return session.url

    def configure_portal(
        self, *, settings: PortalSettings, marker: dict[str, str], idempotency_key: str
    ) -> str:
        # https://docs.stripe.com/api/customer_portal/configurations/create (and /update)
        features: PortalConfigurationFeatures = {
            "payment_method_update": {"enabled": settings.payment_methods},
            "invoice_history": {"enabled": settings.invoice_history},
            "subscription_cancel": (
                {"enabled": True, "mode": "at_period_end", "proration_behavior": "none"}
                if settings.cancel_at_period_end
                else {"enabled": False}
            ),
            "subscription_update": {"enabled": settings.plan_switching},
            "subscription_pause": {"enabled": settings.pause},
            "customer_update": {"enabled": False},
        }
        with _translated_errors():
            page = self._client.v1.billing_portal.configurations.list(params={"limit": LIST_PAGE_SIZE})
            found = next(
                (
                    config
                    for config in _capped(page.auto_paging_iter(), what="portal configurations")
                    # exactly: the default's marker must not find the no-cancel one (a superset)
                    if dict(config.get("metadata") or {}) == marker
                ),
                None,
            )
            if found is not None:
                updated = self._client.v1.billing_portal.configurations.update(
                    found["id"],
                    params={
                        # The same keys and values: the SDK types create's and update's features
                        # as two TypedDicts of one shape.
                        "features": cast("PortalConfigurationUpdateFeatures", features),
                        "business_profile": {"headline": settings.headline},
                        "metadata": marker,
                    },
                    options={"idempotency_key": idempotency_key},
                )
                return updated.id
            created = self._client.v1.billing_portal.configurations.create(
                params={
                    "features": features,
                    "business_profile": {"headline": settings.headline},
                    "metadata": marker,
                },
                options={"idempotency_key": idempotency_key},
            )
        return created.id

    # --- subscriptions ----------------------------------------------------------------------------

    def create_subscription(
        self, *, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> GatewaySubscription:
        # default_incomplete: Stripe creates the subscription `incomplete` with its first invoice
        # finalized and does not try the payment; `invoices.pay` then charges the customer's default
        # card once, and the subscription turns active when that payment succeeds. A decline or a
        # needed 3D Secure confirmation comes back as a card error of that one call, which tells them
        # apart (allow_incomplete would charge on create and leave both cases `incomplete`;
        # error_if_incomplete would refuse the 3D Secure case outright, with no invoice to confirm).
        # https://docs.stripe.com/api/subscriptions/create#create_subscription-payment_behavior
        # https://docs.stripe.com/billing/subscriptions/overview#requires-action
        with _translated_errors():
            created = self._client.v1.subscriptions.create(
                params={
                    "customer": customer_id,
                    "items": [{"price": price_id, "quantity": 1}],
                    "collection_method": "charge_automatically",
                    "payment_behavior": "default_incomplete",
                    "metadata": metadata,
                },
                options={"idempotency_key": f"{idempotency_key}:create"},
            ).to_dict()
        if created.get("status") != "incomplete":
            return subscription_from_stripe(created)  # nothing to pay now, or replayed after payment
        invoice_id = _id_of(created.get("latest_invoice"))
        try:
            with _translated_errors():
                self._client.v1.invoices.pay(
                    invoice_id, options={"idempotency_key": f"{idempotency_key}:pay"}
                )
        except GatewayError as exc:
            if exc.code == "authentication_required":
                return subscription_from_stripe(self._retrieve_subscription(created["id"]))
            if not isinstance(exc.__cause__, stripe.CardError):
                # Unreachable or refused for another reason: the payment may have gone through.
                # Leave the subscription; its events, or Stripe's 23-hour expiry of an unpaid
                # incomplete subscription, decide (a cancel here could end a paid one).
                raise
            # Declined: an incomplete subscription would wait 23 hours for another payment. Cancel it
            # now, so a retry (a new card, a new attempt) starts clean.
            # https://docs.stripe.com/api/subscriptions/cancel
            with _translated_errors():
                self._client.v1.subscriptions.cancel(
                    created["id"], options={"idempotency_key": f"{idempotency_key}:cancel"}
                )
            raise
        return subscription_from_stripe(self._retrieve_subscription(created["id"]))

    def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription:
        return subscription_from_stripe(self._retrieve_subscription(subscription_id))

    def list_subscriptions(self, *, customer_id: str) -> list[GatewaySubscription]:
        with _translated_errors():
            page = self._client.v1.subscriptions.list(
                params={"customer": customer_id, "status": "all", "limit": LIST_PAGE_SIZE},
            )
            found = _capped(page.auto_paging_iter(), what=f"subscriptions of {customer_id}")
        return [subscription_from_stripe(sub) for sub in found]

    def change_subscription_price(
        self,
        *,
        subscription_id: str,
        price_id: str,
        idempotency_key: str,
        payment_behavior: PaymentBehavior = "allow_incomplete",
    ) -> GatewaySubscription:
        current = self._retrieve_subscription(subscription_id)
        item = _first_item(current)
        if _id_of(item.get("price")) == price_id:
            return subscription_from_stripe(current)  # already there: nothing to prorate
        # cancel_at_period_end is left alone: plans refuses a change on a canceled subscription
        # ("Resume it to change plans"), so a price change never doubles as an un-cancel.
        with _translated_errors():
            updated = self._client.v1.subscriptions.update(
                subscription_id,
                params={
                    "items": [{"id": item["id"], "price": price_id}],
                    "proration_behavior": "always_invoice",
                    # Sent even when it is Stripe's default: what an unpaid invoice does to the
                    # change is decided here, not by the account's API version.
                    # https://docs.stripe.com/billing/subscriptions/pending-updates
                    "payment_behavior": payment_behavior,
                },
                options={"idempotency_key": idempotency_key},
            )
        return subscription_from_stripe(updated.to_dict())

    def preview_price_change(
        self, *, subscription_id: str, price_id: str, at: datetime | None = None
    ) -> GatewayInvoicePreview:
        # Stripe's preview of the update `change_subscription_price` makes (same item, same
        # `always_invoice`): the invoice that change would create and charge now. Nothing is created.
        # With `at`, the proration is worked out as though the update were made then
        # (`subscription_details.proration_date`): what a schedule's switch at `at`, whose phase
        # says `always_invoice`, invoices. Stripe wants it within the current period.
        # https://docs.stripe.com/api/invoices/create_preview
        # https://docs.stripe.com/billing/subscriptions/prorations#preview-proration
        current = self._retrieve_subscription(subscription_id)
        item = _first_item(current)
        currency = str(current.get("currency") or (item.get("price") or {}).get("currency") or "")
        if _id_of(item.get("price")) == price_id:
            return GatewayInvoicePreview(currency=currency, amount_due=0, total=0)
        details: InvoiceCreatePreviewParamsSubscriptionDetails = {
            "items": [{"id": item["id"], "price": price_id}],
            "proration_behavior": "always_invoice",
        }
        if at is not None:
            details["proration_date"] = _unix(at)
        # No idempotency key: a preview creates nothing (the SDK's own key covers its retries).
        with _translated_errors():
            preview = self._client.v1.invoices.create_preview(
                params={"subscription": subscription_id, "subscription_details": details},
            )
        return invoice_preview_from_stripe(preview.to_dict())

    def schedule_subscription_change(
        self, *, subscription_id: str, price_id: str, at: datetime, idempotency_key: str
    ) -> GatewaySchedule:
        """A schedule made from the subscription (its current phase), then updated with the phase
        that switches the price at `at`. Two calls: the attempt's key, suffixed for each."""
        switch_at = _unix(at)
        # A subscription has one schedule at a time. Look before making one: a schedule of ours for
        # this very change is the answer of an attempt whose reply was lost; a bare one (the current
        # phase only, none of our settings) is what a failed attempt left, released first; anything
        # else was made outside Allowance and is not ours to touch.
        # https://docs.stripe.com/billing/subscriptions/subscription-schedules#existing-subscription
        held_by = _id_of(self._retrieve_subscription(subscription_id).get("schedule"))
        if held_by:
            with _translated_errors():
                existing = self._client.v1.subscription_schedules.retrieve(held_by).to_dict()
            if _is_our_schedule_for(existing, price_id=price_id, switch_at=switch_at):
                return schedule_from_stripe(existing)
            if not _is_leftover(existing):
                raise GatewayError(MSG_SCHEDULE_EXISTS, code="subscription_schedule_exists")
            with _translated_errors():
                self._client.v1.subscription_schedules.release(
                    held_by, options={"idempotency_key": f"{idempotency_key}:release-leftover"}
                )
        with _translated_errors():
            created = self._client.v1.subscription_schedules.create(
                params={"from_subscription": subscription_id},
                options={"idempotency_key": f"{idempotency_key}:create"},
            ).to_dict()
        # A schedule made from a subscription has one phase, the current one, holding the
        # subscription's settings. Stripe wants it restated with its own start; restated from the
        # object unchanged (card, discounts, tax rates, metadata, …), since a setting left out is
        # removed. The phase we add is the same with the new price, from the date on.
        # https://docs.stripe.com/billing/subscriptions/subscription-schedules#updating
        current = phase_params(created["phases"][0])
        following = phase_params(created["phases"][0])
        following["items"] = [{**following["items"][0], "price": price_id}, *following["items"][1:]]
        current["end_date"] = switch_at
        following["start_date"] = switch_at
        following.pop("end_date", None)
        # The switch prorates as "Immediately" does, at its date: the unused time on the old price
        # is credited and the remaining time on the new one charged, from the switch to the end of
        # the period it falls in, invoiced and collected then. (A phase's default is
        # create_prorations, which would leave them for the next renewal; `none` would let a
        # tenant use a bigger plan until then for nothing.) A switch at a period's end has no time
        # left to prorate: the renewal bills the new price.
        # https://docs.stripe.com/api/subscription_schedules/update#update_subscription_schedule-phases-proration_behavior
        # https://docs.stripe.com/billing/subscriptions/prorations
        following["proration_behavior"] = "always_invoice"
        with _translated_errors():
            try:
                schedule = self._client.v1.subscription_schedules.update(
                    created["id"],
                    params={
                        "phases": [current, following],
                        # After the last phase the subscription goes on by itself, on the new price.
                        "end_behavior": "release",
                        # Restating the current phase changes nothing, so it must invoice nothing.
                        "proration_behavior": "none",
                        # How a later attempt knows this schedule as ours.
                        "metadata": {SCHEDULE_MARK: "allowance"},
                    },
                    options={"idempotency_key": f"{idempotency_key}:update"},
                )
            except stripe.StripeError:
                # Refused, or failed after the SDK's retries: the next attempt is a new key, so don't
                # leave the subscription held by a schedule nobody knows the id of.
                self._release_quietly(created["id"], idempotency_key=f"{idempotency_key}:undo")
                raise
        return schedule_from_stripe(schedule.to_dict())

    def release_schedule(self, schedule_id: str, *, idempotency_key: str) -> None:
        with _translated_errors():
            self._client.v1.subscription_schedules.release(
                schedule_id,
                options={"idempotency_key": idempotency_key},
            )

    def cancel_subscription(
        self, *, subscription_id: str, at_period_end: bool, idempotency_key: str
    ) -> GatewaySubscription:
        with _translated_errors():
            if at_period_end:
                sub = self._client.v1.subscriptions.update(
                    subscription_id,
                    params={"cancel_at_period_end": True},
                    options={"idempotency_key": idempotency_key},
                )
            else:
                # A DELETE: Stripe ignores the key there (deleting twice is already harmless), but
                # sending it keeps "every write carries our key" true in the request log.
                sub = self._client.v1.subscriptions.cancel(
                    subscription_id,
                    options={"idempotency_key": idempotency_key},
                )
        return subscription_from_stripe(sub.to_dict())

    def resume_subscription(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        # "You can reactivate subscriptions scheduled for cancellation (with the cancel_at_period_end
        # parameter) by updating cancel_at_period_end to false ... at any point up to the end of the
        # period." https://docs.stripe.com/billing/subscriptions/cancel
        # A cancellation set as a date (`cancel_at`, e.g. by the customer portal) is undone by
        # unsetting that date instead (an empty string unsets a parameter in Stripe's API).
        current = self._retrieve_subscription(subscription_id)
        if current.get("status") in ("canceled", "incomplete_expired"):
            # Stripe refuses to update an ended subscription; say so in our words, without asking.
            raise GatewayError("A canceled subscription cannot be resumed.", code="subscription_canceled")
        if current.get("cancel_at_period_end"):
            params: SubscriptionUpdateParams = {"cancel_at_period_end": False}
        elif current.get("cancel_at"):
            params = {"cancel_at": ""}
        else:
            return subscription_from_stripe(current)  # not canceled: nothing to undo, nothing sent
        with _translated_errors():
            updated = self._client.v1.subscriptions.update(
                subscription_id, params=params, options={"idempotency_key": idempotency_key}
            )
        return subscription_from_stripe(updated.to_dict())

    def retrieve_schedule(self, schedule_id: str) -> GatewaySchedule:
        with _translated_errors():
            schedule = self._client.v1.subscription_schedules.retrieve(schedule_id)
        return schedule_from_stripe(schedule.to_dict())

    # --- invoices -----------------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> GatewayInvoice:
        with _translated_errors():
            invoice = self._client.v1.invoices.retrieve(invoice_id)
        return self._invoice(invoice.to_dict())

    def list_invoices(
        self, *, customer_id: str, created_since: datetime | None = None
    ) -> list[GatewayInvoice]:
        with _translated_errors():
            if created_since is None:
                page = self._client.v1.invoices.list(
                    params={"customer": customer_id, "limit": LIST_PAGE_SIZE}
                )
            else:
                page = self._client.v1.invoices.list(
                    params={
                        "customer": customer_id,
                        "created": {"gte": _unix(created_since)},
                        "limit": LIST_PAGE_SIZE,
                    },
                )
            found = _capped(page.auto_paging_iter(), what=f"invoices of {customer_id}")
        return [self._invoice(invoice) for invoice in found]

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        # https://docs.stripe.com/api/invoices/pay
        with _translated_errors():
            paid = self._client.v1.invoices.pay(invoice_id, options={"idempotency_key": idempotency_key})
        return self._invoice(paid.to_dict())

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        # Only an open or uncollectible invoice can be voided (anything else is an invalid request);
        # a void invoice is not payable, so no retry (Smart Retries, automatic collection) collects it.
        # https://docs.stripe.com/api/invoices/void
        # https://docs.stripe.com/invoicing/integration/workflow-transitions
        with _translated_errors():
            voided = self._client.v1.invoices.void_invoice(
                invoice_id, options={"idempotency_key": idempotency_key}
            )
        return self._invoice(voided.to_dict())

    def refund_invoice(self, invoice_id: str, *, idempotency_key: str) -> int:
        # Since API version 2025-03-31 an invoice's payments are InvoicePayment objects naming their
        # payment intent; each paid one is refunded through it, in full.
        # https://docs.stripe.com/api/invoice-payment/list, https://docs.stripe.com/api/refunds/create
        refunded = 0
        with _translated_errors():
            payments = self._client.v1.invoice_payments.list(
                params={"invoice": invoice_id, "status": "paid", "limit": LIST_PAGE_SIZE}
            )
            for payment in _capped(payments.auto_paging_iter(), what=f"payments of {invoice_id}"):
                intent = _id_of((payment.get("payment") or {}).get("payment_intent"))
                if not intent:
                    continue
                try:
                    refund = self._client.v1.refunds.create(
                        params={
                            "payment_intent": intent,
                            "reason": "duplicate",
                            "metadata": {"invoice": invoice_id},
                        },
                        options={"idempotency_key": f"{idempotency_key}:{intent}"},
                    )
                except stripe.InvalidRequestError as exc:
                    if exc.code == "charge_already_refunded":
                        continue
                    raise
                refunded += refund.amount
        return refunded

    def credit_invoice_to_balance(
        self,
        invoice_id: str,
        *,
        amount: int,
        reason: CreditNoteReason,
        memo: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> GatewayCreditNote:
        # A credit note on the paid invoice whose whole amount is credit_amount: post-payment, "the
        # sum of refunds, customer balance credits, and outside of Stripe credits must equal the
        # post_payment_amount", and the credit is "automatically applied to their next invoice when
        # it's finalized". https://docs.stripe.com/api/credit_notes/create
        params: CreditNoteCreateParams = {
            "invoice": invoice_id,
            "amount": amount,
            "credit_amount": amount,
            "reason": reason,
            "metadata": metadata,
            # What was credited, read from the balance transaction itself.
            "expand": ["customer_balance_transaction"],
        }
        if memo:
            params["memo"] = memo
        with _translated_errors():
            note = self._client.v1.credit_notes.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return credit_note_from_stripe(note.to_dict())

    def invoice_credited_to_balance(self, invoice_id: str) -> int:
        # Each credit note of the invoice with the customer balance transaction it made (its amount is
        # negative: a credit); a voided note's credit was taken back.
        # https://docs.stripe.com/api/credit_notes/list
        with _translated_errors():
            page = self._client.v1.credit_notes.list(
                params={
                    "invoice": invoice_id,
                    "limit": LIST_PAGE_SIZE,
                    "expand": ["data.customer_balance_transaction"],
                }
            )
            notes = _capped(page.auto_paging_iter(), what=f"credit notes of {invoice_id}")
        return sum(credit_note_from_stripe(note).credited_to_balance for note in notes)

    def invoice_of_charge(self, charge_id: str) -> str:
        # A charge no longer names its invoice: charge → payment intent → invoice payment → invoice.
        with _translated_errors():
            charge = self._client.v1.charges.retrieve(charge_id)
            intent = _id_of(charge.to_dict().get("payment_intent"))
            if not intent:
                return ""
            found = self._client.v1.invoice_payments.list(
                params={"payment": {"type": "payment_intent", "payment_intent": intent}, "limit": 1}
            )
        first = next(iter(found.data), None)
        return "" if first is None else _id_of(first.to_dict().get("invoice"))

    def invoice_refunded(self, invoice_id: str) -> int:
        # What the invoice's payments collected and what of it was refunded: each payment intent's
        # charge. https://docs.stripe.com/api/invoice-payment/list
        refunded = 0
        with _translated_errors():
            payments = self._client.v1.invoice_payments.list(
                params={"invoice": invoice_id, "status": "paid", "limit": LIST_PAGE_SIZE}
            )
            for payment in _capped(payments.auto_paging_iter(), what=f"payments of {invoice_id}"):
                intent = _id_of((payment.get("payment") or {}).get("payment_intent"))
                if not intent:
                    continue
                found = self._client.v1.payment_intents.retrieve(intent, params={"expand": ["latest_charge"]})
                charge = found.to_dict().get("latest_charge")
                if isinstance(charge, Mapping):
                    refunded += int(charge.get("amount_refunded") or 0)
        return refunded

    def retrieve_charge(self, charge_id: str) -> GatewayCharge:
        with _translated_errors():
            charge = self._client.v1.charges.retrieve(charge_id).to_dict()
        return charge_from_stripe(charge)

    def retrieve_dispute(self, dispute_id: str) -> GatewayDispute:
        with _translated_errors():
            dispute = self._client.v1.disputes.retrieve(dispute_id).to_dict()
        return dispute_from_stripe(dispute)

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
        # The invoice first, then its item attached to it by id: an invoice that sweeps in the
        # customer's pending items would also collect the prorations a plan change left for the
        # next renewal. The draft does not advance by itself, so a crash before `finalize` leaves
        # an inert draft rather than a stray item that the next renewal would charge.
        with _translated_errors():
            draft = self._client.v1.invoices.create(
                params={
                    "customer": customer_id,
                    "currency": currency,
                    "collection_method": "charge_automatically",
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "description": description,
                    "metadata": metadata,
                },
                options={"idempotency_key": f"{idempotency_key}:invoice"},
            )
            invoice_id = draft.id
            self._client.v1.invoice_items.create(
                params={
                    "customer": customer_id,
                    "invoice": invoice_id,
                    "amount": amount,
                    "currency": currency,
                    "description": description,
                    "metadata": metadata,
                },
                options={"idempotency_key": f"{idempotency_key}:item"},
            )
            # From here Stripe collects by itself (retries per the account's dunning settings) if
            # the immediate payment below fails.
            finalized = self._client.v1.invoices.finalize_invoice(
                invoice_id,
                params={"auto_advance": True},
                options={"idempotency_key": f"{idempotency_key}:finalize"},
            )
            if finalized.status == "paid":
                return self._invoice(finalized.to_dict())  # the customer's balance covered it
            paid = self._client.v1.invoices.pay(
                invoice_id,
                options={"idempotency_key": f"{idempotency_key}:pay"},
            )
        return self._invoice(paid.to_dict())

    # --- webhooks -----------------------------------------------------------------------------------

    def verify_webhook(self, *, payload: bytes, signature_header: str) -> GatewayEvent:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, self._webhook_secret, self._webhook_tolerance
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser goes (signed, so our secret's
            # holder sent it; still a 400, never a 500).
            raise WebhookSignatureError(str(exc) or "The payload is nested too deeply.") from exc
        if not isinstance(event, dict) or event.get("object") != "event":
            raise WebhookSignatureError("The payload is not a Stripe event.")
        return event_from_stripe(event)

    # --- helpers ------------------------------------------------------------------------------------

    def _release_quietly(self, schedule_id: str, *, idempotency_key: str) -> None:
        try:
            self._client.v1.subscription_schedules.release(
                schedule_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            logger.warning("Could not release the half-made schedule %s: %r", schedule_id, exc)

    def _invoice(self, data: dict[str, Any]) -> GatewayInvoice:
        """An invoice with all its lines: an invoice object carries only the first page of them
        (`lines.has_more`); the rest are read through the SDK's auto-pagination.
        https://docs.stripe.com/api/invoices/invoice_lines"""
        lines = data.get("lines") or {}
        if lines.get("has_more"):
            with _translated_errors():
                page = self._client.v1.invoices.line_items.list(data["id"], params={"limit": LIST_PAGE_SIZE})
                every = _capped(page.auto_paging_iter(), what=f"lines of {data['id']}")
            data = {**data, "lines": {**lines, "data": every, "has_more": False}}
        return invoice_from_stripe(data)

    def _retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        with _translated_errors():
            return self._client.v1.subscriptions.retrieve(subscription_id).to_dict()


def _is_our_schedule_for(schedule: Mapping[str, Any], *, price_id: str, switch_at: int) -> bool:
    phases = schedule.get("phases") or []
    return (
        (schedule.get("metadata") or {}).get(SCHEDULE_MARK) == "allowance"
        and schedule.get("status") in ("not_started", "active")
        and len(phases) == 2
        and phases[1].get("start_date") == switch_at
        and _id_of((phases[1].get("items") or [{}])[0].get("price")) == price_id
    )


def _is_leftover(schedule: Mapping[str, Any]) -> bool:
    """Made from the subscription and never updated: the current phase only, no metadata."""
    return len(schedule.get("phases") or []) <= 1 and not schedule.get("metadata")


# --- a schedule's phase, restated ---------------------------------------------------------------------


def phase_params(phase: Mapping[str, Any]) -> SubscriptionScheduleUpdateParamsPhase:
    """A phase object of a subscription schedule as the parameters that state it again unchanged:
    every setting it has (expanded objects as their ids; unset ones left out, since sending them
    empty would clear them). Its proration when it starts is said explicitly: none (restating the
    phase that is running changes nothing; the phase that switches the price says its own)."""
    params: SubscriptionScheduleUpdateParamsPhase = {
        "items": [_phase_item_params(item) for item in phase.get("items") or []],
        "start_date": phase["start_date"],
        "proration_behavior": "none",
    }
    if phase.get("end_date"):
        params["end_date"] = phase["end_date"]
    if phase.get("collection_method"):
        params["collection_method"] = phase["collection_method"]
    if phase.get("currency"):
        params["currency"] = phase["currency"]
    if phase.get("description"):
        params["description"] = phase["description"]
    if phase.get("billing_cycle_anchor"):
        params["billing_cycle_anchor"] = phase["billing_cycle_anchor"]
    if phase.get("application_fee_percent") is not None:
        params["application_fee_percent"] = phase["application_fee_percent"]
    if phase.get("default_payment_method"):
        params["default_payment_method"] = _id_of(phase["default_payment_method"])
    if phase.get("on_behalf_of"):
        params["on_behalf_of"] = _id_of(phase["on_behalf_of"])
    if phase.get("default_tax_rates"):
        params["default_tax_rates"] = [_id_of(rate) for rate in phase["default_tax_rates"]]
    if phase.get("discounts"):
        params["discounts"] = [_discount_params(discount) for discount in phase["discounts"]]
    if phase.get("metadata"):
        params["metadata"] = _metadata(phase["metadata"])
    if phase.get("trial_end"):
        params["trial_end"] = phase["trial_end"]
    automatic_tax = phase.get("automatic_tax")
    if automatic_tax and automatic_tax.get("enabled"):
        params["automatic_tax"] = {"enabled": True}
        if automatic_tax.get("liability"):
            liability = automatic_tax["liability"]
            params["automatic_tax"]["liability"] = (
                {"type": liability["type"], "account": _id_of(liability["account"])}
                if liability.get("account")
                else {"type": liability["type"]}
            )
    settings = phase.get("invoice_settings")
    if settings:
        invoice_settings: SubscriptionScheduleUpdateParamsPhaseInvoiceSettings = {}
        if settings.get("account_tax_ids"):
            invoice_settings["account_tax_ids"] = [_id_of(tax_id) for tax_id in settings["account_tax_ids"]]
        if settings.get("days_until_due") is not None:
            invoice_settings["days_until_due"] = settings["days_until_due"]
        issuer = settings.get("issuer")
        if issuer:
            invoice_settings["issuer"] = (
                {"type": issuer["type"], "account": _id_of(issuer["account"])}
                if issuer.get("account")
                else {"type": issuer["type"]}
            )
        if invoice_settings:
            params["invoice_settings"] = invoice_settings
    thresholds = phase.get("billing_thresholds")
    if thresholds:
        limits: SubscriptionScheduleUpdateParamsPhaseBillingThresholds = {}
        if thresholds.get("amount_gte") is not None:
            limits["amount_gte"] = thresholds["amount_gte"]
        if thresholds.get("reset_billing_cycle_anchor") is not None:
            limits["reset_billing_cycle_anchor"] = thresholds["reset_billing_cycle_anchor"]
        params["billing_thresholds"] = limits
    transfer = phase.get("transfer_data")
    if transfer:
        params["transfer_data"] = {"destination": _id_of(transfer["destination"])}
        if transfer.get("amount_percent") is not None:
            params["transfer_data"]["amount_percent"] = transfer["amount_percent"]
    return params


def _phase_item_params(item: Mapping[str, Any]) -> SubscriptionScheduleUpdateParamsPhaseItem:
    params: SubscriptionScheduleUpdateParamsPhaseItem = {
        "price": _id_of(item["price"]),
        "quantity": item.get("quantity") or 1,
    }
    if item.get("metadata"):
        params["metadata"] = _metadata(item["metadata"])
    if item.get("tax_rates"):
        params["tax_rates"] = [_id_of(rate) for rate in item["tax_rates"]]
    if item.get("discounts"):
        params["discounts"] = [_discount_params(discount) for discount in item["discounts"]]
    return params


def _discount_params(discount: Mapping[str, Any]) -> SubscriptionScheduleUpdateParamsPhaseDiscount:
    """A phase's discount ({coupon | discount | promotion_code}) as a parameter: the one it names."""
    for key in ("discount", "coupon", "promotion_code"):
        if discount.get(key):
            return {key: _id_of(discount[key])}  # type: ignore[misc]
    return {}


# --- Stripe JSON -> boundary dataclasses ---------------------------------------------------------------


def subscription_from_stripe(data: Mapping[str, Any]) -> GatewaySubscription:
    item = _first_item(data)
    # Since API version 2025-03-31 the billing period lives on each item; the subscription-level
    # fields are read only when an older object still carries them.
    period_start = item.get("current_period_start", data.get("current_period_start"))
    period_end = item.get("current_period_end", data.get("current_period_end"))
    return GatewaySubscription(
        id=data["id"],
        customer_id=_id_of(data.get("customer")),
        status=data["status"],
        price_id=_id_of(item.get("price")),
        current_period_start=_datetime(period_start),
        current_period_end=_datetime(period_end),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        cancel_at=_optional_datetime(data.get("cancel_at")),
        canceled_at=_optional_datetime(data.get("canceled_at")),
        ended_at=_optional_datetime(data.get("ended_at")),
        schedule_id=_id_of(data.get("schedule")),
        latest_invoice_id=_id_of(data.get("latest_invoice")),
        metadata=_metadata(data.get("metadata")),
        default_payment_method=_id_of(data.get("default_payment_method")),
        pending_update=_pending_update_from_stripe(data.get("pending_update")),
    )


def _pending_update_from_stripe(data: Mapping[str, Any] | None) -> GatewayPendingUpdate | None:
    """The price a pending update switches to (our subscriptions have one item)."""
    if not data:
        return None
    items = data.get("subscription_items") or []
    return GatewayPendingUpdate(
        price_id=_id_of(items[0].get("price")) if items else "",
        expires_at=_datetime(data["expires_at"]),
    )


def charge_from_stripe(data: Mapping[str, Any]) -> GatewayCharge:
    return GatewayCharge(
        id=data["id"],
        customer_id=_id_of(data.get("customer")),
        amount=data.get("amount") or 0,
        amount_refunded=data.get("amount_refunded") or 0,
        currency=data.get("currency") or "",
    )


def dispute_from_stripe(data: Mapping[str, Any]) -> GatewayDispute:
    return GatewayDispute(
        id=data["id"],
        charge_id=_id_of(data.get("charge")),
        amount=data.get("amount") or 0,
        currency=data.get("currency") or "",
        reason=data.get("reason") or "",
        status=data.get("status") or "",
    )


def credit_note_from_stripe(data: Mapping[str, Any]) -> GatewayCreditNote:
    """A credit note, with what of it went to the customer's balance: the balance transaction's
    amount when it is expanded (negative: a credit), else what the post-payment amount leaves once
    refunds and out-of-band credit are taken out; 0 for a voided note.
    https://docs.stripe.com/api/credit_notes/object"""
    balance = data.get("customer_balance_transaction")
    if data.get("status") == "void" or not balance:
        credited = 0
    elif isinstance(balance, Mapping):
        credited = max(-int(balance.get("amount") or 0), 0)
    else:
        refunded = sum(int(refund.get("amount_refunded") or 0) for refund in data.get("refunds") or [])
        credited = max(
            int(data.get("post_payment_amount") or 0) - int(data.get("out_of_band_amount") or 0) - refunded, 0
        )
    return GatewayCreditNote(
        id=data["id"],
        invoice_id=_id_of(data.get("invoice")),
        amount=int(data.get("total") or data.get("amount") or 0),
        credited_to_balance=credited,
        currency=data.get("currency") or "",
    )


def customer_from_stripe(data: Mapping[str, Any]) -> GatewayCustomer:
    if data.get("deleted"):
        return GatewayCustomer(id=data["id"], deleted=True)
    settings = data.get("invoice_settings") or {}
    return GatewayCustomer(
        id=data["id"],
        email=data.get("email") or "",
        default_payment_method=_id_of(settings.get("default_payment_method")),
    )


def invoice_from_stripe(data: Mapping[str, Any]) -> GatewayInvoice:
    lines = (data.get("lines") or {}).get("data") or []
    transitions = data.get("status_transitions") or {}
    return GatewayInvoice(
        id=data["id"],
        customer_id=_id_of(data.get("customer")),
        subscription_id=_invoice_subscription_id(data),
        number=data.get("number") or "",
        status=data.get("status") or "",
        currency=data.get("currency") or "",
        subtotal=data.get("subtotal") or 0,
        tax=_invoice_tax(data),
        total=data.get("total") or 0,
        amount_due=data.get("amount_due") or 0,
        amount_paid=data.get("amount_paid") or 0,
        amount_remaining=data.get("amount_remaining") or 0,
        created=_datetime(data["created"]),
        period_start=_optional_datetime(data.get("period_start")),
        period_end=_optional_datetime(data.get("period_end")),
        paid_at=_optional_datetime(transitions.get("paid_at")),
        hosted_invoice_url=data.get("hosted_invoice_url") or "",
        invoice_pdf=data.get("invoice_pdf") or "",
        billing_reason=data.get("billing_reason") or "",
        attempt_count=data.get("attempt_count") or 0,
        lines=tuple(_invoice_line_from_stripe(line) for line in lines),
        metadata=_metadata(data.get("metadata")),
        # https://docs.stripe.com/api/invoices/object#invoice_object-post_payment_credit_notes_amount
        credited=(data.get("pre_payment_credit_notes_amount") or 0)
        + (data.get("post_payment_credit_notes_amount") or 0),
        # https://docs.stripe.com/api/invoices/object#invoice_object-starting_balance (ending_balance
        # is null until the invoice is finalized)
        starting_balance=data.get("starting_balance") or 0,
        ending_balance=data.get("ending_balance") or 0,
    )


def invoice_preview_from_stripe(data: Mapping[str, Any]) -> GatewayInvoicePreview:
    """A preview invoice: what it would charge now (`amount_due`, never below 0) and its total (below
    0 when the change leaves a credit on the customer's balance)."""
    lines = (data.get("lines") or {}).get("data") or []
    return GatewayInvoicePreview(
        currency=data.get("currency") or "",
        amount_due=data.get("amount_due") or 0,
        total=data.get("total") or 0,
        lines=tuple(_invoice_line_from_stripe(line) for line in lines),
    )


def checkout_session_from_stripe(data: Mapping[str, Any]) -> GatewayCheckoutSession:
    return GatewayCheckoutSession(
        id=data["id"],
        url=data.get("url") or "",  # null once the session is complete or expired
        status=data.get("status") or "",
        customer_id=_id_of(data.get("customer")),
        subscription_id=_id_of(data.get("subscription")),
        client_reference_id=data.get("client_reference_id") or "",
        metadata=_metadata(data.get("metadata")),
    )


def schedule_from_stripe(data: Mapping[str, Any]) -> GatewaySchedule:
    return GatewaySchedule(
        id=data["id"],
        # A released schedule no longer points at its subscription, only `released_subscription` does.
        subscription_id=_id_of(data.get("subscription") or data.get("released_subscription")),
        status=data["status"],
    )


# The longest values our event log stores; Stripe's ids and types are far shorter.
EVENT_ID_MAX, EVENT_TYPE_MAX, OBJECT_TYPE_MAX, OBJECT_ID_MAX = 100, 80, 60, 100
_LAST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


def event_from_stripe(data: Mapping[str, Any]) -> GatewayEvent:
    """The event's envelope, checked: a signed body without a usable id, type, creation time or
    object is refused (WebhookRejected, answered 400), never stored half-read."""

    def text(value: object, what: str, longest: int, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value) or len(value) > longest:
            raise WebhookRejected(
                f"The event's {what} is missing or not a string of at most {longest} characters."
            )
        return value

    event_data = data.get("data")
    obj = event_data.get("object") if isinstance(event_data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise WebhookRejected("The event has no data.object.")
    created = data.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created <= _LAST_TIMESTAMP:
        raise WebhookRejected("The event's created is not a Unix timestamp.")
    livemode = data.get("livemode", False)
    if not isinstance(livemode, bool):
        raise WebhookRejected("The event's livemode is not true or false.")
    return GatewayEvent(
        id=text(data.get("id"), "id", EVENT_ID_MAX),
        type=text(data.get("type"), "type", EVENT_TYPE_MAX),
        created=_datetime(created),
        object_type=text(obj.get("object"), "object type", OBJECT_TYPE_MAX, required=False),
        object_id=text(obj.get("id"), "object id", OBJECT_ID_MAX, required=False),
        data=dict(obj),
        livemode=livemode,
    )


def _invoice_line_from_stripe(data: Mapping[str, Any]) -> GatewayInvoiceLine:
    period = data.get("period") or {}
    return GatewayInvoiceLine(
        description=data.get("description") or "",
        amount=data.get("amount") or 0,
        quantity=data.get("quantity") or 1,
        period_start=_optional_datetime(period.get("start")),
        period_end=_optional_datetime(period.get("end")),
    )


def _invoice_subscription_id(data: Mapping[str, Any]) -> str:
    details = (data.get("parent") or {}).get("subscription_details") or {}
    if details.get("subscription"):
        return _id_of(details["subscription"])
    return _id_of(data.get("subscription"))  # API versions before 2025-03-31


def _invoice_tax(data: Mapping[str, Any]) -> int:
    """Minor units of tax on the invoice: the sum of `total_taxes` (the legacy `tax` field before it)."""
    taxes = data.get("total_taxes")
    if taxes:
        return sum(tax.get("amount") or 0 for tax in taxes)
    return data.get("tax") or 0


def _first_item(subscription: Mapping[str, Any]) -> Mapping[str, Any]:
    """Our subscriptions have one item: the plan's price (checkout sells quantity 1 of one price)."""
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        raise GatewayError(MSG_REFUSED, code="subscription_without_items")
    first: Mapping[str, Any] = items[0]
    return first


def _id_of(value: Any) -> str:
    """The id of a field Stripe sends either as an id or, when expanded, as the object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value.get("id") or "")


def _metadata(value: Any) -> dict[str, str]:
    return {str(key): str(val) for key, val in (value or {}).items()}


def _datetime(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)  # Stripe's times are unix seconds


def _optional_datetime(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else _datetime(timestamp)


def _unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        # A naive datetime would be read in the server's local zone: refuse rather than guess.
        raise ValueError(f"an aware datetime is needed, got {moment!r}")
    return int(moment.timestamp())


def _capped(objects: Iterator[Any], *, what: str) -> list[dict[str, Any]]:
    found = [obj.to_dict() for obj in itertools.islice(objects, LIST_CAP + 1)]
    if len(found) > LIST_CAP:
        logger.warning("Stopped reading %s at %d", what, LIST_CAP)
        del found[LIST_CAP:]
    return found


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except stripe.CardError as exc:
        # Card errors carry messages Stripe writes for the cardholder ("Your card has insufficient funds.").
        # Paying an invoice whose payment needs 3D Secure is refused with
        # invoice_payment_intent_requires_action (Stripe's error codes); it is the same case as
        # authentication_required: the customer confirms on the invoice's page.
        code = exc.code or "card_declined"
        if code == "invoice_payment_intent_requires_action":
            code = "authentication_required"
        raise GatewayError(exc.user_message or MSG_DECLINED, code=code) from exc
    except _TRANSIENT_ERRORS as exc:
        logger.warning("Stripe unavailable: %r", exc)
        raise GatewayError(MSG_UNREACHABLE, code=exc.code or "gateway_unavailable") from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe refused a request: %r", exc)
        raise GatewayError(MSG_REFUSED, code=exc.code or "gateway_refused") from exc

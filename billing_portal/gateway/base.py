"""The payment gateway boundary: one interface, two implementations (Stripe, and a local stand-in
for development, the demo and tests).

This package is a leaf: it imports nothing of ours, so any page that takes money may call it.
Everything crossing the boundary is a plain dataclass of primitives; amounts are integer minor
units, times are aware UTC datetimes. Every create carries an idempotency key derived from one of
our row ids, so a retried call creates nothing twice."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple


class CatalogPrice(NamedTuple):
    """What a price id costs, as the plan catalog knows it: what the local stand-in charges and how
    it names the price's product (Stripe: price → product → name, the words on invoice lines)."""

    amount: int  # minor units per interval
    currency: str
    interval: str  # month, year
    product_name: str = ""


class GatewayError(Exception):
    """The gateway refused or failed; `message` is safe to show to the user."""

    def __init__(self, message: str, *, code: str = "gateway_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# How an update that invoices now treats a payment that does not go through (Stripe's
# `payment_behavior`, https://docs.stripe.com/billing/subscriptions/pending-updates):
# allow_incomplete applies the update anyway (Stripe's default: the subscription goes past due);
# pending_if_incomplete keeps it pending until the invoice is paid (at most 23 hours);
# error_if_incomplete refuses it.
PaymentBehavior = Literal["allow_incomplete", "pending_if_incomplete", "error_if_incomplete"]

# Why a credit note is issued (Stripe's `reason`, https://docs.stripe.com/api/credit_notes/create).
CreditNoteReason = Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]


@dataclass(frozen=True)
class GatewayPendingUpdate:
    """An update waiting for its invoice to be paid (Stripe's `pending_update`)."""

    price_id: str
    expires_at: datetime


@dataclass(frozen=True)
class GatewaySubscription:
    id: str
    customer_id: str
    # Stripe's statuses: incomplete, incomplete_expired, trialing, active, past_due, canceled, unpaid, paused
    status: str
    price_id: str
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool = False
    cancel_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    schedule_id: str = ""
    latest_invoice_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    default_payment_method: str = ""  # the subscription's own card, which wins over the customer's
    pending_update: GatewayPendingUpdate | None = None


@dataclass(frozen=True)
class PortalSettings:
    """What the hosted customer portal lets a customer do (Stripe's portal configuration features).
    https://docs.stripe.com/api/customer_portal/configurations/create"""

    payment_methods: bool = True  # add and update cards (what "Fix a failed payment" needs)
    invoice_history: bool = True  # see and pay invoices
    cancel_at_period_end: bool = True  # cancel, effective at the end of the period
    plan_switching: bool = False  # plan changes go through Allowance's own dialog
    pause: bool = False
    headline: str = ""


@dataclass(frozen=True)
class GatewayCustomer:
    id: str
    email: str = ""
    # The card that pays the customer's invoices when a subscription has none of its own.
    default_payment_method: str = ""
    deleted: bool = False


@dataclass(frozen=True)
class GatewayInvoiceLine:
    description: str
    amount: int  # minor units
    quantity: int = 1
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass(frozen=True)
class GatewayInvoice:
    id: str
    customer_id: str
    subscription_id: str
    number: str
    # draft, open, paid, uncollectible, void
    status: str
    currency: str
    subtotal: int  # minor units
    tax: int
    total: int
    amount_due: int
    amount_paid: int
    amount_remaining: int
    created: datetime
    period_start: datetime | None
    period_end: datetime | None
    paid_at: datetime | None
    hosted_invoice_url: str
    invoice_pdf: str
    billing_reason: str = ""
    attempt_count: int = 0
    lines: tuple[GatewayInvoiceLine, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    credited: int = 0  # minor units of credit notes issued against it (before and after payment)
    # The customer's invoice balance before and after this invoice was finalized (minor units;
    # negative: a credit the customer has). https://docs.stripe.com/billing/customer/balance
    starting_balance: int = 0
    ending_balance: int = 0

    @property
    def balance_applied(self) -> int:
        """Minor units of the customer's credit balance that paid this invoice at finalization: what
        a refund of its charges cannot return (a refund returns only what a charge collected).
        https://docs.stripe.com/billing/customer/balance"""
        return max(self.ending_balance - self.starting_balance, 0) if self.starting_balance < 0 else 0


@dataclass(frozen=True)
class GatewayCreditNote:
    """A credit note issued against a paid invoice (Stripe's post-payment credit note)."""

    id: str
    invoice_id: str
    amount: int  # minor units, the note's total
    credited_to_balance: int  # minor units of it credited to the customer's balance (credit_amount)
    currency: str


@dataclass(frozen=True)
class GatewayCharge:
    id: str
    customer_id: str
    amount: int  # minor units
    amount_refunded: int  # minor units
    currency: str


@dataclass(frozen=True)
class GatewayDispute:
    id: str
    charge_id: str
    amount: int  # minor units
    currency: str
    reason: str  # Stripe's: fraudulent, product_not_received, duplicate, …
    status: str


@dataclass(frozen=True)
class GatewayInvoicePreview:
    """The invoice a change would create now (Stripe's preview invoice): not an invoice yet."""

    currency: str
    amount_due: int  # minor units charged now; 0 when the change leaves a credit
    total: int  # minor units; negative: a credit the customer keeps for the next invoices
    lines: tuple[GatewayInvoiceLine, ...] = ()

    @property
    def credit(self) -> int:
        """Minor units left to the customer's balance for the next invoices (0 when something is due)."""
        return max(-self.total, 0)

    @property
    def balance_applied(self) -> int:
        """Minor units of the total that the customer's credit balance pays (Stripe's amount_due is
        the total less the balance applied: docs.stripe.com/billing/customer/balance)."""
        return max(min(self.total, self.total - self.amount_due), 0)


@dataclass(frozen=True)
class GatewayCheckoutSession:
    id: str
    url: str
    status: str  # open, complete, expired
    customer_id: str = ""
    subscription_id: str = ""
    client_reference_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewaySchedule:
    id: str
    subscription_id: str
    status: str  # not_started, active, completed, released, canceled


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook event: only what the handlers need; the object is re-read from the source."""

    id: str
    type: str
    created: datetime
    object_type: str
    object_id: str
    data: dict[str, Any]
    livemode: bool = False  # from Stripe's live mode (true) or its test mode (false)


class PaymentGateway(abc.ABC):
    """What Allowance asks of a payment rail."""

    name: str
    # Whether this gateway acts on real money: its events must say the same (an endpoint registered
    # in the other mode, or a test key on a live deployment, is refused).
    livemode: bool = False

    @abc.abstractmethod
    def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        """A customer for a tenant; returns its id."""

    @abc.abstractmethod
    def retrieve_customer(self, customer_id: str) -> GatewayCustomer:
        """The customer as it is now (a deleted one is returned with `deleted`)."""

    @abc.abstractmethod
    def adopt_subscription_card(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        """Make the card saved on the subscription (Checkout saves it there) the customer's default for
        invoices, and clear the subscription's own, so that the card the customer keeps up to date
        in the portal is the one that pays. A subscription without its own card is returned as is."""

    @abc.abstractmethod
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
        """A hosted checkout page for a new subscription to `price_id`."""

    @abc.abstractmethod
    def retrieve_checkout_session(self, session_id: str) -> GatewayCheckoutSession: ...

    @abc.abstractmethod
    def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> GatewayCheckoutSession:
        """Close an open checkout session: nobody can pay it any more. One that is no longer open is
        a GatewayError (code `checkout_session_not_open`)."""

    @abc.abstractmethod
    def create_portal_session(self, *, customer_id: str, return_url: str, configuration_id: str = "") -> str:
        """The hosted customer portal (payment methods, invoices, cancel), as `configuration_id`
        configures it (the account's default configuration when empty); returns its URL."""

    @abc.abstractmethod
    def configure_portal(
        self, *, settings: PortalSettings, marker: dict[str, str], idempotency_key: str
    ) -> str:
        """Create the portal configuration, or update the one whose metadata holds `marker`; returns
        its id."""

    @abc.abstractmethod
    def create_subscription(
        self, *, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> GatewaySubscription:
        """A subscription to `price_id` whose first invoice is paid now with the customer's saved card
        (`invoice_settings.default_payment_method`), without a hosted page. Paid: returned active.
        Declined (or no card): GatewayError (`card_declined`, …) and the subscription it left
        incomplete is canceled at once, so nothing runs and nothing is owed. The bank asks the
        customer to confirm (3D Secure): returned `incomplete`; its latest invoice's hosted page
        confirms the payment, after which it turns active (its events say so)."""

    @abc.abstractmethod
    def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription: ...

    @abc.abstractmethod
    def list_subscriptions(self, *, customer_id: str) -> list[GatewaySubscription]: ...

    @abc.abstractmethod
    def change_subscription_price(
        self,
        *,
        subscription_id: str,
        price_id: str,
        idempotency_key: str,
        payment_behavior: PaymentBehavior = "allow_incomplete",
    ) -> GatewaySubscription:
        """Switch the subscription to `price_id` now, prorating and invoicing the difference at
        once; `payment_behavior` says what happens when that invoice is not paid."""

    @abc.abstractmethod
    def preview_price_change(
        self, *, subscription_id: str, price_id: str, at: datetime | None = None
    ) -> GatewayInvoicePreview:
        """What switching to `price_id` now would invoice at once (the prorations of an immediate
        change, as `change_subscription_price` makes them); with `at`, what the switch a schedule
        makes at `at` would invoice then (`at` within the current period: past it the gateway
        refuses, as Stripe's proration date does). Changes nothing."""

    @abc.abstractmethod
    def schedule_subscription_change(
        self, *, subscription_id: str, price_id: str, at: datetime, idempotency_key: str
    ) -> GatewaySchedule:
        """Keep the current price until `at`, then switch to `price_id` (a subscription schedule),
        prorated and invoiced at the switch as an immediate change is at its moment: the time from
        `at` to the end of the period it falls in (nothing when `at` is a period's end)."""

    @abc.abstractmethod
    def retrieve_schedule(self, schedule_id: str) -> GatewaySchedule:
        """The subscription schedule as it is now (webhook handlers re-read it, never trust the body)."""

    @abc.abstractmethod
    def release_schedule(self, schedule_id: str, *, idempotency_key: str) -> None:
        """Undo a scheduled change: the subscription stays on its current price."""

    @abc.abstractmethod
    def cancel_subscription(
        self, *, subscription_id: str, at_period_end: bool, idempotency_key: str
    ) -> GatewaySubscription: ...

    @abc.abstractmethod
    def resume_subscription(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        """Undo a cancellation at period end: the subscription renews again. A subscription that is
        not canceled is returned as it is; one that has ended cannot be resumed (GatewayError)."""

    @abc.abstractmethod
    def retrieve_invoice(self, invoice_id: str) -> GatewayInvoice: ...

    @abc.abstractmethod
    def list_invoices(
        self, *, customer_id: str, created_since: datetime | None = None
    ) -> list[GatewayInvoice]: ...

    @abc.abstractmethod
    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        """Attempt an open invoice now, on the card the gateway would charge. A decline, or a payment
        that needs the customer's confirmation, is a GatewayError."""

    @abc.abstractmethod
    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        """Void a finalized invoice that is `open` (or `uncollectible`): it can no longer be paid and
        its automatic collection stops, so a declined payment is never collected later. A `paid`,
        `void` or draft invoice is refused (GatewayError `status_transition_invalid`); a repeat of the
        key answers as the first request did.
        https://docs.stripe.com/api/invoices/void,
        https://docs.stripe.com/invoicing/integration/workflow-transitions"""

    @abc.abstractmethod
    def refund_invoice(self, invoice_id: str, *, idempotency_key: str) -> int:
        """Refund every payment of a paid invoice in full; returns the minor units refunded now."""

    @abc.abstractmethod
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
        """Issue a credit note against a paid invoice whose whole `amount` (minor units) goes to the
        customer's credit balance, which the next finalized invoices apply (Stripe's credit_amount):
        how what the balance paid of an invoice is given back, since a refund returns only what a
        charge collected. Refused (GatewayError) when the invoice is not paid or has less than
        `amount` left to credit. https://docs.stripe.com/api/credit_notes/create"""

    @abc.abstractmethod
    def invoice_credited_to_balance(self, invoice_id: str) -> int:
        """Minor units the invoice's credit notes (voided ones aside) have credited to the customer's
        balance so far."""

    @abc.abstractmethod
    def invoice_of_charge(self, charge_id: str) -> str:
        """The id of the invoice a charge paid, or "" when it paid none."""

    @abc.abstractmethod
    def invoice_refunded(self, invoice_id: str) -> int:
        """Minor units refunded so far of what the invoice's payments collected."""

    @abc.abstractmethod
    def retrieve_charge(self, charge_id: str) -> GatewayCharge: ...

    @abc.abstractmethod
    def retrieve_dispute(self, dispute_id: str) -> GatewayDispute: ...

    @abc.abstractmethod
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
        """Invoice and collect a one-off amount now (extra credit packs)."""

    @abc.abstractmethod
    def verify_webhook(self, *, payload: bytes, signature_header: str) -> GatewayEvent:
        """Check the signature and timestamp tolerance; raise WebhookSignatureError otherwise."""


class WebhookRejected(Exception):
    """A webhook delivery we refuse (400): a bad signature, or a body that is not a usable event."""


class WebhookSignatureError(WebhookRejected):
    pass

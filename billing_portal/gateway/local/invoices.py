"""Invoices and payment: invoices numbered from the customer's sequence and collected on the card
Stripe would charge; failed payments retried on the account's schedule; cards; one-off charges.

Which card pays: the invoice's subscription's `default_payment_method`, else the customer's
`invoice_settings.default_payment_method` ("If neither are set, invoices will use the customer's
invoice_settings.default_payment_method" — https://docs.stripe.com/api/subscriptions/object#subscription_object-default_payment_method).
A card behaves as Stripe's test cards do (https://docs.stripe.com/testing): it pays, it declines,
or it requires the customer's confirmation (3D Secure) for every payment.

A failed payment is tried again on the account's retry schedule (days after the previous
attempt), not at once; a new default card does not pay anything by itself; when the last retry
fails the subscription is canceled, marked unpaid or left past due, as the account's setting says
(https://docs.stripe.com/billing/revenue-recovery/smart-retries). A payment that needs the
customer's confirmation is not retried: the customer confirms it on the hosted invoice page
(`invoice.payment_action_required`, https://docs.stripe.com/billing/subscriptions/overview#requires-action)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.db import transaction

from billing_portal.gateway.base import (
    CreditNoteReason,
    GatewayCharge,
    GatewayCreditNote,
    GatewayDispute,
    GatewayError,
    GatewayInvoice,
)
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.core import WhenRetriesExhausted
from billing_portal.gateway.local.events import LocalEvents
from billing_portal.gateway.local.money import cycle_description
from billing_portal.gateway.local.objects import ENDED, OVERDUE
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import (  # the words Stripe gives a decline
    MSG_DECLINED,
    charge_from_stripe,
    credit_note_from_stripe,
    dispute_from_stripe,
    invoice_from_stripe,
)

# How long an update waits for its invoice to be paid (at most: never past the period's end).
# https://docs.stripe.com/billing/subscriptions/pending-updates-reference#expiration
PENDING_UPDATE_LIFETIME = timedelta(hours=23)
MSG_CONFIRM = "Your bank asks you to confirm this payment."


class Card(StrEnum):
    """What a charge on a card does (the stand-in's test cards)."""

    PAYS = "pays"  # 4242 4242 4242 4242
    DECLINES = "declines"  # 4000 0000 0000 0002
    REQUIRES_ACTION = "requires_action"  # 4000 0027 6000 3184: 3D Secure on every payment


class Collected(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    ACTION_REQUIRED = "action_required"
    NOT_ATTEMPTED = "not_attempted"


def card_behaviour(card: Mapping[str, Any] | None) -> Card | None:
    if card is None:
        return None
    return Card((card.get("metadata") or {}).get("local_card_behaviour") or Card.PAYS)


def apply_price(
    sub: dict[str, Any], new_price: Mapping[str, Any], *, restart: tuple[datetime, datetime] | None
) -> None:
    """Switch the subscription's item to `new_price`; a different interval restarts the cycle now,
    as at Stripe."""
    sub_item = objects.item(sub)
    if restart is not None:
        sub["billing_cycle_anchor"] = objects.ts(restart[0])
        sub_item["current_period_start"], sub_item["current_period_end"] = (
            objects.ts(day) for day in restart
        )
    sub_item["price"] = dict(new_price)
    sub_item["plan"] = objects.plan_of(new_price)
    sub["currency"] = new_price["currency"]


def subscription_of(invoice: Mapping[str, Any]) -> str:
    return str(((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription") or "")


class LocalInvoices(LocalEvents):
    # --- the API ------------------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> GatewayInvoice:
        return invoice_from_stripe(objects.read(invoice_id, "invoice"))

    def list_invoices(
        self, *, customer_id: str, created_since: datetime | None = None
    ) -> list[GatewayInvoice]:
        rows = LocalGatewayObject.objects.filter(object_type="invoice", customer_id=customer_id).order_by(
            "-id"
        )
        since = None if created_since is None else objects.ts(created_since)
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
        answer = self._once(
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
            object_type="invoice",
        )
        # As the Stripe gateway does when `pay` is refused: the open invoice stays (and its events go
        # out), the caller gets the card's refusal.
        return self._paid_or_raise(answer)

    def _charge_one_off(
        self, *, customer_id: str, amount: int, currency: str, description: str, metadata: dict[str, str]
    ) -> str:
        if amount <= 0:
            raise GatewayError("The amount must be positive.", code="parameter_invalid_integer")
        customer_row = objects.lock(customer_id, "customer")
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

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        """Stripe's `POST /v1/invoices/{id}/pay`: attempt the open invoice now, on the card Stripe
        would charge. A decline or a needed confirmation is an error (the attempt is recorded)."""
        return self._paid_or_raise(
            self._once(
                idempotency_key,
                "pay_invoice",
                {"invoice_id": invoice_id},
                lambda: self._pay_invoice(invoice_id),
                object_type="invoice",
            )
        )

    def _pay_invoice(self, invoice_id: str) -> str:
        customer_row, row = self._lock_with_customer(invoice_id, "invoice")
        if row.data["status"] == "paid":
            raise GatewayError("Invoice is already paid.", code="invoice_already_paid")
        if row.data["status"] != "open":
            raise GatewayError(
                f"You cannot pay an invoice in the `{row.data['status']}` status.", code="invoice_not_open"
            )
        self._attempt(customer_row, row, now=self._now(), scheduled=False)
        return invoice_id

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> GatewayInvoice:
        """Stripe's `POST /v1/invoices/{id}/void`: an open or uncollectible invoice becomes void
        (`invoice.voided`); it is no longer retried nor payable on its hosted page. Any other status
        is refused, as Stripe refuses an invalid status transition; the key replays its answer.
        https://docs.stripe.com/invoicing/integration/workflow-transitions"""
        return invoice_from_stripe(
            self._once(
                idempotency_key,
                "void_invoice",
                {"invoice_id": invoice_id},
                lambda: self._void_invoice(invoice_id),
                object_type="invoice",
            )
        )

    def _void_invoice(self, invoice_id: str) -> str:
        _customer_row, row = self._lock_with_customer(invoice_id, "invoice")
        status = row.data["status"]
        if status not in ("open", "uncollectible"):
            raise GatewayError(
                f"You can only void an open or uncollectible invoice; this one is `{status}`.",
                code="status_transition_invalid",
            )
        now = self._now()
        objects.mark_void(row.data, now)
        row.save()
        self._emit("invoice.voided", row.data, now=now)
        return invoice_id

    def pay_open_invoices(self, customer_id: str) -> list[GatewayInvoice]:
        """The customer pays everything open on the hosted invoice page, with a card entered there
        (not saved): overdue subscriptions with nothing left open recover."""
        with transaction.atomic():
            customer_row = objects.lock(customer_id, "customer")
            return [invoice_from_stripe(inv) for inv in self._pay_open(customer_row, now=self._now())]

    def pay_on_hosted_page(self, invoice_id: str) -> GatewayInvoice:
        """The customer pays one open invoice on its hosted page, with a card entered there."""
        with transaction.atomic():
            customer_row, row = self._lock_with_customer(invoice_id, "invoice")
            if row.data["status"] == "open":
                now = self._now()
                row.data.update(attempt_count=row.data["attempt_count"] + 1, attempted=True)
                self._record_attempt(row.data, Collected.PAID, card=None)
                self._record_payment(row.data, card=None, now=now)
                objects.mark_paid(row.data, now)
                row.save()
                self._emit("invoice.paid", row.data, now=now)
                self._after_paid(customer_row, row.data, now=now, sub_row=None)
            return invoice_from_stripe(row.data)

    def payment_needs_confirmation(self, invoice_id: str) -> bool:
        """Whether the invoice's last payment attempt is waiting for the customer's confirmation."""
        last = self._last_attempt(invoice_id)
        return last is not None and last["outcome"] == Collected.ACTION_REQUIRED

    def confirm_payment(self, invoice_id: str) -> GatewayInvoice:
        """The customer confirms (3D Secure) a payment that asked for it, on the hosted invoice page:
        the invoice is paid with the card that asked."""
        with transaction.atomic():
            customer_row, row = self._lock_with_customer(invoice_id, "invoice")
            if row.data["status"] != "open":
                return invoice_from_stripe(row.data)
            now = self._now()
            card = self._paying_card(customer_row, row.data)
            self._record_attempt(row.data, Collected.PAID, card=card)
            self._record_payment(row.data, card=card, now=now)
            objects.mark_paid(row.data, now)
            row.save()
            self._emit("invoice.paid", row.data, now=now)
            self._after_paid(customer_row, row.data, now=now, sub_row=None)
            return invoice_from_stripe(row.data)

    # --- invoices and their collection ---------------------------------------------------------------

    def _cycle_invoice(
        self,
        customer_row: LocalGatewayObject,
        *,
        sub: Mapping[str, Any],
        price: Mapping[str, Any],
        start: datetime,
        end: datetime,
        now: datetime,
        billing_reason: str,
        period: tuple[datetime, datetime],
        invoice_id: str | None = None,
    ) -> dict[str, Any]:
        """A subscription's invoice for one whole period [start, end) of its price (a first
        invoice, subscription_create, or a renewal, subscription_cycle)."""
        return self._new_invoice(
            customer_row,
            now=now,
            currency=price["currency"],
            billing_reason=billing_reason,
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
            period=period,
            invoice_id=invoice_id,
        )

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
        invoice_id = invoice_id or objects.new_id("in")
        sequence = int(customer.get("next_invoice_sequence") or 1)
        customer["next_invoice_sequence"] = sequence + 1
        customer_row.save()
        lines = [
            objects.invoice_line(spec, invoice_id=invoice_id, currency=currency, sub=subscription)
            for spec in lines_spec
        ]
        invoice = objects.invoice(
            invoice_id,
            customer=customer,
            number=f"{customer['invoice_prefix']}-{sequence:04d}",
            currency=currency,
            billing_reason=billing_reason,
            sub=subscription,
            lines=lines,
            period=period,
            description=description,
            metadata=metadata,
            now=now,
        )
        # Every finalized invoice has Stripe's hosted page; the stand-in's is ours, under /dev/billing/.
        invoice["hosted_invoice_url"] = f"{self._base_url}/dev/billing/invoices/{invoice_id}/"
        self._apply_customer_balance(customer_row, invoice, now=now)
        return invoice

    @classmethod
    def _apply_customer_balance(
        cls, customer_row: LocalGatewayObject, invoice: dict[str, Any], *, now: datetime
    ) -> None:
        """Stripe applies the customer's invoice balance when an invoice is finalized: a credit
        (negative balance) lowers amount_due, a debit raises it; an invoice whose total is negative
        (a downgrade's prorations) owes nothing and its total is credited to the balance for the next
        invoices. `starting_balance` and `ending_balance` record it, and each change is a customer
        balance transaction (type applied_to_invoice) in the balance's append-only ledger.
        https://docs.stripe.com/billing/customer/balance
        https://docs.stripe.com/api/customer_balance_transactions/object"""
        customer = customer_row.data
        starting = int(customer.get("balance") or 0)
        net = int(invoice["total"]) + starting
        ending = min(net, 0)
        invoice.update(
            starting_balance=starting,
            ending_balance=ending,
            amount_due=max(net, 0),
            amount_remaining=max(net, 0),
        )
        if ending == starting:
            return
        cls._balance_transaction(
            customer_row,
            amount=ending - starting,
            kind="applied_to_invoice",
            currency=invoice["currency"],
            now=now,
            invoice=invoice["id"],
        )

    @staticmethod
    def _balance_transaction(
        customer_row: LocalGatewayObject,
        *,
        amount: int,
        kind: str,
        currency: str,
        now: datetime,
        invoice: str | None = None,
        credit_note: str | None = None,
    ) -> dict[str, Any]:
        """Move the customer's invoice balance by `amount` (minor units; negative: a credit the
        customer has, which the next finalized invoices use) and append the customer balance
        transaction that records it, with the balance it leaves. The caller holds the customer's row
        lock. https://docs.stripe.com/api/customer_balance_transactions/object"""
        customer = customer_row.data
        ending = int(customer.get("balance") or 0) + amount
        customer["balance"] = ending
        customer_row.save()
        transaction_ = objects.shape(
            "customer_balance_transaction",
            id=objects.new_id("cbtxn"),
            amount=amount,
            created=objects.ts(now),
            credit_note=credit_note,
            currency=currency,
            customer=customer_row.object_id,
            ending_balance=ending,
            invoice=invoice,
            type=kind,
        )
        objects.insert("customer_balance_transaction", transaction_, customer_id=customer_row.object_id)
        return transaction_

    def _finalize_and_collect(
        self,
        customer_row: LocalGatewayObject,
        invoice: dict[str, Any],
        *,
        now: datetime,
        sub_row: LocalGatewayObject | None = None,
        attempt: bool = True,
        confirmed: bool = False,
        scheduled: bool = True,
        announce: bool = True,
    ) -> Collected:
        """Store the open invoice, emit invoice.finalized, and attempt it (unless `attempt` is off:
        an unpaid subscription's invoices are created but not attempted). A caller that holds the
        invoice's subscription row passes it (`sub_row`): its status is then changed in place, and
        the caller saves it and emits its event."""
        row = objects.insert("invoice", invoice, customer_id=customer_row.object_id)
        self._emit("invoice.finalized", invoice, now=now)
        if not attempt:
            return Collected.NOT_ATTEMPTED
        return self._attempt(
            customer_row,
            row,
            now=now,
            scheduled=scheduled,
            sub_row=sub_row,
            confirmed=confirmed,
            announce=announce,
        )

    def _attempt(
        self,
        customer_row: LocalGatewayObject,
        row: LocalGatewayObject,
        *,
        now: datetime,
        scheduled: bool,
        sub_row: LocalGatewayObject | None = None,
        confirmed: bool = False,
        announce: bool = True,
    ) -> Collected:
        """One payment attempt of an open invoice on the card Stripe would charge: invoice.paid;
        invoice.payment_action_required (no retry: the customer confirms); or invoice.payment_failed,
        the next attempt on the retry schedule (for an automatic attempt), and the account's setting
        applied to the subscription when none is left."""
        invoice = row.data
        if int(invoice["amount_due"]) == 0:
            # Nothing to collect (the customer's credit covers it, or its total is a credit): Stripe
            # marks it paid without a payment. https://docs.stripe.com/billing/customer/balance
            objects.mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            self._after_paid(customer_row, invoice, now=now, sub_row=sub_row, announce=announce)
            return Collected.PAID
        card = self._paying_card(customer_row, invoice)
        behaviour = card_behaviour(card)
        if confirmed and behaviour == Card.REQUIRES_ACTION:
            behaviour = Card.PAYS  # the customer confirmed this payment on the page
        invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
        if behaviour == Card.PAYS:
            self._record_attempt(invoice, Collected.PAID, card=card)
            self._record_payment(invoice, card=card, now=now)
            objects.mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            self._after_paid(customer_row, invoice, now=now, sub_row=sub_row, announce=announce)
            return Collected.PAID
        if behaviour == Card.REQUIRES_ACTION:
            self._record_attempt(invoice, Collected.ACTION_REQUIRED, card=card)
            invoice["next_payment_attempt"] = None
            row.save()
            self._emit("invoice.payment_action_required", invoice, now=now)
            return Collected.ACTION_REQUIRED
        self._record_attempt(invoice, Collected.FAILED, card=card)
        if scheduled:
            retries_done = invoice["attempt_count"] - 1
            invoice["next_payment_attempt"] = (
                objects.ts(now + timedelta(days=self.retry_days[retries_done]))
                if retries_done < len(self.retry_days)
                else None
            )
        row.save()
        if not customer_row.data.get("delinquent"):
            customer_row.data["delinquent"] = True
            customer_row.save()
        self._emit("invoice.payment_failed", invoice, now=now)
        if scheduled and invoice["next_payment_attempt"] is None:
            self._retries_exhausted(invoice, now=now, sub_row=sub_row)
        return Collected.FAILED

    def _retries_exhausted(
        self, invoice: Mapping[str, Any], *, now: datetime, sub_row: LocalGatewayObject | None
    ) -> None:
        sub_id = subscription_of(invoice)
        if not sub_id or self.when_retries_exhausted == WhenRetriesExhausted.PAST_DUE:
            return
        held = sub_row is not None
        sub_row = sub_row or objects.lock(sub_id, "subscription")
        sub = sub_row.data
        if sub["status"] in ENDED:
            return
        before = copy.deepcopy(sub)
        if self.when_retries_exhausted == WhenRetriesExhausted.CANCEL:
            sub.update(
                status="canceled",
                canceled_at=objects.ts(now),
                ended_at=objects.ts(now),
                cancel_at=None,
                cancel_at_period_end=False,
                cancellation_details={"comment": None, "feedback": None, "reason": "payment_failed"},
            )
            if not held:
                sub_row.save()
                self._emit("customer.subscription.deleted", sub, now=now)
            return
        if sub["status"] != "unpaid":
            sub["status"] = "unpaid"
            if not held:
                sub_row.save()
                self._emit("customer.subscription.updated", sub, now=now, before=before)

    def _after_paid(
        self,
        customer_row: LocalGatewayObject,
        invoice: Mapping[str, Any],
        *,
        now: datetime,
        sub_row: LocalGatewayObject | None,
        announce: bool = True,
    ) -> None:
        """An invoice was paid: the customer is no longer delinquent when nothing is left open, and an
        overdue subscription with nothing left open is active again (Stripe: "paying the most recent
        invoice" returns an unpaid or past-due subscription to active)."""
        customer_id = customer_row.object_id
        still_open = LocalGatewayObject.objects.filter(
            object_type="invoice", customer_id=customer_id, data__status="open"
        )
        if customer_row.data.get("delinquent") and not still_open.exists():
            customer_row.data["delinquent"] = False
            customer_row.save()
        sub_id = subscription_of(invoice)
        if not sub_id:
            return
        held = sub_row is not None
        sub_row = sub_row or objects.lock(sub_id, "subscription")
        sub = sub_row.data
        before = copy.deepcopy(sub)
        pending = sub.get("pending_update")
        if pending and sub.get("latest_invoice") == invoice["id"]:
            # The update waited for this invoice: it applies now (pending_if_incomplete).
            new_item = pending["subscription_items"][0]
            restart = (
                None
                if pending.get("billing_cycle_anchor") is None
                else (
                    objects.dt(new_item["current_period_start"]),
                    objects.dt(new_item["current_period_end"]),
                )
            )
            apply_price(sub, new_item["price"], restart=restart)
            sub["pending_update"] = None
            if not held and announce:
                self._emit("customer.subscription.pending_update_applied", sub, now=now, before=before)
        # Paying what is open returns an overdue subscription to active, and a first invoice paid
        # (confirmed after 3D Secure) makes an incomplete one active.
        # https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
        if (sub["status"] in OVERDUE or sub["status"] == "incomplete") and not self._open_invoices_of(sub_id):
            sub["status"] = "active"
        if not held and sub != before:
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=now, before=before)

    def _retry_due(self, moment: datetime) -> int:
        """The retry schedule: every open invoice whose next attempt has come is attempted again, at
        its own time (several times when `moment` is far ahead). Returns how many attempts ran."""
        attempts = 0
        due = LocalGatewayObject.objects.filter(
            object_type="invoice", data__status="open", data__next_payment_attempt__lte=objects.ts(moment)
        ).order_by("id")
        for candidate in due:
            with transaction.atomic():
                customer_row, row = self._lock_with_customer(candidate.object_id, "invoice")
                while (
                    row.data["status"] == "open"
                    and row.data["next_payment_attempt"] is not None
                    and row.data["next_payment_attempt"] <= objects.ts(moment)
                ):
                    at = objects.dt(row.data["next_payment_attempt"])
                    self._attempt(customer_row, row, now=at, scheduled=True)
                    attempts += 1
        return attempts

    def _pay_open(self, customer_row: LocalGatewayObject, *, now: datetime) -> list[dict[str, Any]]:
        """Pay every open invoice of the customer (a card entered on the hosted invoice page);
        overdue subscriptions with nothing left open recover."""
        invoice_rows = list(
            LocalGatewayObject.objects.select_for_update()
            .filter(object_type="invoice", customer_id=customer_row.object_id, data__status="open")
            .order_by("id")
        )
        paid = []
        for row in invoice_rows:
            invoice = row.data
            invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
            self._record_attempt(invoice, Collected.PAID, card=None)
            self._record_payment(invoice, card=None, now=now)
            objects.mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            paid.append(invoice)
        for invoice in paid:
            self._after_paid(customer_row, invoice, now=now, sub_row=None)
        return paid

    def _open_invoices_of(self, subscription_id: str) -> list[LocalGatewayObject]:
        return list(
            LocalGatewayObject.objects.filter(
                object_type="invoice",
                data__status="open",
                data__parent__subscription_details__subscription=subscription_id,
            )
        )

    def _paid_or_raise(self, invoice: dict[str, Any]) -> GatewayInvoice:
        """The invoice if it is paid; otherwise the card's refusal of its last attempt."""
        if invoice["status"] == "paid":
            return invoice_from_stripe(invoice)
        last = self._last_attempt(invoice["id"])
        if last is not None and last["outcome"] == Collected.ACTION_REQUIRED:
            raise GatewayError(MSG_CONFIRM, code="authentication_required")
        raise GatewayError(MSG_DECLINED, code="card_declined")

    # --- payments: a payment intent, its charge, and the invoice payment that ties it to the invoice --

    def _record_payment(
        self, invoice: Mapping[str, Any], *, card: Mapping[str, Any] | None, now: datetime
    ) -> None:
        """What a successful payment leaves at Stripe (API versions from 2025-03-31 on): a payment
        intent, its charge (no `invoice` field any more) and an invoice payment linking the invoice
        to the payment intent. https://docs.stripe.com/api/invoice-payment"""
        customer_id = str(invoice["customer"])
        amount, currency = int(invoice["amount_due"]), str(invoice["currency"])
        pi_id, charge_id = objects.new_id("pi"), objects.new_id("ch")
        charge = objects.shape(
            "charge",
            id=charge_id,
            amount=amount,
            amount_captured=amount,
            created=objects.ts(now),
            currency=currency,
            customer=customer_id,
            description=invoice.get("description"),
            payment_intent=pi_id,
            payment_method=None if card is None else card["id"],
        )
        charge["refunds"]["url"] = f"/v1/charges/{charge_id}/refunds"
        if card is not None:
            charge["payment_method_details"]["card"].update(
                last4=card["card"]["last4"], exp_year=card["card"]["exp_year"]
            )
        objects.insert("charge", charge, customer_id=customer_id)
        intent = objects.shape(
            "payment_intent",
            id=pi_id,
            amount=amount,
            amount_received=amount,
            created=objects.ts(now),
            currency=currency,
            customer=customer_id,
            latest_charge=charge_id,
            payment_method=charge["payment_method"],
        )
        objects.insert("payment_intent", intent, customer_id=customer_id)
        record = objects.shape(
            "invoice_payment",
            id=objects.new_id("inpay"),
            amount_paid=amount,
            amount_requested=amount,
            created=objects.ts(now),
            currency=currency,
            invoice=invoice["id"],
            payment={"type": "payment_intent", "payment_intent": pi_id},
            status_transitions={"canceled_at": None, "paid_at": objects.ts(now)},
        )
        objects.insert("invoice_payment", record, customer_id=customer_id)

    def refund_invoice(self, invoice_id: str, *, idempotency_key: str) -> int:
        """Refund in full every payment of the invoice (charge.refunded for each); returns the minor
        units refunded by this call (0 when it was refunded already: Stripe answers
        charge_already_refunded, which the Stripe gateway skips), the same again on a replay. The
        invoice stays paid, as at Stripe: a refund does not change it."""
        invoice = self._once(
            idempotency_key,
            "refund_invoice",
            {"invoice_id": invoice_id},
            lambda: self._refund_invoice(invoice_id, request=idempotency_key),
            object_type="invoice",
        )
        return sum(
            int(row.data["amount"])
            for row in LocalGatewayObject.objects.filter(
                object_type="refund",
                data__metadata__invoice=invoice["id"],
                data__metadata__local_request=idempotency_key,
            )
        )

    def _refund_invoice(self, invoice_id: str, *, request: str) -> str:
        customer_row, row = self._lock_with_customer(invoice_id, "invoice")
        if row.data["status"] != "paid":
            raise GatewayError("Only a paid invoice can be refunded.", code="invoice_not_paid")
        now = self._now()
        for record in LocalGatewayObject.objects.filter(
            object_type="invoice_payment", data__invoice=invoice_id
        ):
            pi = objects.read(record.data["payment"]["payment_intent"], "payment_intent")
            charge_row = objects.lock(pi["latest_charge"], "charge")
            charge = charge_row.data
            left = int(charge["amount"]) - int(charge["amount_refunded"])
            if left <= 0:
                continue
            refund = objects.shape(
                "refund",
                id=objects.new_id("re"),
                amount=left,
                charge=charge["id"],
                created=objects.ts(now),
                currency=charge["currency"],
                payment_intent=pi["id"],
                reason="duplicate",
                # local_request: the call that made it (what refund_invoice answers it refunded).
                metadata={"invoice": invoice_id, "local_request": request},
            )
            objects.insert("refund", refund, customer_id=customer_row.object_id)
            charge.update(amount_refunded=charge["amount"], refunded=True)
            charge["refunds"]["data"].append(refund)
            charge_row.save()
            self._emit("charge.refunded", charge, now=now)
        return invoice_id

    def invoice_refunded(self, invoice_id: str) -> int:
        refunded = 0
        for record in LocalGatewayObject.objects.filter(
            object_type="invoice_payment", data__invoice=invoice_id
        ):
            pi = objects.read(record.data["payment"]["payment_intent"], "payment_intent")
            refunded += int(objects.read(pi["latest_charge"], "charge")["amount_refunded"])
        return refunded

    def retrieve_charge(self, charge_id: str) -> GatewayCharge:
        return charge_from_stripe(objects.read(charge_id, "charge"))

    def retrieve_dispute(self, dispute_id: str) -> GatewayDispute:
        return dispute_from_stripe(objects.read(dispute_id, "dispute"))

    def dispute_charge(self, charge_id: str, *, reason: str = "fraudulent") -> GatewayDispute:
        """The cardholder disputes the charge with their bank (charge.dispute.created)."""
        with transaction.atomic():
            customer_row, charge_row = self._lock_with_customer(charge_id, "charge")
            now = self._now()
            dispute = objects.shape(
                "dispute",
                id=objects.new_id("dp"),
                amount=charge_row.data["amount"],
                charge=charge_id,
                created=objects.ts(now),
                currency=charge_row.data["currency"],
                payment_intent=charge_row.data["payment_intent"],
                reason=reason,
            )
            objects.insert("dispute", dispute, customer_id=customer_row.object_id)
            charge_row.data["disputed"] = True
            charge_row.save()
            self._emit("charge.dispute.created", dispute, now=now)
            return dispute_from_stripe(dispute)

    def issue_credit_note(self, invoice_id: str, *, amount: int, memo: str = "") -> dict[str, Any]:
        """A credit note against a paid invoice, issued as from the Dashboard: post-payment, its whole
        amount credited to the customer's balance (Stripe's `credit_amount`), which the next
        finalized invoices apply; credit_note.created. See `_credit_note`."""
        with transaction.atomic():
            note_id = self._credit_note(invoice_id, amount=amount, memo=memo)
            return objects.read(note_id, "credit_note")

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
        """Stripe's `POST /v1/credit_notes` with `credit_amount` equal to `amount` (see
        `_credit_note`); the key replays its first answer, a refusal included."""
        params = {
            "invoice_id": invoice_id,
            "amount": amount,
            "reason": reason,
            "memo": memo,
            "metadata": metadata,
        }
        return credit_note_from_stripe(
            self._once(
                idempotency_key,
                "credit_invoice_to_balance",
                params,
                lambda: self._credit_note(
                    invoice_id, amount=amount, memo=memo, reason=reason, metadata=metadata
                ),
                object_type="credit_note",
            )
        )

    def invoice_credited_to_balance(self, invoice_id: str) -> int:
        """What the invoice's credit notes (voided ones aside) credited to the customer's balance: the
        amounts of the balance transactions they name (negative: credits)."""
        credited = 0
        for row in LocalGatewayObject.objects.filter(object_type="credit_note", data__invoice=invoice_id):
            if row.data["status"] == "void" or not row.data.get("customer_balance_transaction"):
                continue
            credited -= int(
                objects.read(row.data["customer_balance_transaction"], "customer_balance_transaction")[
                    "amount"
                ]
            )
        return credited

    def _credit_note(
        self,
        invoice_id: str,
        *,
        amount: int,
        memo: str = "",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Stripe's `POST /v1/credit_notes` on a paid invoice with `amount` and `credit_amount` both
        `amount`: a post-payment credit note (post_payment_amount; the sum of refund, credit and
        out-of-band amounts must equal it), the invoice's post_payment_credit_notes_amount grows, the
        customer's balance moves by -amount (a credit owed to the customer, applied to their next
        invoice when it is finalized), recorded as a customer balance transaction of type
        `credit_note` that the note names. https://docs.stripe.com/api/credit_notes/create,
        https://docs.stripe.com/billing/customer/balance

        Refused, changing nothing: an invoice that is not paid (the stand-in models post-payment
        notes only), an amount that is not positive, or one beyond what the invoice has left to
        credit (its total less the credit notes already issued; the wording is ours). Returns the
        credit note's id."""
        customer_row, row = self._lock_with_customer(invoice_id, "invoice")
        invoice = row.data
        if invoice["status"] != "paid" or amount <= 0:
            raise GatewayError(
                "A credit note needs a paid invoice and a positive amount.", code="parameter_invalid"
            )
        issued = int(invoice.get("pre_payment_credit_notes_amount") or 0) + int(
            invoice.get("post_payment_credit_notes_amount") or 0
        )
        creditable = max(int(invoice["total"]) - issued, 0)
        if amount > creditable:
            raise GatewayError(
                f"The credit note's amount ({amount}) is more than the invoice has left to credit "
                f"({creditable}).",
                code="parameter_invalid",
            )
        now = self._now()
        note_id = objects.new_id("cn")
        balance = self._balance_transaction(
            customer_row,
            amount=-amount,
            kind="credit_note",
            currency=invoice["currency"],
            now=now,
            credit_note=note_id,
        )
        earlier = LocalGatewayObject.objects.filter(
            object_type="credit_note", data__invoice=invoice_id
        ).count()
        note = objects.shape(
            "credit_note",
            id=note_id,
            amount=amount,
            created=objects.ts(now),
            currency=invoice["currency"],
            customer=customer_row.object_id,
            customer_balance_transaction=balance["id"],
            effective_at=objects.ts(now),
            invoice=invoice_id,
            memo=memo or None,
            metadata=dict(metadata or {}),
            number=f"{invoice['number']}-CN-{earlier + 1:02d}",
            reason=reason,
            subtotal=amount,
            subtotal_excluding_tax=amount,
            total=amount,
            total_excluding_tax=amount,
            post_payment_amount=amount,
            pre_payment_amount=0,
            type="post_payment",
        )
        objects.insert("credit_note", note, customer_id=customer_row.object_id)
        invoice["post_payment_credit_notes_amount"] = (
            int(invoice.get("post_payment_credit_notes_amount") or 0) + amount
        )
        row.save()
        self._emit("credit_note.created", note, now=now)
        return note_id

    def invoice_of_charge(self, charge_id: str) -> str:
        """The invoice a charge paid: charge → payment intent → invoice payment → invoice."""
        charge = objects.read(charge_id, "charge")
        record = LocalGatewayObject.objects.filter(
            object_type="invoice_payment", data__payment__payment_intent=charge.get("payment_intent")
        ).first()
        return "" if record is None else str(record.data["invoice"])

    # --- payment attempts (the stand-in's record; Stripe keeps them as payment intents) ------------

    @staticmethod
    def _record_attempt(
        invoice: Mapping[str, Any], outcome: Collected, *, card: Mapping[str, Any] | None
    ) -> None:
        objects.insert(
            "payment_attempt",
            {
                "id": objects.new_id("pa"),
                "invoice": invoice["id"],
                "outcome": str(outcome),
                "payment_method": None if card is None else card["id"],
            },
            customer_id=str(invoice["customer"]),
        )

    @staticmethod
    def _last_attempt(invoice_id: str) -> dict[str, Any] | None:
        row = (
            LocalGatewayObject.objects.filter(object_type="payment_attempt", data__invoice=invoice_id)
            .order_by("-id")
            .first()
        )
        return None if row is None else row.data

    # --- cards --------------------------------------------------------------------------------------

    def _paying_card(
        self, customer_row: LocalGatewayObject, invoice: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The card Stripe charges for `invoice`: its subscription's default payment method, else the
        customer's default for invoices."""
        sub_id = subscription_of(invoice)
        if sub_id:
            sub = LocalGatewayObject.objects.filter(object_id=sub_id, object_type="subscription").first()
            pm_id = None if sub is None else sub.data.get("default_payment_method")
            if pm_id:
                return self._attached_card(pm_id, customer_row.object_id)
        return self._card(customer_row)

    def _card(self, customer_row: LocalGatewayObject) -> dict[str, Any] | None:
        """The customer's default card for invoices."""
        return self._card_of(customer_row.data)

    @classmethod
    def _card_of(cls, customer: Mapping[str, Any]) -> dict[str, Any] | None:
        pm_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
        return cls._attached_card(pm_id, str(customer["id"])) if pm_id else None

    @staticmethod
    def _attached_card(pm_id: str, customer_id: str) -> dict[str, Any] | None:
        row = LocalGatewayObject.objects.filter(object_id=pm_id, object_type="payment_method").first()
        if row is None or row.data.get("customer") != customer_id:
            return None  # detached: Stripe cannot charge it
        card: dict[str, Any] = row.data
        return card

    def _new_card(
        self, customer_row: LocalGatewayObject, *, behaviour: Card, last4: str, now: datetime
    ) -> dict[str, Any]:
        """A card attached to the customer (not made a default). Stripe would also send
        payment_method.attached; the portal stand-in emits it, the checkout does not (nothing of ours
        listens to it, and the checkout's events are the ones the tests follow)."""
        if not (len(last4) == 4 and last4.isascii() and last4.isdigit()):
            raise GatewayError("last4 must be four digits.", code="parameter_invalid")
        data = objects.payment_method(
            objects.new_id("pm"), customer=customer_row.data, last4=last4, behaviour=behaviour, now=now
        )
        objects.insert("payment_method", data, customer_id=customer_row.object_id)
        return data

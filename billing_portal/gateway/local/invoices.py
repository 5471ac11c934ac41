"""Invoices and payment: invoices numbered from the customer's sequence, collected on the card the
customer has, paid or left open; cards; one-off charges."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from billing_portal.gateway.base import GatewayError, GatewayInvoice
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.events import LocalEvents
from billing_portal.gateway.local.idempotency import answer_or_raise
from billing_portal.gateway.local.objects import OVERDUE
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import invoice_from_stripe

MSG_DECLINED = "Your card was declined."
RETRY_AFTER = timedelta(days=3)  # when Stripe's dunning would try a failed invoice again


def card_declines(card: Mapping[str, Any]) -> bool:
    return (card.get("metadata") or {}).get("local_card_behaviour") == "declines"


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
        with transaction.atomic():
            answer = self._idempotent(
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
        invoice = invoice_from_stripe(answer_or_raise(answer))
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

    def pay_open_invoices(self, customer_id: str) -> list[GatewayInvoice]:
        """The customer pays everything open (the hosted invoice page): overdue subscriptions recover."""
        with transaction.atomic():
            customer_row = objects.lock(customer_id, "customer")
            return [invoice_from_stripe(inv) for inv in self._pay_open(customer_row, now=self._now())]

    # --- invoices and their collection ---------------------------------------------------------------

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
        return objects.invoice(
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

    def _finalize_and_collect(
        self, customer_row: LocalGatewayObject, invoice: dict[str, Any], *, now: datetime
    ) -> bool:
        """Store the open invoice, emit invoice.finalized, charge the card: invoice.paid, or
        invoice.payment_failed leaving it open. Returns whether it was paid."""
        row = objects.insert("invoice", invoice, customer_id=customer_row.object_id)
        self._emit("invoice.finalized", invoice, now=now)
        card = self._card(customer_row)
        if card is not None and not card_declines(card):
            objects.mark_paid(invoice, now)
            row.save()
            self._emit("invoice.paid", invoice, now=now)
            return True
        invoice.update(
            attempt_count=invoice["attempt_count"] + 1,
            attempted=True,
            next_payment_attempt=objects.ts(now + RETRY_AFTER),
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
            objects.mark_paid(invoice, now)
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
        data = objects.payment_method(
            objects.new_id("pm"),
            customer=customer,
            last4=last4,
            behaviour="declines" if failing else "pays",
            now=now,
        )
        objects.insert("payment_method", data, customer_id=customer_row.object_id)
        customer.setdefault("invoice_settings", {})["default_payment_method"] = data["id"]
        customer_row.save()

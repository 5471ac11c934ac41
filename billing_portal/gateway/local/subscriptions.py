"""Subscriptions and their schedules: price changes (prorated now, or scheduled in phases),
cancellation and resumption, and the renewal of a period."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from django.db import transaction

from billing_portal.gateway.base import (
    GatewayError,
    GatewayInvoice,
    GatewayInvoiceLine,
    GatewayInvoicePreview,
    GatewaySchedule,
    GatewaySubscription,
    PaymentBehavior,
)
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.invoices import (
    MSG_DECLINED,
    PENDING_UPDATE_LIFETIME,
    Card,
    Collected,
    LocalInvoices,
    apply_price,
)
from billing_portal.gateway.local.money import Proration, prorate
from billing_portal.gateway.local.objects import ENDED, OVERDUE, dt, interval, item, ts
from billing_portal.gateway.local.periods import period_end_after
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.gateway.stripe_gateway import (
    invoice_from_stripe,
    schedule_from_stripe,
    subscription_from_stripe,
)


class LocalSubscriptions(LocalInvoices):
    def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription:
        return subscription_from_stripe(objects.read(subscription_id, "subscription"))

    def list_subscriptions(self, *, customer_id: str) -> list[GatewaySubscription]:
        rows = LocalGatewayObject.objects.filter(
            object_type="subscription", customer_id=customer_id
        ).order_by("-id")
        return [subscription_from_stripe(row.data) for row in rows]

    def adopt_subscription_card(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        """The subscription's own card becomes the customer's default (customer.updated) and the
        subscription's is cleared (customer.subscription.updated), as the two API updates do."""
        return subscription_from_stripe(
            self._once(
                idempotency_key,
                "adopt_subscription_card",
                {"subscription_id": subscription_id},
                lambda: self._adopt_card(subscription_id),
                object_type="subscription",
            )
        )

    def _adopt_card(self, subscription_id: str) -> str:
        customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        card = sub_row.data.get("default_payment_method")
        if not card:
            return subscription_id
        now = self._now()
        before = copy.deepcopy(customer_row.data)
        customer_row.data["invoice_settings"]["default_payment_method"] = card
        customer_row.save()
        self._emit("customer.updated", customer_row.data, now=now, before=before)
        before = copy.deepcopy(sub_row.data)
        sub_row.data["default_payment_method"] = None
        sub_row.save()
        self._emit("customer.subscription.updated", sub_row.data, now=now, before=before)
        return subscription_id

    # --- a new subscription, paid with the saved card ------------------------------------------------

    def create_subscription(
        self, *, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> GatewaySubscription:
        """As the Stripe gateway's: `default_incomplete`, then one payment of the first invoice on the
        customer's default card. Paid: active. Declined: canceled at once (its invoice stays open,
        no longer collected, as Stripe leaves it) and GatewayError. 3D Secure: `incomplete`, confirmed
        on the hosted invoice page (`confirm_payment`), which makes it active. A repeat of the key
        answers as the first request did."""
        params = {"customer_id": customer_id, "price_id": price_id, "metadata": metadata}
        answer = self._once(
            idempotency_key,
            "create_subscription",
            params,
            lambda: self._create_subscription(customer_id=customer_id, price_id=price_id, metadata=metadata),
            object_type="subscription",
        )
        sub = answer
        if sub["status"] == "canceled":
            raise GatewayError(MSG_DECLINED, code="card_declined")
        return subscription_from_stripe(sub)

    def _create_subscription(self, *, customer_id: str, price_id: str, metadata: dict[str, str]) -> str:
        customer_row = objects.lock(customer_id, "customer")  # a deleted one is no longer a "customer"
        now = self._now()
        price = self._price(price_id, now)
        start = dt(ts(now))
        end = period_end_after(start, start, interval(price))
        invoice_id = objects.new_id("in")
        sub = objects.subscription(
            objects.new_id("sub"),
            customer_id=customer_id,
            price=price,
            start=start,
            end=end,
            metadata=metadata,
            latest_invoice=invoice_id,
            now=now,
        )
        sub["status"] = "incomplete"
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
        sub_row = objects.insert("subscription", sub, customer_id=customer_id)
        self._emit("customer.subscription.created", sub, now=now)
        before = copy.deepcopy(sub)
        # `invoices.pay`: one attempt now, not on the retry schedule.
        collected = self._finalize_and_collect(
            customer_row, invoice, now=now, sub_row=sub_row, scheduled=False
        )
        if collected == Collected.PAID:
            sub["status"] = "active"
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=now, before=before)
        elif collected == Collected.FAILED:
            sub.update(
                status="canceled",
                canceled_at=ts(now),
                ended_at=ts(now),
                cancellation_details={"comment": None, "feedback": None, "reason": "cancellation_requested"},
            )
            sub_row.save()
            self._emit("customer.subscription.deleted", sub, now=now)
        return str(sub["id"])

    # --- a price change now -----------------------------------------------------------------------

    def change_subscription_price(
        self,
        *,
        subscription_id: str,
        price_id: str,
        idempotency_key: str,
        payment_behavior: PaymentBehavior = "allow_incomplete",
    ) -> GatewaySubscription:
        params = {
            "subscription_id": subscription_id,
            "price_id": price_id,
            "payment_behavior": payment_behavior,
        }
        return subscription_from_stripe(
            self._once(
                idempotency_key,
                "change_subscription_price",
                params,
                lambda: self._change_subscription_price(
                    subscription_id=subscription_id, price_id=price_id, payment_behavior=payment_behavior
                ),
                object_type="subscription",
            )
        )

    def _change_subscription_price(
        self, *, subscription_id: str, price_id: str, payment_behavior: PaymentBehavior
    ) -> str:
        """The update with `proration_behavior=always_invoice`: the prorated difference is invoiced
        and collected now. What an unpaid invoice does to the change is `payment_behavior`'s:
        allow_incomplete (Stripe's default) keeps the change and makes the subscription past due;
        pending_if_incomplete leaves the subscription as it was, with the change in `pending_update`
        until the invoice is paid or the update expires; error_if_incomplete refuses the change.
        https://docs.stripe.com/billing/subscriptions/pending-updates"""
        customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
        sub = sub_row.data
        if sub["status"] in ENDED:
            raise GatewayError(
                "A canceled subscription cannot change its price.", code="subscription_canceled"
            )
        sub_item = item(sub)
        if sub_item["price"]["id"] == price_id:
            return subscription_id  # already there: nothing to prorate
        now = self._now()
        new_price = self._price(price_id, now)
        before = copy.deepcopy(sub)
        proration = prorate(sub_item, new_price, now)
        if proration.amount <= 0 or payment_behavior == "allow_incomplete":
            apply_price(sub, new_price, restart=proration.restart)
        invoice: dict[str, Any] | None = None
        if proration.amount != 0:
            # always_invoice: the prorations are invoiced now, a downgrade's too. Its total is
            # negative: nothing is charged, the credit goes to the customer's balance and the next
            # invoices use it (see _apply_customer_balance). Stripe does not refund it to the card.
            # https://docs.stripe.com/billing/subscriptions/prorations
            invoice = self._proration_invoice(
                customer_row, sub, proration, currency=new_price["currency"], at=now
            )
        if invoice is None or proration.amount < 0 or payment_behavior == "allow_incomplete":
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=now, before=before)
        if invoice is None:
            return subscription_id
        if proration.amount < 0:
            # Nothing is due, whatever the payment behaviour: the invoice is paid on finalization.
            self._finalize_and_collect(customer_row, invoice, now=now, sub_row=sub_row)
            sub_row.save()
            return subscription_id
        if payment_behavior == "allow_incomplete":
            before = copy.deepcopy(sub)
            collected = self._finalize_and_collect(customer_row, invoice, now=now, sub_row=sub_row)
            if collected != Collected.PAID and sub["status"] not in OVERDUE | ENDED:
                sub["status"] = "past_due"
            if sub != before:
                sub_row.save()
                self._emit(status_event(sub), sub, now=now, before=before)
            return subscription_id
        # pending_if_incomplete / error_if_incomplete: the change waits for the payment.
        sub["pending_update"] = {
            "billing_cycle_anchor": None if proration.restart is None else ts(proration.restart[0]),
            "expires_at": min(ts(now + PENDING_UPDATE_LIFETIME), sub_item["current_period_end"]),
            "subscription_items": [
                {**copy.deepcopy(sub_item), "price": new_price, "plan": objects.plan_of(new_price)}
            ],
            "trial_end": None,
            "trial_from_plan": None,
        }
        if proration.restart is not None:
            sub["pending_update"]["subscription_items"][0].update(
                current_period_start=ts(proration.restart[0]), current_period_end=ts(proration.restart[1])
            )
        sub_row.save()
        # Not held: when the payment goes through, _after_paid applies the update and emits it.
        collected = self._finalize_and_collect(
            customer_row, invoice, now=now, scheduled=False, announce=False
        )
        if collected == Collected.PAID:
            return subscription_id
        if payment_behavior == "error_if_incomplete":
            raise GatewayError(MSG_DECLINED, code="card_declined")  # undoes the update and its invoice
        self._emit("customer.subscription.updated", sub, now=now, before=before)
        return subscription_id

    def _proration_invoice(
        self, customer_row: LocalGatewayObject, sub: dict[str, Any], proration: Proration, *, currency: str,
        at: datetime,
    ) -> dict[str, Any]:  # fmt: skip
        """The invoice of a price change's prorations at `at` (an update's `always_invoice`, or a
        schedule's switch), made the subscription's latest; the caller finalizes and collects it."""
        invoice = self._new_invoice(
            customer_row,
            now=at,
            currency=currency,
            billing_reason="subscription_update",
            subscription=sub,
            lines_spec=proration.lines,
            period=(at, at),
        )
        sub["latest_invoice"] = invoice["id"]
        return invoice

    def preview_price_change(
        self, *, subscription_id: str, price_id: str, at: datetime | None = None
    ) -> GatewayInvoicePreview:
        """The invoice `change_subscription_price` would create now — or, with `at` (Stripe's
        `subscription_details.proration_date`), the one a switch at `at` would create — by the same
        arithmetic (`prorate`) as the change and the schedule's switch, so the preview and the charge
        agree to the cent at the same instant. Like Stripe's preview with
        `proration_behavior=always_invoice`, a change that leaves a credit has a negative total and
        nothing due. As at Stripe, `at` must fall within the current period.
        https://docs.stripe.com/api/invoices/create_preview#create_create_preview-subscription_details-proration_date"""
        with transaction.atomic():
            sub = objects.read(subscription_id, "subscription")
            if sub["status"] in ENDED:
                raise GatewayError(
                    "A canceled subscription cannot change its price.", code="subscription_canceled"
                )
            sub_item = item(sub)
            currency = str(sub_item["price"]["currency"])
            if sub_item["price"]["id"] == price_id:
                return GatewayInvoicePreview(currency=currency, amount_due=0, total=0)
            now = self._now()
            moment = now if at is None else dt(ts(at))
            period = (dt(sub_item["current_period_start"]), dt(sub_item["current_period_end"]))
            if at is not None and not period[0] <= moment < period[1]:
                raise GatewayError(
                    "Cannot specify proration date outside of current subscription period.",
                    code="parameter_invalid_integer",
                )
            proration = prorate(sub_item, self._price(price_id, now), moment)
            # The customer's balance applies to the preview as to the invoice: a credit lowers what
            # is due now. https://docs.stripe.com/billing/customer/balance
            balance = int(objects.read(str(sub["customer"]), "customer").get("balance") or 0)
            lines = tuple(
                GatewayInvoiceLine(
                    description=spec["description"],
                    amount=spec["amount"],
                    period_start=dt(ts(spec["start"])),
                    period_end=dt(ts(spec["end"])),
                )
                for spec in proration.lines
            )
        return GatewayInvoicePreview(
            currency=currency,
            amount_due=max(proration.amount + balance, 0),
            total=proration.amount,
            lines=lines,
        )

    # --- schedules ---------------------------------------------------------------------------------

    def schedule_subscription_change(
        self, *, subscription_id: str, price_id: str, at: datetime, idempotency_key: str
    ) -> GatewaySchedule:
        params = {"subscription_id": subscription_id, "price_id": price_id, "at": ts(at)}
        return schedule_from_stripe(
            self._once(
                idempotency_key,
                "schedule_subscription_change",
                params,
                lambda: self._schedule_subscription_change(
                    subscription_id=subscription_id, price_id=price_id, at=at
                ),
                object_type="subscription_schedule",
            )
        )

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
        switch_at = ts(at)
        if switch_at <= ts(now):
            raise GatewayError("The change must be scheduled in the future.", code="parameter_invalid_date")
        sub_item = item(sub)
        new_price = self._price(price_id, now)
        phase_end = period_end_after(dt(switch_at), dt(switch_at), interval(new_price))
        # A schedule made from a subscription starts with its settings: the current phase carries the
        # subscription's own card and metadata, and so does the phase we add (a phase that leaves one
        # out sets the subscription without it when it starts).
        # https://docs.stripe.com/billing/subscriptions/subscription-schedules#existing-subscription
        phases = [
            objects.phase(sub_item["price"], start=sub_item["current_period_start"], end=switch_at),
            objects.phase(new_price, start=switch_at, end=ts(phase_end)),
        ]
        # As the Stripe gateway states them: the current phase restated without a proration, the
        # new price prorated from its start to the period's end and invoiced then (`_apply_schedule`).
        phases[0]["proration_behavior"] = "none"
        phases[1]["proration_behavior"] = "always_invoice"
        for phase in phases:
            phase.update(
                default_payment_method=sub.get("default_payment_method"),
                metadata=dict(sub.get("metadata") or {}),
            )
        data = objects.schedule(objects.new_id("sub_sched"), sub=sub, phases=phases, now=now)
        data["default_settings"]["default_payment_method"] = sub.get("default_payment_method")
        objects.insert("subscription_schedule", data, customer_id=customer_row.object_id)
        before = copy.deepcopy(sub)
        sub["schedule"] = data["id"]
        sub_row.save()
        self._emit("subscription_schedule.created", data, now=now)
        self._emit("customer.subscription.updated", sub, now=now, before=before)
        return str(data["id"])

    def retrieve_schedule(self, schedule_id: str) -> GatewaySchedule:
        return schedule_from_stripe(objects.read(schedule_id, "subscription_schedule"))

    def release_schedule(self, schedule_id: str, *, idempotency_key: str) -> None:
        self._once(
            idempotency_key,
            "release_schedule",
            {"schedule_id": schedule_id},
            lambda: self._release(schedule_id),
            object_type="subscription_schedule",
        )

    def _release(self, schedule_id: str) -> str:
        schedule_row = objects.read_row(schedule_id, "subscription_schedule")
        objects.lock(schedule_row.customer_id, "customer")  # the customer first, as every operation locks
        sub_id = schedule_row.data.get("subscription")
        sub_row = objects.lock(sub_id, "subscription") if sub_id else None
        schedule_row = objects.lock(schedule_id, "subscription_schedule")
        schedule = schedule_row.data
        if schedule["status"] not in objects.LIVE_SCHEDULE:
            raise GatewayError(
                f"You cannot release a subscription schedule that is currently in the `{schedule['status']}` status.",
                code="schedule_unexpected_state",
            )
        now = self._now()
        schedule.update(
            status="released", released_at=ts(now), released_subscription=sub_id, subscription=None
        )
        schedule_row.save()
        self._emit("subscription_schedule.released", schedule, now=now)
        if sub_row is not None and sub_row.data.get("schedule") == schedule_id:
            before = copy.deepcopy(sub_row.data)
            sub_row.data["schedule"] = None
            sub_row.save()
            self._emit("customer.subscription.updated", sub_row.data, now=now, before=before)
        return schedule_id

    def _cancel_schedule(self, schedule_id: str, *, now: datetime) -> None:
        schedule_row = objects.lock(schedule_id, "subscription_schedule")
        if schedule_row.data["status"] in objects.LIVE_SCHEDULE:
            schedule_row.data.update(status="canceled", canceled_at=ts(now))
            schedule_row.save()
            self._emit("subscription_schedule.canceled", schedule_row.data, now=now)

    # --- cancellation ------------------------------------------------------------------------------

    def cancel_subscription(
        self, *, subscription_id: str, at_period_end: bool, idempotency_key: str
    ) -> GatewaySubscription:
        params = {"subscription_id": subscription_id, "at_period_end": at_period_end}
        return subscription_from_stripe(
            self._once(
                idempotency_key,
                "cancel_subscription",
                params,
                lambda: self._cancel(subscription_id, at_period_end=at_period_end),
                object_type="subscription",
            )
        )

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
                cancel_at=item(sub)["current_period_end"],
                canceled_at=ts(now),
                cancellation_details={"comment": None, "feedback": None, "reason": "cancellation_requested"},
            )
            sub_row.save()
            self._emit("customer.subscription.updated", sub, now=now, before=before)
            return subscription_id
        if sub.get("schedule"):
            self._cancel_schedule(sub["schedule"], now=now)
        sub.update(
            status="canceled",
            ended_at=ts(now),
            canceled_at=ts(now),
            cancel_at=None,
            cancel_at_period_end=False,
            schedule=None,
            cancellation_details={"comment": None, "feedback": None, "reason": "cancellation_requested"},
        )
        sub_row.save()
        self._emit("customer.subscription.deleted", sub, now=now)
        return subscription_id

    def resume_subscription(self, *, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        """Undo a cancellation at period end (the API's `cancel_at_period_end=false`, the portal's
        "Renew"): one customer.subscription.updated, as Stripe sends. Resuming what is not canceled
        changes and emits nothing; an ended subscription is refused, as at Stripe."""
        return subscription_from_stripe(
            self._once(
                idempotency_key,
                "resume_subscription",
                {"subscription_id": subscription_id},
                lambda: self._resume(subscription_id),
                object_type="subscription",
            )
        )

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

    # --- renewal -----------------------------------------------------------------------------------

    def expire_card(self, subscription_id: str) -> None:
        """The card that pays the subscription (its own default, else the customer's) starts to
        decline, as an expired card does; with no card at all, the customer gets a declining one."""
        with transaction.atomic():
            customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
            self._expire_paying_card(customer_row, sub_row.data)

    def _expire_paying_card(self, customer_row: LocalGatewayObject, sub: dict[str, Any]) -> None:
        pm_id = sub.get("default_payment_method") or (customer_row.data.get("invoice_settings") or {}).get(
            "default_payment_method"
        )
        card_row = (
            LocalGatewayObject.objects.select_for_update()
            .filter(object_id=pm_id or "", object_type="payment_method")
            .first()
        )
        if card_row is None:
            card = self._new_card(customer_row, behaviour=Card.DECLINES, last4="0341", now=self._now())
            customer_row.data["invoice_settings"]["default_payment_method"] = card["id"]
            customer_row.save()
        else:
            card_row.data["metadata"]["local_card_behaviour"] = Card.DECLINES
            card_row.save()

    def fail_next_payment(self, subscription_id: str) -> GatewayInvoice:
        """The next billing date arrives and the card that pays the subscription declines (it
        expired, say): the period renews (from now, for simplicity), its invoice stays open for the
        retries and the subscription is past_due."""
        with transaction.atomic():
            customer_row, sub_row = self._lock_with_customer(subscription_id, "subscription")
            if sub_row.data["status"] in ENDED:
                raise GatewayError(
                    "A canceled subscription has no next payment.", code="subscription_canceled"
                )
            now = self._now()
            self._expire_paying_card(customer_row, sub_row.data)
            invoice = self._renew(customer_row, sub_row, start=dt(ts(now)), now=now, reanchor=True)
            return invoice_from_stripe(invoice)

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
            sub["billing_cycle_anchor"] = ts(start)
        sub_item = item(sub)
        price = sub_item["price"]
        old_start, old_end = dt(sub_item["current_period_start"]), dt(sub_item["current_period_end"])
        end = period_end_after(dt(sub["billing_cycle_anchor"]), start, interval(price))
        sub_item["current_period_start"], sub_item["current_period_end"] = ts(start), ts(end)
        invoice = self._cycle_invoice(
            customer_row,
            sub=sub,
            price=price,
            start=start,
            end=end,
            now=now,
            billing_reason="subscription_cycle",
            # Like Stripe, a renewal invoice's own period is the one that just ended; its line
            # carries the period it pays for.
            period=(old_start, min(old_end, start)),
        )
        sub["latest_invoice"] = invoice["id"]
        # An unpaid subscription's invoices are created but not attempted ("invoices continue to be
        # generated, but payments aren't attempted"). https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
        collected = self._finalize_and_collect(
            customer_row, invoice, now=now, sub_row=sub_row, attempt=sub["status"] != "unpaid"
        )
        if collected in (Collected.FAILED, Collected.ACTION_REQUIRED) and sub["status"] == "active":
            sub["status"] = "past_due"
        sub_row.save()
        self._emit(status_event(sub), sub, now=now, before=before)
        return invoice


def status_event(sub: dict[str, Any]) -> str:
    return "customer.subscription.deleted" if sub["status"] in ENDED else "customer.subscription.updated"

"""Stripe's clock, played on demand: `advance(now)` applies what fell due — scheduled phases
(prorated and invoiced as their `proration_behavior` says), cancellations at period end,
renewals — and expires checkout sessions left open."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from billing_portal.gateway.local import objects
from billing_portal.gateway.local.checkout import LocalCheckout
from billing_portal.gateway.local.core import Delivery
from billing_portal.gateway.local.invoices import Collected, apply_price
from billing_portal.gateway.local.money import prorate
from billing_portal.gateway.local.objects import ENDED, dt, item, ts
from billing_portal.gateway.local.subscriptions import status_event
from billing_portal.gateway.store import LocalGatewayObject

logger = logging.getLogger(__name__)

# A first invoice left unpaid this long ends its subscription (incomplete_expired).
INCOMPLETE_LIFETIME = timedelta(hours=23)
MAX_CYCLES_PER_ADVANCE = 240  # renewals of one subscription in one `advance` (20 years of months)


def _subscription_due(sub: Mapping[str, Any], switch_at: datetime | None, now: datetime) -> bool:
    if sub["status"] in ENDED:
        return False
    return dt(item(sub)["current_period_end"]) <= now or (switch_at is not None and switch_at <= now)


def _schedule_switch_at(sub: Mapping[str, Any]) -> datetime | None:
    """When the subscription's schedule moves it to the next phase, if it has an active schedule."""
    schedule_id = sub.get("schedule")
    if not schedule_id:
        return None
    row = LocalGatewayObject.objects.filter(
        object_id=schedule_id, object_type="subscription_schedule"
    ).first()
    if row is None or row.data["status"] not in objects.LIVE_SCHEDULE or len(row.data["phases"]) < 2:
        return None
    return dt(row.data["phases"][1]["start_date"])


class LocalClock(LocalCheckout):
    def advance(self, now: datetime | None = None) -> int:
        """Stripe's clock: apply scheduled changes that are due, end subscriptions canceled at period
        end, renew the others (paid, or past_due on a declining card), try failed invoices again when
        their retry is due, expire checkout sessions older than 24 hours. Returns how many
        subscriptions, schedules, payment attempts and sessions changed. Each object is re-read under
        its lock, so a second (or concurrent) call finds nothing left to do."""
        moment = dt(ts(now or self._now()))
        changed = self._expire_incomplete(moment)
        subs = (
            LocalGatewayObject.objects.filter(object_type="subscription")
            .exclude(data__status__in=[*sorted(ENDED), "incomplete"])
            .order_by("id")
        )
        for row in subs:
            if not _subscription_due(row.data, _schedule_switch_at(row.data), moment):
                continue
            with transaction.atomic():
                customer_row, sub_row = self._lock_with_customer(row.object_id, "subscription")
                changed += self._advance_subscription(customer_row, sub_row, moment)
        changed += self._retry_due(moment)
        changed += self._expire_pending_updates(moment)
        sessions = LocalGatewayObject.objects.filter(
            object_type="checkout.session", data__status="open", data__expires_at__lte=ts(moment)
        ).order_by("id")
        for row in sessions:
            with transaction.atomic():
                _customer_row, session_row = self._lock_with_customer(row.object_id, "checkout.session")
                if session_row.data["status"] == "open" and session_row.data["expires_at"] <= ts(moment):
                    changed += self._expire_session(session_row, now=moment)
        if self.delivery == Delivery.LATE:
            self.deliver_late()  # what was kept back arrives now, out of order and twice
        return changed

    def _expire_incomplete(self, moment: datetime) -> int:
        """A subscription whose first invoice is still unpaid 23 hours after it was created turns
        `incomplete_expired` (terminal) and that invoice is voided.
        https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses"""
        expired = 0
        due = LocalGatewayObject.objects.filter(
            object_type="subscription",
            data__status="incomplete",
            data__created__lte=ts(moment - INCOMPLETE_LIFETIME),
        ).order_by("id")
        for candidate in due:
            with transaction.atomic():
                _customer_row, sub_row = self._lock_with_customer(candidate.object_id, "subscription")
                sub = sub_row.data
                if sub["status"] != "incomplete":
                    continue
                at = dt(sub["created"]) + INCOMPLETE_LIFETIME
                invoice_row = objects.lock(sub["latest_invoice"], "invoice")
                if invoice_row.data["status"] == "open":
                    objects.mark_void(invoice_row.data, at)
                    invoice_row.save()
                    self._emit("invoice.voided", invoice_row.data, now=at)
                before = copy.deepcopy(sub)
                sub.update(status="incomplete_expired", ended_at=ts(at))
                sub_row.save()
                self._emit("customer.subscription.updated", sub, now=at, before=before)
                expired += 1
        return expired

    def _expire_pending_updates(self, moment: datetime) -> int:
        """An update still waiting for its invoice when `expires_at` passes is discarded and its
        invoice voided. https://docs.stripe.com/billing/subscriptions/pending-updates-reference#expiration"""
        expired = 0
        due = LocalGatewayObject.objects.filter(
            object_type="subscription", data__pending_update__expires_at__lte=ts(moment)
        ).order_by("id")
        for candidate in due:
            with transaction.atomic():
                _customer_row, sub_row = self._lock_with_customer(candidate.object_id, "subscription")
                sub = sub_row.data
                pending = sub.get("pending_update")
                if not pending or pending["expires_at"] > ts(moment):
                    continue
                at = dt(pending["expires_at"])
                invoice_row = objects.lock(sub["latest_invoice"], "invoice")
                if invoice_row.data["status"] == "open":
                    objects.mark_void(invoice_row.data, at)
                    invoice_row.save()
                    self._emit("invoice.voided", invoice_row.data, now=at)
                before = copy.deepcopy(sub)
                sub["pending_update"] = None
                sub_row.save()
                self._emit("customer.subscription.pending_update_expired", sub, now=at, before=before)
                expired += 1
        return expired

    def _advance_subscription(
        self, customer_row: LocalGatewayObject, sub_row: LocalGatewayObject, now: datetime
    ) -> int:
        sub_changed, schedules_done = False, 0
        for _ in range(MAX_CYCLES_PER_ADVANCE):
            sub = sub_row.data
            if sub["status"] in ENDED:
                break
            period_end = dt(item(sub)["current_period_end"])
            switch_at = _schedule_switch_at(sub)
            if switch_at is not None and switch_at <= now and switch_at <= period_end:
                self._apply_schedule(customer_row, sub_row, switch_at)
                sub_changed, schedules_done = True, schedules_done + 1
                continue
            if period_end > now:
                break
            sub_changed = True
            if sub["cancel_at_period_end"] or (sub.get("cancel_at") and dt(sub["cancel_at"]) <= period_end):
                sub.update(status="canceled", ended_at=ts(period_end))
                sub_row.save()
                self._emit("customer.subscription.deleted", sub, now=period_end)
                break
            self._renew(customer_row, sub_row, start=period_end, now=period_end)
        else:
            logger.warning("Stopped renewing %s after %d cycles", sub_row.object_id, MAX_CYCLES_PER_ADVANCE)
        return int(sub_changed) + schedules_done

    def _apply_schedule(
        self, customer_row: LocalGatewayObject, sub_row: LocalGatewayObject, switch_at: datetime
    ) -> None:
        """The schedule's next phase starts: the subscription moves to its price, prorated as the
        phase's `proration_behavior` says, and the schedule is done.

        `always_invoice` (what Allowance's phases say): as an update at that moment would, the time
        from the switch to the period's end is prorated (a credit for the unused time on the old
        price, a charge for the remaining time on the new one) and invoiced at once, then collected
        like any subscription invoice: paid, or failed onto the retry schedule with the subscription
        past due; a negative total (a downgrade) is paid from nothing and credited to the customer's
        balance. A switch at the period's end prorates nothing: the renewal bills the new price.
        `none`: the price changes without a proration. `create_prorations` (never sent by
        Allowance) is invoiced at once too: the stand-in keeps no pending invoice items.
        https://docs.stripe.com/api/subscription_schedules/update#update_subscription_schedule-phases-proration_behavior
        https://docs.stripe.com/billing/subscriptions/prorations"""
        sub = sub_row.data
        schedule_row = objects.lock(sub["schedule"], "subscription_schedule")
        schedule = schedule_row.data
        phase = schedule["phases"][1]
        new_price = self._price(phase["items"][0]["price"], switch_at)
        before = copy.deepcopy(sub)
        sub_item = item(sub)
        proration = None
        if (
            phase.get("proration_behavior") != "none"
            and sub_item["price"]["id"] != new_price["id"]
            and dt(sub_item["current_period_end"]) > switch_at
        ):
            proration = prorate(sub_item, new_price, switch_at)
        # The phase's settings become the subscription's (what the phase leaves out is cleared).
        sub["default_payment_method"] = phase.get("default_payment_method")
        apply_price(sub, new_price, restart=None if proration is None else proration.restart)
        sub["schedule"] = None
        invoice: dict[str, Any] | None = None
        if proration is not None and proration.amount != 0:
            invoice = self._proration_invoice(
                customer_row, sub, proration, currency=new_price["currency"], at=switch_at
            )
        sub_row.save()
        schedule.update(
            status="completed",
            completed_at=ts(switch_at),
            current_phase=None,
            released_subscription=sub["id"],
            subscription=None,
        )
        schedule_row.save()
        self._emit("customer.subscription.updated", sub, now=switch_at, before=before)
        self._emit("subscription_schedule.completed", schedule, now=switch_at)
        if invoice is None:
            return
        before = copy.deepcopy(sub)
        # Collected as a renewal is: off-session, on the retry schedule when it fails; an unpaid
        # subscription's invoices are created but not attempted.
        collected = self._finalize_and_collect(
            customer_row, invoice, now=switch_at, sub_row=sub_row, attempt=sub["status"] != "unpaid"
        )
        if collected in (Collected.FAILED, Collected.ACTION_REQUIRED) and sub["status"] == "active":
            sub["status"] = "past_due"
        if sub != before:
            sub_row.save()
            self._emit(status_event(sub), sub, now=switch_at, before=before)

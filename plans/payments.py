"""What the payment rail tells us about a paid subscription, in the plans app's own words.

`billing_portal` translates the gateway's objects (Stripe's statuses and fields) into
`PaidSubscriptionFacts`; the plans app never sees a gateway type or a Stripe status string, and
decides our subscription state from these facts alone (`services.subscription_apply_facts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"  # the first payment is not made yet: nothing is owed or granted
    PAID = "paid"  # in good standing
    PAYMENT_FAILED = "payment_failed"  # a renewal failed; the rail retries (our grace period runs)
    PAYMENT_OVERDUE = "payment_overdue"  # the rail stopped retrying; the balance is still open
    PAUSED = "paused"  # collection stopped without a payment method: no access until it resumes
    ENDED = "ended"  # canceled, or never paid


# The statuses a subscription may have access under (before our own grace and end dates decide).
GRANTING = frozenset({PaymentStatus.PAID, PaymentStatus.PAYMENT_FAILED})
# The statuses of a subscription that is still running at the rail (it may come back to PAID).
RUNNING = frozenset(
    {PaymentStatus.PAID, PaymentStatus.PAYMENT_FAILED, PaymentStatus.PAYMENT_OVERDUE, PaymentStatus.PAUSED}
)


@dataclass(frozen=True)
class PaidSubscriptionFacts:
    reference: str  # the rail's id of the subscription
    status: PaymentStatus
    price_id: str  # which catalog plan it bills (Plan.stripe_price_id)
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool = False
    cancel_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None

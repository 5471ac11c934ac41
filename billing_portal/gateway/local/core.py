"""The base of the local gateway: its settings, its clock, the price catalog it is given, and the
lock order every operation follows (the customer's row, then the object's)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from billing_portal.gateway.base import CatalogPrice, GatewayError, PaymentGateway
from billing_portal.gateway.local import objects
from billing_portal.gateway.store import LocalGatewayObject

# price id -> amount, currency, interval[, product name]; a plain 3-tuple names the product by the price id
PriceCatalog = Callable[[str], CatalogPrice | tuple[int, str, str]]
Deliver = Callable[[bytes, str], None]


def default_price_catalog(price_id: str) -> CatalogPrice:
    return CatalogPrice(1000, "usd", "month")


class Delivery(StrEnum):
    """How the stand-in delivers its events.

    PROMPT: each event once, in the order emitted, as soon as its change commits (the default).
    LATE: as Stripe may, after a failed or slow delivery — events wait (in the store, so a change that
    rolls back leaves none) until `deliver_late()` or the next `advance()`, then arrive out of order
    (newest first) and each twice. https://docs.stripe.com/webhooks#event-ordering,
    https://docs.stripe.com/webhooks#handle-duplicate-events"""

    PROMPT = "prompt"
    LATE = "late"


class WhenRetriesExhausted(StrEnum):
    """The account setting "Manage failed payments → Subscription status" once every retry has
    failed: cancel the subscription, mark it unpaid, or leave it past due.
    https://docs.stripe.com/billing/revenue-recovery/smart-retries"""

    CANCEL = "cancel"
    UNPAID = "unpaid"
    PAST_DUE = "past_due"


# Days after the previous attempt that a failed invoice is tried again: the account's retry schedule
# ("Use a custom retry schedule": 3, 5 and 7 days after the previous attempt, then give up).
RETRY_DAYS = (3, 5, 7)


class LocalCore(PaymentGateway):
    name = "local"

    def __init__(
        self,
        *,
        webhook_secret: str,
        deliver: Deliver,
        base_url: str = "",
        price_catalog: PriceCatalog | None = None,
        clock: Callable[[], datetime] = timezone.now,
        webhook_tolerance: int = 300,  # seconds
        delivery: Delivery | str = Delivery.PROMPT,
        retry_days: tuple[int, ...] = RETRY_DAYS,
        when_retries_exhausted: WhenRetriesExhausted | str = WhenRetriesExhausted.UNPAID,
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
        self.delivery = Delivery(delivery)
        self.retry_days = tuple(retry_days)
        self.when_retries_exhausted = WhenRetriesExhausted(when_retries_exhausted)

    def _now(self) -> datetime:
        return self._clock()

    @contextmanager
    def frozen_at(self, moment: datetime) -> Iterator[None]:
        """Stripe's test clock, frozen: what the stand-in does inside happens at `moment` (a
        subscription begun a month ago, with its invoice of then). `advance` moves it on.
        https://docs.stripe.com/billing/testing/test-clocks"""
        clock, self._clock = self._clock, lambda: moment
        try:
            yield
        finally:
            self._clock = clock

    def _price(self, price_id: str, now: datetime) -> dict[str, Any]:
        """The Stripe price of a catalog price id, and its product (stored, with the name the catalog
        gives it, so invoice lines can say "Growth" as Stripe's do)."""
        try:
            found = CatalogPrice(*self._price_catalog(price_id))
        except (LookupError, ValueError, TypeError, ObjectDoesNotExist) as exc:
            raise GatewayError(f"No such price: '{price_id}'", code="resource_missing") from exc
        product = objects.product_id_for(price_id)
        objects.ensure_product(product, found.product_name or price_id, now)
        return objects.price(
            price_id,
            amount=found.amount,
            currency=found.currency,
            every=found.interval,
            product=product,
            now=now,
        )

    def _lock_with_customer(
        self, object_id: str, object_type: str
    ) -> tuple[LocalGatewayObject, LocalGatewayObject]:
        """Lock the customer's row, then the object's: every operation locks in this order."""
        customer_id = objects.read_row(object_id, object_type).customer_id
        customer_row = objects.lock(customer_id, "customer")
        return customer_row, objects.lock(object_id, object_type)

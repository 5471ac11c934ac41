"""Which payment gateway this deployment uses (settings.PAYMENT_GATEWAY): Stripe, or the local
stand-in for development, the demo and tests.

The stand-in needs two things from the layers above, injected at start-up by billing_portal's
`AppConfig.ready` through `wire_local`: how to deliver the events it emits (the webhook endpoint's
receiver) and what a price id costs (the plan catalog). This module, like the whole package,
imports nothing of ours outside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from billing_portal.gateway.base import CatalogPrice, PaymentGateway

Deliver = Callable[[bytes, str], None]
PriceCatalog = Callable[[str], CatalogPrice]  # price id -> amount, currency, interval, product name


@dataclass
class LocalWiring:
    deliver: Deliver | None = None
    price_catalog: PriceCatalog | None = None


WIRING = LocalWiring()


def wire_local(*, deliver: Deliver, price_catalog: PriceCatalog) -> None:
    """Called once at start-up; the next `get_gateway()` builds the stand-in with these."""
    WIRING.deliver = deliver
    WIRING.price_catalog = price_catalog
    reset()


def _deliver(payload: bytes, signature: str) -> None:
    if WIRING.deliver is None:
        raise RuntimeError("The local gateway has no webhook delivery: billing_portal is not ready.")
    WIRING.deliver(payload, signature)


def _price(price_id: str) -> CatalogPrice:
    if WIRING.price_catalog is None:
        raise RuntimeError("The local gateway has no price catalog: billing_portal is not ready.")
    return WIRING.price_catalog(price_id)


@cache
def _build(
    kind: str,
    secret: str,
    api_key: str,
    tolerance: int,
    delivery: str,
    timeout: int,
    retries: int,
    exhausted: str,
) -> PaymentGateway:
    if kind == "local":
        from billing_portal.gateway.local import LocalGateway

        # Through the module-level functions, so a test that swaps WIRING's delivery is heard.
        return LocalGateway(
            webhook_secret=secret,
            deliver=_deliver,
            price_catalog=_price,
            webhook_tolerance=tolerance,
            delivery=delivery,
            when_retries_exhausted=exhausted,
        )
    if kind == "stripe":
        from billing_portal.gateway.stripe_gateway import StripeGateway

        return StripeGateway(
            api_key=api_key,
            webhook_secret=secret,
            webhook_tolerance=tolerance,
            timeout=timeout,
            max_network_retries=retries,
        )
    raise ValueError(f"PAYMENT_GATEWAY must be 'local' or 'stripe', not {kind!r}")


def get_gateway() -> PaymentGateway:
    return _build(
        settings.PAYMENT_GATEWAY,
        settings.STRIPE_WEBHOOK_SECRET,
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_WEBHOOK_TOLERANCE,
        settings.LOCAL_GATEWAY_DELIVERY,
        settings.STRIPE_TIMEOUT,
        settings.STRIPE_MAX_NETWORK_RETRIES,
        settings.LOCAL_GATEWAY_WHEN_RETRIES_EXHAUSTED,
    )


def reset() -> None:
    """Forget the built gateway (tests that change settings or the wiring)."""
    _build.cache_clear()

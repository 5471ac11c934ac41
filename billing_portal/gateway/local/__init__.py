"""The local payment gateway: Stripe, played in-process, for development, the demo and tests.

It keeps Stripe-shaped objects (the keys of API version `PINNED_API_VERSION`) as LocalGatewayObject
rows and maps them with the same `*_from_stripe` functions as the Stripe gateway, so both answer
alike. Every change emits the events Stripe would send, signed as Stripe signs them, and hands them
to `deliver` once the change has committed — in the order emitted, never for a change that rolled
back.

Besides the interface it offers the operations the hosted-page stand-ins (`/dev/billing/…`) and the
tests need: complete or abandon a checkout, set the customer's card (working or declining), make the
next renewal fail, pay what is open, resume, and `advance` — the clock tick that renews, cancels at
period end and applies scheduled changes.

The package, by concern, each module a layer over the one before:
- `objects` (and `shapes.json`): the objects, their shapes and their store; `periods`, `money`:
  calendar and integer money arithmetic (proration, line wording);
- `core`: settings, clock, catalog, lock order; `idempotency`: the one idempotency wrapper;
- `events`: emitting, signing, delivering and verifying events;
- `invoices`: invoices, cards and collection; `subscriptions`: price changes, schedules,
  cancellation, renewal; `checkout`: customers, the hosted checkout and the portal;
- `clock`: `advance`, Stripe's clock.

What it models of Stripe, with Stripe's page for each behaviour, and where it differs: the fidelity
table in README.md beside this file.

Concurrency: each operation is one transaction that locks (select_for_update) the customer's row
first, then the rows it changes, so two requests cannot renew or charge the same thing twice.

This package imports nothing of ours outside the gateway package."""

from __future__ import annotations

from billing_portal.gateway.local.clock import MAX_CYCLES_PER_ADVANCE, LocalClock
from billing_portal.gateway.local.core import Delivery, PriceCatalog, default_price_catalog
from billing_portal.gateway.local.money import stripe_amount as _money
from billing_portal.gateway.local.periods import add_months


class LocalGateway(LocalClock):
    """The stand-in for Stripe (see the package's docstring)."""

    name = "local"


__all__ = [
    "MAX_CYCLES_PER_ADVANCE",
    "Delivery",
    "LocalGateway",
    "PriceCatalog",
    "_money",
    "add_months",
    "default_price_catalog",
]

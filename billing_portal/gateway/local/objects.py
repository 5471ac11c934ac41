"""The local gateway's objects and their store.

Objects are Stripe-shaped dicts (every key of the pinned API version, from `shapes.json`) kept as
LocalGatewayObject rows, one row per object, found by id and type. The builders here copy a shape
and fill in what varies; the operations in the other modules change them and save the row.

Nothing here emits events or charges anything: it is the data layer of the stand-in."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction

from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.store import LocalGatewayObject

ENDED = frozenset({"canceled", "incomplete_expired"})
OVERDUE = frozenset({"past_due", "unpaid"})
LIVE_SCHEDULE = ("not_started", "active")

_LABELS = {"checkout.session": "checkout session", "subscription_schedule": "subscription schedule"}


@cache
def _shapes() -> dict[str, Any]:
    shapes: dict[str, Any] = json.loads((Path(__file__).parent / "shapes.json").read_text())
    return shapes


def shape(kind: str, **fields: Any) -> dict[str, Any]:
    """A fresh copy of the `kind` object's shape with `fields` set (top-level keys it has)."""
    data: dict[str, Any] = copy.deepcopy(_shapes()[kind])
    unknown = set(fields) - set(data)
    if unknown:
        raise KeyError(f"{kind} has no {sorted(unknown)}")
    data.update(fields)
    return data


# --- ids and times ----------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_local_{secrets.token_hex(7)}"


def ts(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"an aware datetime is needed, got {moment!r}")
    return int(moment.timestamp())


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


# --- the store ----------------------------------------------------------------------------------------


def missing(object_type: str, object_id: str) -> GatewayError:
    """Stripe's 404 for an id it does not know ("No such subscription: 'sub_…'")."""
    return GatewayError(
        f"No such {_LABELS.get(object_type, object_type)}: '{object_id}'", code="resource_missing"
    )


def read_row(object_id: str, object_type: str) -> LocalGatewayObject:
    row = LocalGatewayObject.objects.filter(object_id=object_id, object_type=object_type).first()
    if row is None:
        raise missing(object_type, object_id)
    return row


def read(object_id: str, object_type: str) -> dict[str, Any]:
    data: dict[str, Any] = read_row(object_id, object_type).data
    return data


def lock(object_id: str, object_type: str) -> LocalGatewayObject:
    row = (
        LocalGatewayObject.objects.select_for_update()
        .filter(object_id=object_id, object_type=object_type)
        .first()
    )
    if row is None:
        raise missing(object_type, object_id)
    return row


def insert(object_type: str, data: dict[str, Any], *, customer_id: str) -> LocalGatewayObject:
    return LocalGatewayObject.objects.create(
        object_type=object_type, object_id=data["id"], customer_id=customer_id or "", data=data
    )


def item(sub: Mapping[str, Any]) -> dict[str, Any]:
    """Our subscriptions have one item (checkout sells quantity 1 of one price)."""
    first: dict[str, Any] = sub["items"]["data"][0]
    return first


def interval(price: Mapping[str, Any]) -> str:
    return str(price["recurring"]["interval"])


# --- catalog objects: prices, their products and plans ---------------------------------------------


def product_id_for(price_id: str) -> str:
    return "prod_local_" + hashlib.sha256(price_id.encode()).hexdigest()[:14]


def price(
    price_id: str, *, amount: int, currency: str, every: str, product: str, now: datetime
) -> dict[str, Any]:
    data = shape(
        "price",
        id=price_id,
        created=ts(now),
        currency=currency.lower(),
        product=product,
        unit_amount=amount,
        unit_amount_decimal=str(amount),
    )
    data["recurring"]["interval"] = every
    return data


def plan_of(price: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy `plan` twin of a recurring price, which Stripe still puts on subscription items."""
    return shape(
        "plan",
        id=price["id"],
        amount=price["unit_amount"],
        amount_decimal=str(price["unit_amount"]),
        created=price["created"],
        currency=price["currency"],
        interval=interval(price),
        product=price["product"],
    )


def ensure_product(product_id: str, name: str, now: datetime) -> None:
    """The product of a catalog price, created once; a renamed plan renames it (lines already
    written keep the old words, as at Stripe)."""
    row = LocalGatewayObject.objects.filter(object_id=product_id, object_type="product").first()
    if row is not None:
        if row.data.get("name") != name:
            row.data["name"] = name
            row.data["updated"] = ts(now)
            row.save(update_fields=["data", "updated_at"])
        return
    data = shape("product", id=product_id, created=ts(now), name=name, updated=ts(now))
    try:
        with transaction.atomic():
            insert("product", data, customer_id="")
    except IntegrityError:
        pass  # a concurrent request stored it first


def product_name(price: Mapping[str, Any]) -> str:
    """The name of the price's product (price → product → name), or the price id when the product is
    not in the store (a price from before products were kept)."""
    row = LocalGatewayObject.objects.filter(
        object_id=price.get("product") or "", object_type="product"
    ).first()
    return str(row.data.get("name") or price["id"]) if row is not None else str(price["id"])


# --- customers and cards ------------------------------------------------------------------------------


def customer(
    customer_id: str, *, email: str, name: str, metadata: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    return shape(
        "customer",
        id=customer_id,
        created=ts(now),
        email=email or None,
        invoice_prefix=f"LOCAL-{customer_id.removeprefix('cus_local_')}",
        metadata=dict(metadata),
        name=name or None,
    )


def payment_method(
    pm_id: str, *, customer: Mapping[str, Any], last4: str, behaviour: str, now: datetime
) -> dict[str, Any]:
    """A card of the customer. `behaviour` says what a charge on it does, as Stripe's test cards do:
    `pays`, `declines`, or `requires_action` (3D Secure: the customer must confirm each payment)."""
    data = shape(
        "payment_method",
        id=pm_id,
        created=ts(now),
        customer=customer["id"],
        metadata={"local_card_behaviour": behaviour},
    )
    data["billing_details"].update(email=customer.get("email"), name=customer.get("name"))
    data["card"].update(exp_year=now.year + 3, last4=last4)
    return data


# --- subscriptions and schedules ----------------------------------------------------------------------


def subscription(
    sub_id: str,
    *,
    customer_id: str,
    price: Mapping[str, Any],
    start: datetime,
    end: datetime,
    metadata: Mapping[str, str],
    latest_invoice: str,
    now: datetime,
) -> dict[str, Any]:
    sub_item = shape(
        "subscription_item",
        id=new_id("si"),
        created=ts(now),
        current_period_start=ts(start),
        current_period_end=ts(end),
        plan=plan_of(price),
        price=dict(price),
        subscription=sub_id,
    )
    data = shape(
        "subscription",
        id=sub_id,
        billing_cycle_anchor=ts(start),
        created=ts(now),
        currency=price["currency"],
        customer=customer_id,
        latest_invoice=latest_invoice,
        metadata=dict(metadata),
        start_date=ts(now),
    )
    data["items"].update(data=[sub_item], url=f"/v1/subscription_items?subscription={sub_id}")
    return data


def phase(price: Mapping[str, Any], *, start: int, end: int) -> dict[str, Any]:
    return shape(
        "schedule_phase",
        currency=price["currency"],
        end_date=end,
        items=[shape("schedule_phase_item", price=price["id"])],
        start_date=start,
    )


def schedule(
    schedule_id: str, *, sub: Mapping[str, Any], phases: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    return shape(
        "subscription_schedule",
        id=schedule_id,
        created=ts(now),
        current_phase={"start_date": phases[0]["start_date"], "end_date": phases[0]["end_date"]},
        customer=sub["customer"],
        phases=phases,
        subscription=sub["id"],
    )


# --- checkout sessions --------------------------------------------------------------------------------


def checkout_session(
    session_id: str,
    *,
    customer_id: str,
    price: Mapping[str, Any],
    description: str,
    success_url: str,
    cancel_url: str,
    client_reference_id: str,
    metadata: Mapping[str, str],
    expires: datetime,
    url: str,
    now: datetime,
) -> dict[str, Any]:
    line = shape(
        "checkout.line_item",
        id=new_id("li"),
        amount_subtotal=price["unit_amount"],
        amount_total=price["unit_amount"],
        currency=price["currency"],
        description=description,
        price=dict(price),
    )
    return shape(
        "checkout.session",
        id=session_id,
        amount_subtotal=price["unit_amount"],
        amount_total=price["unit_amount"],
        cancel_url=cancel_url,
        client_reference_id=client_reference_id or None,
        created=ts(now),
        currency=price["currency"],
        customer=customer_id,
        expires_at=ts(expires),
        # Stripe returns the line items only when expanded; the local session keeps them so that
        # completing it knows what was bought.
        line_items={
            "object": "list",
            "data": [line],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        },
        metadata=dict(metadata),
        # What the request asked for (not in Stripe's object): the subscription's own metadata.
        subscription_data={"metadata": dict(metadata)},
        success_url=success_url,
        url=url,
    )


def customer_details(customer: Mapping[str, Any]) -> dict[str, Any]:
    return shape("checkout.customer_details", email=customer.get("email"), name=customer.get("name"))


# --- invoices -----------------------------------------------------------------------------------------


def invoice_line(
    spec: Mapping[str, Any], *, invoice_id: str, currency: str, sub: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One line of an invoice from its spec: amount, description, start, end, and for a
    subscription's line its price and whether it is a proration."""
    line_price = spec.get("price")
    if sub is not None:
        parent = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": new_id("ii") if spec.get("proration") else None,
                "proration": bool(spec.get("proration")),
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item(sub)["id"],
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": new_id("ii"),
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        }
    return shape(
        "line_item",
        id=new_id("il"),
        amount=spec["amount"],
        currency=currency,
        description=spec["description"],
        invoice=invoice_id,
        metadata=dict(spec.get("metadata") or {}),
        parent=parent,
        period={"start": ts(spec["start"]), "end": ts(spec["end"])},
        pricing={
            "type": "price_details",
            "price_details": {"price": line_price["id"], "product": line_price["product"]}
            if line_price
            else None,
            "unit_amount_decimal": str(line_price["unit_amount"]) if line_price else str(spec["amount"]),
        },
        subtotal=spec["amount"],
    )


def invoice(
    invoice_id: str,
    *,
    customer: Mapping[str, Any],
    number: str,
    currency: str,
    billing_reason: str,
    sub: Mapping[str, Any] | None,
    lines: list[dict[str, Any]],
    period: tuple[datetime, datetime],
    description: str | None,
    metadata: Mapping[str, str] | None,
    now: datetime,
) -> dict[str, Any]:
    """A finalized (open) invoice of `lines`."""
    total = sum(line["amount"] for line in lines)
    data = shape(
        "invoice",
        id=invoice_id,
        amount_due=total,
        amount_remaining=total,
        billing_reason=billing_reason,
        created=ts(now),
        currency=currency,
        customer=customer["id"],
        customer_email=customer.get("email"),
        customer_name=customer.get("name"),
        description=description,
        effective_at=ts(now),
        metadata=dict(metadata or {}),
        number=number,
        parent=None
        if sub is None
        else {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub.get("metadata") or {}), "subscription": sub["id"]},
        },
        period_end=ts(period[1]),
        period_start=ts(period[0]),
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_excluding_tax=total,
        webhooks_delivered_at=ts(now),
    )
    data["lines"].update(data=lines, total_count=len(lines), url=f"/v1/invoices/{invoice_id}/lines")
    data["status_transitions"]["finalized_at"] = ts(now)
    return data


def mark_paid(invoice: dict[str, Any], now: datetime) -> None:
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        attempted=True,
        attempt_count=max(invoice["attempt_count"], 1),
        next_payment_attempt=None,
    )
    invoice["status_transitions"]["paid_at"] = ts(now)


def mark_void(invoice: dict[str, Any], now: datetime) -> None:
    """Void: nothing is owed or collected any more (no next attempt, automatic collection off), as
    Stripe's voided invoice reads. https://docs.stripe.com/api/invoices/void"""
    invoice.update(status="void", amount_remaining=0, next_payment_attempt=None, auto_advance=False)
    invoice["status_transitions"]["voided_at"] = ts(now)


# --- events -------------------------------------------------------------------------------------------


def event(
    event_id: str, *, event_type: str, data: dict[str, Any], api_version: str, now: datetime
) -> dict[str, Any]:
    return shape("event", id=event_id, api_version=api_version, created=ts(now), data=data, type=event_type)

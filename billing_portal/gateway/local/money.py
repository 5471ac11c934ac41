"""Integer money for the local gateway: proration to the second, amounts as Stripe writes them on
invoice lines, and the lines' wording. Minor units in, minor units out; no float decides a cent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.local.objects import dt, interval, product_name
from billing_portal.gateway.local.periods import period_end_after

_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})  # fmt: skip
_SYMBOLS = {"usd": "$", "eur": "\u20ac", "gbp": "\u00a3", "jpy": "\u00a5"}
_SECOND = timedelta(seconds=1)


def stripe_amount(amount: int, currency: str) -> str:
    """An amount as Stripe writes it on a line: "$199.00", "\u00a58,000", "199.00 CHF" (integer
    arithmetic: minor units in, no float on the way)."""
    code = currency.lower()
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if code in _ZERO_DECIMAL:
        number = f"{amount:,}"
    else:
        unit = 1000 if code in _THREE_DECIMAL else 100
        number = f"{amount // unit:,}.{amount % unit:0{len(str(unit)) - 1}d}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"


def div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves to even (Stripe rounds a
    proration once, to the nearest minor unit)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def seconds(span: timedelta) -> int:
    """Whole seconds of a span, by integer division (no float on the way)."""
    return span // _SECOND


# How Stripe words the lines of a subscription's invoices, with the price's product name:
# "1 × Growth (at $199.00 / month)", "Unused time on Starter after 29 Nov 2026",  # noqa: RUF003  (Stripe's own sign)
# "Remaining time on Growth after 29 Nov 2026".
# https://docs.stripe.com/billing/subscriptions/prorations
def cycle_description(price: Mapping[str, Any]) -> str:
    amount = stripe_amount(price["unit_amount"], price["currency"])
    return f"1 \u00d7 {product_name(price)} (at {amount} / {interval(price)})"


def unused_description(price: Mapping[str, Any], now: datetime) -> str:
    return f"Unused time on {product_name(price)} after {_day(now)}"


def remaining_description(price: Mapping[str, Any], now: datetime) -> str:
    return f"Remaining time on {product_name(price)} after {_day(now)}"


def _day(moment: datetime) -> str:
    return moment.strftime("%d %b %Y")


@dataclass(frozen=True)
class Proration:
    amount: int  # minor units the change invoices now (negative: a credit)
    lines: list[dict[str, Any]]  # the invoice's line specs, adding up to `amount`
    restart: tuple[datetime, datetime] | None  # the new period when the interval changes


def prorate(sub_item: Mapping[str, Any], new_price: Mapping[str, Any], now: datetime) -> Proration:
    """What switching the item to `new_price` at `now` invoices, to the second as Stripe prorates:
    the change itself and its preview both ask this, so they cannot disagree.
    https://docs.stripe.com/billing/subscriptions/prorations"""
    old_price = sub_item["price"]
    if new_price["currency"] != old_price["currency"]:
        raise GatewayError("The new price must be in the subscription's currency.", code="currency_mismatch")
    start, end = dt(sub_item["current_period_start"]), dt(sub_item["current_period_end"])
    total = max(seconds(end - start), 1)
    remaining = min(max(seconds(end - now), 0), total)
    # Integer seconds and round-half-even on exact fractions: no float decides a cent.
    unused = div_round(old_price["unit_amount"] * remaining, total)
    unused_line = {
        "amount": -unused,
        "description": unused_description(old_price, now),
        "start": now,
        "end": end,
        "price": old_price,
        "proration": True,
    }
    if interval(new_price) != interval(old_price):
        # A different interval restarts the billing cycle now, at the full new price, less what is
        # left of the current period.
        new_end = period_end_after(now, now, interval(new_price))
        cycle_line = {
            "amount": new_price["unit_amount"],
            "description": cycle_description(new_price),
            "start": now,
            "end": new_end,
            "price": new_price,
            "proration": False,
        }
        return Proration(new_price["unit_amount"] - unused, [unused_line, cycle_line], (now, new_end))
    # The difference for the time left of the period, as one amount rounded once; the lines show its
    # two halves and add up to it.
    amount = div_round((new_price["unit_amount"] - old_price["unit_amount"]) * remaining, total)
    remaining_line = {
        "amount": amount + unused,
        "description": remaining_description(new_price, now),
        "start": now,
        "end": end,
        "price": new_price,
        "proration": True,
    }
    return Proration(amount, [unused_line, remaining_line], None)

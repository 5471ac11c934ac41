"""`{{ amount|money:currency }}`: an integer amount in minor units shown as "$1,234.56"."""

from __future__ import annotations

from django import template

from plans.money import format_money

register = template.Library()


@register.filter
def money(amount: object, currency: str) -> str:
    """Empty for a missing amount or currency, and for anything that is not an integer: a float or
    a Decimal here would mean someone already left minor units, so it is not guessed at."""
    if not isinstance(amount, int) or isinstance(amount, bool) or not currency:
        return ""
    return format_money(amount, str(currency))

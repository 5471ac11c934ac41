"""Integer minor units to text: the `money` template filter and the CSV decimal strings."""

import pytest
from django.template import Context, Template

from plans.money import decimal_string, format_money, minor_unit_digits


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (123456, "usd", "$1,234.56"),
        (1200, "eur", "€12.00"),
        (5, "gbp", "£0.05"),
        (0, "usd", "$0.00"),
        (100000000, "usd", "$1,000,000.00"),
        (-1250, "usd", "-$12.50"),
        (-5, "eur", "-€0.05"),
        (1200, "chf", "12.00 CHF"),
        (1200, "jpy", "1,200 JPY"),
        (1234567, "krw", "1,234,567 KRW"),
        (-300, "jpy", "-300 JPY"),
        (12345, "kwd", "12.345 KWD"),
        (1200, "USD", "$12.00"),
    ],
)
def test_format_money_uses_the_currencys_minor_unit(amount, currency, shown):
    assert format_money(amount, currency) == shown


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1250, "usd", "12.50"),
        (5, "usd", "0.05"),
        (0, "eur", "0.00"),
        (-1250, "usd", "-12.50"),
        (-5, "usd", "-0.05"),
        (123456789, "usd", "1234567.89"),
        (1200, "jpy", "1200"),
        (1000, "bhd", "1.000"),
    ],
)
def test_decimal_string_has_no_separators_and_exact_digits(amount, currency, text):
    assert decimal_string(amount, currency) == text


def test_amounts_beyond_float_precision_stay_exact():
    # 2**53 + 1 cannot be represented as a float; integer arithmetic keeps the last cent.
    assert decimal_string(2**53 + 1, "usd") == "90071992547409.93"


def test_minor_unit_digits():
    assert [minor_unit_digits(c) for c in ("usd", "JPY", "krw", "kwd", "xyz")] == [2, 0, 0, 3, 2]


def _render(amount, currency):
    return Template("{% load money %}{{ amount|money:currency }}").render(
        Context({"amount": amount, "currency": currency})
    )


def test_money_filter_formats_integer_minor_units():
    assert _render(123456, "usd") == "$1,234.56"
    assert _render(1200, "eur") == "€12.00"
    assert _render(999, "gbp") == "£9.99"
    assert _render(1200, "jpy") == "1,200 JPY"


@pytest.mark.parametrize(
    ("amount", "currency"), [(None, "usd"), (12.5, "usd"), ("12", "usd"), (1200, ""), (True, "usd")]
)
def test_money_filter_renders_nothing_for_what_is_not_an_integer_amount(amount, currency):
    assert _render(amount, currency) == ""

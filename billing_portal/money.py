"""Money as the gateway keeps it: an integer amount in the currency's minor unit and an ISO code.

Integer arithmetic only (divmod on the minor units), so a displayed or exported amount is exactly
the stored one; floats never touch an amount."""

from __future__ import annotations

# Currencies whose minor unit is the major unit (Stripe's list): 1200 JPY is ¥1,200, not ¥12.00.
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# Currencies with three decimals: 1000 minor units of BHD are 1.000 BHD.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Shown before the amount; every other currency is shown as "12.00 CHF".
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def minor_unit_digits(currency: str) -> int:
    """How many decimal digits the minor unit of `currency` has (0, 2 or 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def _split(amount: int, currency: str) -> tuple[str, int, str]:
    """(sign, major units, zero-padded fraction digits) of `amount` minor units."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount < 0 else ""
    if digits == 0:
        return sign, abs(amount), ""
    major, minor = divmod(abs(amount), 10**digits)
    return sign, major, f"{minor:0{digits}d}"


def decimal_string(amount: int, currency: str) -> str:
    """The plain decimal form for exports: 1250 usd → "12.50", -5 usd → "-0.05", 1200 jpy → "1200"."""
    sign, major, fraction = _split(amount, currency)
    return f"{sign}{major}.{fraction}" if fraction else f"{sign}{major}"


def format_money(amount: int, currency: str) -> str:
    """The form for people: 123456 usd → "$1,234.56", 1200 eur → "€12.00", 1200 jpy → "1,200 JPY"."""
    sign, major, fraction = _split(amount, currency)
    number = f"{major:,}.{fraction}" if fraction else f"{major:,}"
    symbol = SYMBOLS.get(currency.lower())
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {currency.upper()}"

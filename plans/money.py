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


# --- credits: stored as integer thousandths of a credit ------------------------------------------

CREDIT = 1000  # thousandths in one credit
# The most credits one staff action gives or takes at a time (an adjustment, a contract's month): the
# API's bound on a quantity of credits, far below the ledger's bigint.
MAX_CREDITS_AT_ONCE = 1_000_000_000 * CREDIT


def credits_string(thousandths: int) -> str:
    """The exact decimal form the API and exports use: 49900 → "49.9", 100 → "0.1", 2000000 → "2000"."""
    sign = "-" if thousandths < 0 else ""
    whole, frac = divmod(abs(thousandths), CREDIT)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def credits_figure(thousandths: int) -> str:
    """The number as people read it, without the word: 2000000 → "2,000", 12500 → "12.5"."""
    sign = "-" if thousandths < 0 else ""
    whole, frac = divmod(abs(thousandths), CREDIT)
    return f"{sign}{whole:,}" + (f".{frac:03d}".rstrip("0") if frac else "")


def format_credits(thousandths: int) -> str:
    """The form for people: 2000000 → "2,000 credits", 12500 → "12.5 credits", 1000 → "1 credit"."""
    text = credits_figure(thousandths)
    return f"{text} credit" if thousandths == CREDIT else f"{text} credits"


def parse_money(text: str, currency: str) -> int:
    """ "29.00" usd → 2900 minor units, exactly: a plain non-negative decimal with at most the
    currency's minor-unit digits (no sign, exponent or grouping). The inverse of `decimal_string`."""
    digits = minor_unit_digits(currency)
    whole, dot, frac = text.strip().partition(".")
    plain = whole.isascii() and whole.isdigit() and (not dot or (frac.isascii() and frac.isdigit()))
    if not plain or len(frac) > digits or len(whole) > 12:
        places = f"at most {digits} decimals" if digits else "no decimals"
        raise ValueError(
            f"An amount in {currency.upper()} with {places}, e.g. {decimal_string(2900, currency)}."
        )
    return int(whole) * 10**digits + int(frac.ljust(digits, "0") or "0")


def parse_credits(text: str) -> int:
    """ "2.5" → 2500 thousandths, exactly; refuses anything that is not a plain decimal with at most
    three decimals (no exponent, no sign other than a leading minus, no float rounding)."""
    value = text.strip()
    negative = value.startswith("-")
    digits = value[1:] if negative else value
    whole, _, frac = digits.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 3 or (digits.endswith(".")):
        raise ValueError(f"{text!r} is not a quantity of credits with at most three decimals")
    if not whole.isascii() or not frac.isascii():
        raise ValueError(f"{text!r} is not a quantity of credits with at most three decimals")
    amount = int(whole) * CREDIT + int(frac.ljust(3, "0") or "0")
    return -amount if negative else amount

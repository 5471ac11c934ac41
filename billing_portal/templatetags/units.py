"""Template filters for exact quantities stored as integers."""

from django import template

register = template.Library()


@register.filter
def credits(thousandths: object) -> str:
    """Thousandths of a credit → "2,000 credits" / "12.5 credits" / "1 credit" (exact, no floats)."""
    if not isinstance(thousandths, int):
        return ""
    whole, frac = divmod(abs(thousandths), 1000)
    sign = "-" if thousandths < 0 else ""
    text = f"{sign}{whole:,}" + (f".{frac:03d}".rstrip("0") if frac else "")
    return f"{text} credit" if thousandths == 1000 else f"{text} credits"


@register.filter
def thousands(value: object) -> str:
    """1500 → "1,500"."""
    return f"{value:,}" if isinstance(value, int) else ""

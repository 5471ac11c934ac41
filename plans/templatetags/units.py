"""Template filters for exact quantities stored as integers."""

from django import template

from plans.money import format_credits

register = template.Library()


@register.filter
def credits(thousandths: object) -> str:
    """Thousandths of a credit → "2,000 credits" / "12.5 credits" / "1 credit" (exact, no floats)."""
    if not isinstance(thousandths, int) or isinstance(thousandths, bool):
        return ""
    return format_credits(thousandths)


@register.filter
def thousands(value: object) -> str:
    """1500 → "1,500"."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else ""

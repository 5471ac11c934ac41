"""System checks: the local payment gateway is for development only."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def local_gateway_only_in_debug(app_configs, **kwargs):
    errors = []
    if settings.PAYMENT_GATEWAY == "local" and not settings.DEBUG:
        errors.append(
            Error(
                "The local payment gateway cannot run with DEBUG off.",
                hint="Set PAYMENT_GATEWAY=stripe with STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.",
                id="billing_portal.E001",
            )
        )
    if settings.PAYMENT_GATEWAY == "stripe" and not settings.DEBUG:
        for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
            value = getattr(settings, name)
            if not value or "local" in value:
                errors.append(Error(f"{name} must be set for the Stripe gateway.", id="billing_portal.E002"))
    if settings.PAYMENT_GATEWAY not in ("local", "stripe"):
        errors.append(Error("PAYMENT_GATEWAY must be 'local' or 'stripe'.", id="billing_portal.E003"))
    return errors

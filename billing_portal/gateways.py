"""Which payment gateway this deployment uses, wired to our catalog and webhook view."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from billing_portal.gateway.base import PaymentGateway


def _price_catalog(price_id: str) -> tuple[int, str, str]:
    from plans.models import Plan

    plan = Plan.objects.filter(stripe_price_id=price_id).first()
    if plan is None:
        return 0, "usd", "month"
    return plan.price_amount, plan.currency, plan.interval if plan.interval != "none" else "month"


def _deliver_in_process(payload: bytes, signature: str) -> None:
    """The local gateway's webhook delivery: through the real webhook view, signature and all."""
    from django.test import RequestFactory  # builds a real HttpRequest; no test machinery involved

    from billing_portal.views import stripe_webhook

    request = RequestFactory().post(
        "/billing/webhooks/stripe/",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    response = stripe_webhook(request)
    if response.status_code != 200:
        raise RuntimeError(f"webhook delivery refused: {response.status_code} {response.content[:200]!r}")


@cache
def _build(kind: str, secret: str, api_key: str, site_url: str) -> PaymentGateway:
    if kind == "local":
        from billing_portal.gateway.local import LocalGateway

        return LocalGateway(
            webhook_secret=secret,
            deliver=_deliver_in_process,
            base_url=site_url,
            price_catalog=_price_catalog,
        )
    from billing_portal.gateway.stripe_gateway import StripeGateway

    return StripeGateway(
        api_key=api_key, webhook_secret=secret, webhook_tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
    )


def get_gateway() -> PaymentGateway:
    return _build(settings.PAYMENT_GATEWAY, settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_SECRET_KEY, "")

"""System checks (DESIGN, "Stripe without the internet"): the local gateway is refused with DEBUG off,
and the Stripe gateway needs its keys."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks


def billing_errors() -> list[tuple[str, str]]:
    return [(e.id, e.msg) for e in run_checks() if (e.id or "").startswith("billing_portal.")]


def test_local_gateway_with_debug_off_is_an_error(settings):
    settings.DEBUG = False
    settings.PAYMENT_GATEWAY = "local"

    assert billing_errors() == [
        ("billing_portal.E001", "The local payment gateway cannot run with DEBUG off.")
    ]


@pytest.mark.parametrize(
    ("secret_key", "webhook_secret", "missing"),
    [
        ("", "", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]),
        ("sk_live_123", "", ["STRIPE_WEBHOOK_SECRET"]),
        ("", "whsec_live_123", ["STRIPE_SECRET_KEY"]),
        # The development default of the webhook secret is not a secret.
        ("sk_live_123", "whsec_local_development_only", ["STRIPE_WEBHOOK_SECRET"]),
    ],
)
def test_stripe_gateway_without_its_keys_is_an_error(settings, secret_key, webhook_secret, missing):
    settings.DEBUG = False
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = secret_key
    settings.STRIPE_WEBHOOK_SECRET = webhook_secret

    assert billing_errors() == [
        ("billing_portal.E002", f"{name} must be set for the Stripe gateway.") for name in missing
    ]


def test_stripe_gateway_with_its_keys_and_debug_off_passes(settings):
    settings.DEBUG = False
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_live_123"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_live_123"

    assert billing_errors() == []


def test_local_gateway_with_debug_on_passes(settings):
    settings.DEBUG = True
    settings.PAYMENT_GATEWAY = "local"

    assert billing_errors() == []


def test_an_unknown_gateway_is_an_error(settings):
    settings.PAYMENT_GATEWAY = "paypal"

    assert [error_id for error_id, _ in billing_errors()] == ["billing_portal.E003"]

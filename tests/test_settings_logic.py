"""The decisions config/settings.py makes from the environment, as functions called directly:
persistent database connections, the payment settings a deployment may start with, the
Content-Security-Policy, and where a worker's printed output is logged."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from config.settings import (
    DEVELOPMENT_WEBHOOK_SECRET,
    conn_max_age,
    content_security_policy,
    payment_settings_problems,
    stripe_call_problems,
)

STRIPE_PAGES = ["https://checkout.stripe.com", "https://billing.stripe.com"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["manage.py", "runserver", "127.0.0.1:8000"], 0),  # a thread per request: never kept
        (["manage.py", "runserver"], 0),
        (["/usr/bin/gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000"], 60),
        (["/opt/venv/bin/celery", "-A", "config", "worker"], 60),
        (["manage.py", "migrate", "--noinput"], 60),
        (["manage.py", "shell", "-c", "runserver"], 60),
        (["manage.py"], 60),
        ([], 60),
    ],
)
def test_persistent_connections_everywhere_but_runserver(argv, expected):
    assert conn_max_age(argv, 60) == expected


def test_the_test_suites_own_settings_keep_connections():
    """pytest is not runserver: the setting as the suite imported it (PostgreSQL, DATABASE_CONN_MAX_AGE)."""
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == int(os.environ.get("DATABASE_CONN_MAX_AGE", "60"))


@pytest.mark.parametrize(
    ("debug", "gateway", "secret_key", "webhook_secret", "problems"),
    [
        (True, "local", "", DEVELOPMENT_WEBHOOK_SECRET, []),
        (True, "stripe", "", "", []),
        (False, "stripe", "sk_live_1", "whsec_live_1", []),
        (
            False,
            "stripe",
            "",
            "",
            [
                "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set when DEBUG is off (PAYMENT_GATEWAY=stripe)."
            ],
        ),
        (
            False,
            "stripe",
            "sk_live_1",
            DEVELOPMENT_WEBHOOK_SECRET,
            ["STRIPE_WEBHOOK_SECRET must be set when DEBUG is off (PAYMENT_GATEWAY=stripe)."],
        ),
        (
            False,
            "stripe",
            "",
            "whsec_live_1",
            ["STRIPE_SECRET_KEY must be set when DEBUG is off (PAYMENT_GATEWAY=stripe)."],
        ),
        (
            False,
            "local",
            "",
            DEVELOPMENT_WEBHOOK_SECRET,
            ["PAYMENT_GATEWAY=local is the development stand-in: it cannot run with DEBUG off."],
        ),
        (True, "paypal", "", "", ["PAYMENT_GATEWAY must be 'local' or 'stripe', not 'paypal'."]),
    ],
)
def test_payment_settings_a_deployment_may_start_with(debug, gateway, secret_key, webhook_secret, problems):
    assert (
        payment_settings_problems(
            debug=debug, gateway=gateway, secret_key=secret_key, webhook_secret=webhook_secret
        )
        == problems
    )


def test_the_csp_allows_our_origin_only():
    assert content_security_policy(gateway="local", hosted_origins=STRIPE_PAGES) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }


def test_with_stripe_forms_may_also_lead_to_stripes_hosted_pages():
    """Subscribe and Manage POST to us and we redirect to Checkout or the customer portal; Chrome holds
    that redirect to form-action."""
    policy = content_security_policy(gateway="stripe", hosted_origins=STRIPE_PAGES)

    assert policy["form-action"] == ["'self'", "https://checkout.stripe.com", "https://billing.stripe.com"]
    assert policy == content_security_policy(gateway="local", hosted_origins=STRIPE_PAGES) | {
        "form-action": policy["form-action"]
    }


def test_a_workers_printed_output_is_logged_at_info():
    """The console mailer prints each email; Celery logs a worker's stdout at WARNING by default."""
    from config.celery import app

    assert settings.CELERY_WORKER_REDIRECT_STDOUTS_LEVEL == "INFO"
    assert app.conf.worker_redirect_stdouts_level == "INFO"


@pytest.mark.parametrize(
    ("timeout", "retries", "refused"),
    [(10, 2, False), (15, 1, False), (10, 3, True), (30, 1, True), (0, 2, True), (80, 0, True)],
)
def test_a_stripe_call_must_give_up_before_gunicorn_kills_the_worker(timeout, retries, refused):
    """Issue 7, defect 9: every try at its timeouts plus the backoff stays under 50 s (gunicorn: 60 s)."""
    found = stripe_call_problems(timeout=timeout, retries=retries)
    assert bool(found) is refused
    if refused:
        assert found[0].startswith(f"STRIPE_TIMEOUT={timeout} and STRIPE_MAX_NETWORK_RETRIES={retries} let")

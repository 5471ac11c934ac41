"""Production settings pass Django's deployment checklist, and refuse to load without a SECRET_KEY."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from config.settings import content_security_policy

BASE_DIR = Path(__file__).resolve().parent.parent

# Everything the settings read from the environment; each test starts from none of them.
APP_VARIABLES = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SITE_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "DEFAULT_FROM_EMAIL",
    "PAYMENT_GATEWAY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "CELERY_TASK_ALWAYS_EAGER",
    "VAR_DIR",
    "STATIC_ROOT",
    # Set by the test harness (conftest.py, for Playwright); never in a deployment.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "staticfiles"),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_reports_no_issues_with_production_settings(tmp_path):
    env = base_env(tmp_path)
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(45),  # 60 characters
        ALLOWED_HOSTS="billing.example.com",
        CSRF_TRUSTED_ORIGINS="https://billing.example.com",
        SITE_URL="https://billing.example.com",
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/allowance"),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        EMAIL_URL="smtp+tls://u:p@smtp.example.com:587",
        DEFAULT_FROM_EMAIL="Allowance <billing@example.com>",
        # Production takes money through Stripe; the local gateway is refused when DEBUG is off.
        PAYMENT_GATEWAY="stripe",
        STRIPE_SECRET_KEY="sk_test_" + secrets.token_hex(24),
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_hex(16),
    )
    assert len(env["SECRET_KEY"]) == 60

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_settings_refuse_to_load_without_secret_key_when_debug_is_off(tmp_path):
    env = base_env(tmp_path)
    env["DEBUG"] = "false"

    result = manage("check", env=env)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "SECRET_KEY" in output, output


# --- the payment settings: refused when the app is imported, as gunicorn imports it ----------------


def import_wsgi(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What gunicorn does (`config.wsgi:application`): no manage.py, so no system check runs."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.wsgi; from django.conf import settings; print(settings.PAYMENT_GATEWAY)",
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def production_env(tmp_path: Path, **stripe: str) -> dict[str, str]:
    env = base_env(tmp_path)
    env.update(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(45), **stripe)
    return env


def test_the_app_refuses_to_start_with_debug_off_and_no_stripe_keys(tmp_path):
    """The public development webhook secret was the default: anyone could sign events for us."""
    result = import_wsgi(production_env(tmp_path))

    assert result.returncode != 0, result.stdout
    assert (
        "ImproperlyConfigured: STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set when DEBUG is off"
        in (result.stderr)
    )


def test_the_app_refuses_the_public_development_webhook_secret_with_debug_off(tmp_path):
    env = production_env(
        tmp_path, STRIPE_SECRET_KEY="sk_live_123", STRIPE_WEBHOOK_SECRET="whsec_local_development_only"
    )

    result = import_wsgi(env)

    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured: STRIPE_WEBHOOK_SECRET must be set when DEBUG is off" in result.stderr


def test_the_app_refuses_the_local_gateway_with_debug_off(tmp_path):
    result = import_wsgi(production_env(tmp_path, PAYMENT_GATEWAY="local"))

    assert result.returncode != 0, result.stdout
    assert "PAYMENT_GATEWAY=local is the development stand-in: it cannot run with DEBUG off." in result.stderr


def test_the_app_starts_with_debug_off_and_both_stripe_keys(tmp_path):
    env = production_env(tmp_path, STRIPE_SECRET_KEY="sk_live_123", STRIPE_WEBHOOK_SECRET="whsec_live_123")

    result = import_wsgi(env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stripe"


def test_in_debug_the_local_gateway_needs_no_keys(tmp_path):
    env = base_env(tmp_path)
    env["DEBUG"] = "true"

    result = import_wsgi(env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "local"


def _csp_settings(env: dict[str, str]) -> list[dict[str, list[str]]]:
    """[SECURE_CSP, SECURE_CSP_REPORT_ONLY] as the app starts with `env`."""
    code = (
        "import json, config.wsgi; from django.conf import settings; "
        "print(json.dumps([settings.SECURE_CSP, settings.SECURE_CSP_REPORT_ONLY]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_csp_is_enforced_with_debug_off_and_only_reported_in_debug(tmp_path):
    """Django's technical error pages (DEBUG only) carry inline styles and scripts."""
    production = production_env(
        tmp_path, STRIPE_SECRET_KEY="sk_live_123", STRIPE_WEBHOOK_SECRET="whsec_live_123"
    )
    development = base_env(tmp_path) | {"DEBUG": "true"}
    stripe_pages = ["https://checkout.stripe.com", "https://billing.stripe.com"]

    assert _csp_settings(production) == [
        content_security_policy(gateway="stripe", hosted_origins=stripe_pages),
        {},
    ]
    assert _csp_settings(development) == [
        {},
        content_security_policy(gateway="local", hosted_origins=stripe_pages),
    ]
